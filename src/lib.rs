//! objdatakey: an actor-based, concurrent cache engine that puts one
//! key-value API over Redis, DragonflyDB and embedded RocksDB.
//!
//! It replaces the Python module of the same name: the same `config.yaml`,
//! the same stored formats (so Python services keep reading the data), and
//! the same `check` command. Values are any `serde` type, stored as JSON,
//! with a TTL each.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> objdatakey::Result<()> {
//! use objdatakey::{BackendKind, Keystore, Overrides, Ttl};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("db");
//! let keystore = Keystore::builder()
//!     .overrides(Overrides::new().backend(BackendKind::RocksDb).path(path))
//!     .build()?;
//! keystore.set_cache("user:1", &vec![1, 2, 3], Ttl::Seconds(60)).await?;
//! let v: Option<Vec<u32>> = keystore.get_cache("user:1").await?;
//! assert_eq!(v, Some(vec![1, 2, 3]));
//! keystore.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! The imports flow one way: `keystore` → `engine` → `backend` →
//! `format`, `config`, `metrics`, `error`.
//! - `keystore/`: the [`Keystore`] handle (async), [`BlockingKeystore`] and
//!   [`KeystoreBuilder`]. Every operation goes through one request path,
//!   `Keystore::run`: resolve the command → the engine → finish the typed
//!   answer → record the outcome. `keystore/decode.rs` turns a stored JSON
//!   text into the caller's type (serde_json, with a shortcut for a value
//!   that is one plain JSON string).
//! - `engine/`: the actors and the path of a request through them. Its
//!   module doc holds **the actor map**: who owns whom, the messages and
//!   channels, the two shortcuts past the actors, and the shutdown order.
//!   `engine/request.rs` admits (in-flight permit, deadline) and routes a
//!   command; `supervisor.rs`, `janitor.rs` and `metrics_actor.rs` are the
//!   actors; `host.rs` runs them in the caller's actix System or our own.
//! - `backend/`: the message interface (`Command`, `Reply`, `Request`, the
//!   backend slot, failure reports) and one folder per backend:
//!   `backend/rocksdb/` (the store with its expiry index and sweep; the
//!   worker pool) and `backend/redis/` (target, error classification, the
//!   actor that owns the connection, the direct path).
//! - [`config`]: `config.yaml` discovery, overlay, legacy keys, validation,
//!   and [`Overrides`].
//! - `format`: the stored value formats shared with Python services.
//! - [`metrics`]: the hot-path recorder, [`Stats`], the Prometheus registry,
//!   handles and `/metrics` exporter.
//! - `clock`, `ttl`, `error`, `turn`: the small types (`turn`: how a task
//!   that made calls on its own thread gives the others ready there a turn).
//!
//! **One GET, followed**: [`Keystore::get_cache`] → `Keystore::run` →
//! `Engine::call` (engine/request.rs): on RocksDB, `RocksStore::get_in_memory`
//! answers on the caller's thread when memory holds the key; otherwise a
//! permit is taken and the command goes over the Redis direct path
//! (`RedisDirect::call`, backend/redis/direct.rs) or into the backend slot
//! as a `Request` (RocksDB: a pool worker runs `RocksStore::get`); the reply
//! comes back on a oneshot, `run` decodes the JSON into `T` (a warm RocksDB
//! read lends a plain string value where it stands) and records a
//! hit or miss into the `Recorder`, which the metrics actor drains into
//! [`Stats`] and Prometheus.
//!
//! # Metrics
//! A successful call adds to the calling thread's stripe of atomic counters;
//! failures, sweeps, restarts and backend up/down go as events into a
//! bounded channel. The metrics actor applies both to [`Stats`] and to
//! Prometheus handles registered once per engine (names in
//! [`metrics::METRICS`], labels only `backend`, `op`, `result`, `kind`).
//! Several engines in one process share one registry,
//! [`metrics::MetricsRegistry::global`], which is never installed as the
//! `metrics` crate's global recorder, so nothing clashes with a host
//! application's own recorder. `metrics.listen` (or the CLI's
//! `--metrics-listen`) serves it over HTTP; [`Keystore::render_metrics`]
//! gives the same text for an application's own `/metrics` route.
//! [`KeystoreBuilder::metrics_registry`] records into a private registry
//! instead (how the tests read exact counts), and
//! [`KeystoreBuilder::metrics`]`(false)` turns recording off.
//!
//! # Stored formats
//! - Redis/Dragonfly: key = the name; value = the JSON text of the data.
//! - RocksDB: key = the name's UTF-8 bytes; value =
//!   `{"data": "<JSON text of the data>", "expires_at": <unix seconds>}`,
//!   `-1` for never-expire. The expiry index lives beside the values (see
//!   `backend/rocksdb/store/mod.rs`).
#![warn(missing_docs)]

mod backend;
mod clock;
pub mod config;
mod engine;
mod error;
mod format;
mod keystore;
pub mod metrics;
mod tier;
mod ttl;
mod turn;

pub use clock::Clock;
pub use config::{BackendKind, Config, Overrides};
pub use error::{ErrorKind, KeystoreError, Result};
pub use keystore::{BlockingKeystore, Keystore, KeystoreBuilder};
pub use metrics::Stats;
pub use ttl::Ttl;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
