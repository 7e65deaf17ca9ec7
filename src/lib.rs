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
//! The imports flow one way: `keystore` → `engine` → `command` → `backend`
//! and `tier` → `format`, `config`, `metrics`, `error`.
//! - `keystore/`: the [`Keystore`] facade (`mod.rs`: each public operation
//!   names its command and finishes its answer; `Keystore::run`, build →
//!   engine → finish → record, shared by every operation), `builder.rs`
//!   (how a keystore is made), `get_or_set.rs` with `flight.rs`
//!   (single flight) and `lock.rs` (the cross-process load lock),
//!   `decode.rs` (stored JSON text into the caller's type), `depth.rs`
//!   (refusing values nested too deep), [`BlockingKeystore`] and
//!   [`KeystoreBuilder`].
//! - `engine/`: the actors and the one request path. Its module doc holds
//!   **the actor map**. `request.rs` is `Engine::call`, the only way a
//!   command reaches a backend: the no-op engine of a disabled keystore,
//!   the in-process tier (`tiered.rs`: reads answered from its copies and
//!   filling it, stale copies when the backend fails; what a write changes
//!   in it), the in-place step (`in_place.rs`, which
//!   also gives other tasks a turn), admission (`limiter.rs`: permit and
//!   deadline), the route (Redis direct path or the backend's mailbox) and
//!   the wait (`timer.rs`). `supervisor.rs`, `janitor.rs` and
//!   `metrics_actor.rs` are actors; `host.rs` runs them in the caller's actix
//!   System or our own; `background.rs` runs detached loads.
//! - `command/`: one file per command: what it is, its answer's type, and
//!   each backend's step (in place, RocksDB pool, Redis, disabled) and what it
//!   changes in the tier, as one trait with no catch-all; the reads a caller
//!   decodes (`Read`, `ReadMany`, `ReadEntry`) say how the tier answers them.
//! - `backend/`: what the engine hands a backend (`request.rs`: the
//!   type-erased work, deadline, permit; `current.rs`: the running
//!   generation's mailbox; `supervision.rs`: failure reports) and one folder
//!   per backend: `backend/rocksdb/` (the store with its envelope, expiry
//!   index, sweeps and write group; the worker pool) and `backend/redis/`
//!   (target, error classification, connection and `link.rs`'s one way over
//!   the wire, typed commands, combining, cluster routing, the actor that
//!   owns the connection, the backplane actor).
//! - `tier/`: the in-process tier (`keystore.l1`), its invalidation
//!   messages and what a write changes in it (`touch.rs`).
//! - [`config`]: `config.yaml` discovery, overlay, legacy keys, validation,
//!   and [`Overrides`].
//! - `format`: the stored value formats shared with Python services.
//! - [`metrics`]: the hot-path recorder, [`Stats`], the Prometheus registry,
//!   handles and `/metrics` exporter.
//! - `cli/` (the binary's `load` command), `clock`, `ttl`, `error`, `turn`:
//!   the small parts (`turn`: how a task that made calls on its own thread
//!   gives the others ready there a turn).
//!
//! **One GET, followed** (warm RocksDB, tier off), file by file:
//! 1. `keystore/mod.rs`: [`Keystore::get_cache`] builds a `Read` of the name
//!    with its decoder, and `Keystore::run` times it and hands it to the
//!    engine;
//! 2. `engine/request.rs`: `Engine::call` (not the no-op engine; no tier);
//! 3. `engine/in_place.rs`: the in-place step asks the command;
//! 4. `command/get.rs`: `Read::in_place` asks RocksDB's memory;
//! 5. `backend/rocksdb/store/read.rs`: `RocksStore::get_in_memory` reads
//!    memtables and block cache,
//! 6. `format.rs`: finds the live value's text in its envelope, where it
//!    stands,
//! 7. `keystore/decode.rs`: and the decoder makes it a `T`;
//!
//! and back through `in_place.rs` (which gives other tasks a turn every few
//! calls, through `turn.rs`) to `Keystore::run`, which records the hit into
//! the `Recorder` (8. `metrics/recorder.rs`), drained by the metrics actor
//! into [`Stats`] and Prometheus. A read memory cannot answer builds a `Get` (`command/get.rs`)
//! that `engine/request.rs` admits and sends to a pool worker
//! (`backend/rocksdb/pool.rs` → `Get::on_rocks`) or, on Redis, runs over
//! the direct path (`Get::on_redis` → `backend/redis/direct.rs`, combined in
//! `combine.rs` beyond 16 in flight, sent by `link.rs` and `commands.rs`).
//!
//! With the tier on (`keystore.l1.enabled`), `Engine::call` hands the
//! `Read` to `engine/tiered.rs` instead: a fresh copy answers it; else an
//! `Entries` of the name (`command/entries.rs`) takes the path above, and
//! its value and lifetime fill the tier.
//!
//! **One SET, followed**: `keystore/mod.rs` encodes the value into a `Set`
//! (`command/set.rs`) → `engine/request.rs` (with the tier on,
//! the `Touch` it will apply) → `in_place.rs` → `Set::in_place` writes it
//! with `no_slowdown` or joins a group (`backend/rocksdb/group.rs`) written
//! as one batch; else the pool's `Set::on_rocks`, or on Redis
//! `Set::on_redis` → `direct.rs` (`combine.rs` makes waiting SETs one MSET
//! or script call).
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
mod command;
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
