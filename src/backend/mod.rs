//! The backends, one folder each, and what the engine hands them.
//!
//! - [`Request`] (`request.rs`) carries one command's [`Work`] to a backend
//!   actor with its [`Deadline`] and in-flight permit; the backend runs
//!   the command's own step for it (`Work::on_rocks`, `Work::on_redis`)
//!   without naming the command. What each command does on each backend is
//!   written in `command/`, beside the command.
//! - [`CurrentBackend`] (`current.rs`) is where the engine finds the
//!   running generation's mailbox ([`BackendTx`]).
//! - A backend that cannot go on serving (a call panicked, its actor
//!   stopped) says so through its [`Supervision`] (`supervision.rs`), a
//!   weak recipient of [`BackendFailed`]: backends never name the
//!   supervisor's type, so the imports flow one way, engine → backend.
//!
//! Backends: [`rocksdb`] (the embedded store and its worker pool) and
//! [`redis`] (Redis, Redis Cluster and Dragonfly: the actor that owns the
//! connection and the direct path the engine calls).

pub(crate) mod current;
pub(crate) mod redis;
pub(crate) mod request;
pub(crate) mod rocksdb;
mod subject;
pub(crate) mod supervision;
mod texts;

pub(crate) use current::{BackendTx, CurrentBackend, Unsent};
pub(crate) use request::{Deadline, OnPanic, Request, Stored, Work};
pub(crate) use subject::Subject;
pub(crate) use supervision::{BackendFailed, Supervision, panic_text};
pub(crate) use texts::{Text, ValueTexts};
