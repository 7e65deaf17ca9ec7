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
//! - [`handle`](crate::Keystore): the cloneable handle callers use, async and blocking.
//! - `builder`: [`KeystoreBuilder`] and [`Overrides`].
//! - `config`: `config.yaml` discovery, overlay, legacy keys, validation.
//! - `engine`: the actors. The **supervisor** owns the backend actor and
//!   restarts it when it fails; the **janitor** sweeps expired RocksDB
//!   entries; the **metrics** actor aggregates what the hot path records.
//!   The engine runs in the caller's actix System, or on its own thread.
//! - `backend`: the message interface of backend actors, and the stores
//!   (RocksDB: the stored envelope, expiry index and sweep; Redis, Redis
//!   Cluster and Dragonfly: an async actor over one shared multiplexed
//!   connection that reconnects by itself).
//! - `format`: the stored value formats shared with Python services.
//! - `stats`: the hot-path recorder and the [`Stats`] snapshot.
//! - `prometheus`: the [`MetricsRegistry`] (one process-wide Prometheus
//!   registry, or private ones), each engine's metric handles, and the
//!   `/metrics` HTTP listener ([`MetricsServer`]).
//! - `clock`, `ttl`, `error`: the small types.
//!
//! # Metrics
//! The hot path only `try_send`s an event into a bounded channel; the metrics
//! actor applies events to [`Stats`] and to Prometheus handles registered once
//! per engine (names in [`METRICS`], labels only `backend`, `op`, `result`,
//! `kind`). Several engines in one process share one registry,
//! [`MetricsRegistry::global`], which is never installed as the `metrics`
//! crate's global recorder, so nothing clashes with a host application's own
//! recorder and a second engine never fails. `metrics.listen` (or the CLI's
//! `--metrics-listen`) serves it over HTTP: one listener per address, shared
//! by every engine that asks for that address, closed with the last of them;
//! [`Keystore::render_metrics`] gives the same text for an application's own
//! `/metrics` route. [`KeystoreBuilder::metrics_registry`] records into a
//! private registry instead (how the tests read exact counts), and
//! [`KeystoreBuilder::metrics`]`(false)` turns recording off.
//!
//! # Stored formats
//! - Redis/Dragonfly: key = the name; value = the JSON text of the data.
//! - RocksDB: key = the name's UTF-8 bytes; value =
//!   `{"data": "<JSON text of the data>", "expires_at": <unix seconds>}`,
//!   `-1` for never-expire. Expiry index entries live under the key prefix
//!   `0xFF 'x'`, which no UTF-8 name can start with.
#![warn(missing_docs)]

mod backend;
mod builder;
mod clock;
mod config;
mod engine;
mod error;
mod format;
mod handle;
mod prometheus;
mod stats;
mod ttl;

pub use builder::{KeystoreBuilder, MIN_SERVER_TTL, Overrides};
pub use clock::Clock;
pub use config::{
    AXION_PACKAGE_ENV, BackendKind, CONFIG_ENV, Config, ConfigLoader, ConfigSource,
    DEFAULT_FORMAT_VERSION, DOCKER_AXION_ENV, DOCKER_HOST_IP, EngineConfig, MetricsConfig,
    NodeAddr, RedisConfig, RocksDbConfig, Secret,
};
pub use error::{ErrorKind, KeystoreError, Result};
pub use handle::{BlockingKeystore, Keystore};
pub use prometheus::{METRICS, MetricsRegistry, MetricsServer, OPERATION_BUCKETS, SWEEP_BUCKETS};
pub use stats::{LatencySummary, Op, OpStats, Stats};
pub use ttl::Ttl;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
