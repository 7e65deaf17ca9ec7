//! Metrics: what the engine counts, how the hot path records it, the
//! [`Stats`] snapshot, and the Prometheus registry, handles and exporter.
//!
//! - `model`: the [`Op`] labels, outcomes and events; `tally`: the `Tally`
//!   trait both totals below implement, so an event is taken apart once.
//! - `recorder`: the hot-path `Recorder` (striped atomic counters for
//!   successes, a bounded channel for everything else).
//! - `histogram`: the fixed-bucket latency histogram the stripes share.
//! - `stats`: the public [`Stats`] snapshot and the metrics actor's totals.
//! - `registry`: the [`MetricsRegistry`] and the catalogue [`METRICS`].
//! - `handles`: one engine's Prometheus handles.
//! - `exporter`: the `/metrics` HTTP listener, [`MetricsServer`].
//!
//! The metrics actor that drains the recorder lives with the other actors,
//! in `engine::metrics_actor`.
//!
//! # Why no global recorder
//! The `metrics` crate's usual pattern installs one global recorder; a second
//! install fails, and tests that read a global recorder see each other's
//! numbers. So this crate never installs one. Instead one process-wide
//! registry ([`MetricsRegistry::global`]) is built once, in a `OnceLock`,
//! from `PrometheusBuilder::build_recorder()` with explicit histogram
//! buckets. Every engine registers its handles on it directly, so any number
//! of engines share one registry, and a host application's own global
//! recorder (if it has one) is left alone. A private registry
//! ([`MetricsRegistry::new`]) given to
//! [`KeystoreBuilder::metrics_registry`](crate::KeystoreBuilder::metrics_registry)
//! is how tests read exact numbers without seeing other engines.
//!
//! # Labels
//! Only `backend`, `op`, `result` and `kind`: a handful of values each, never
//! the key, so the number of series stays small and fixed.

pub(crate) mod exporter;
pub(crate) mod handles;
pub(crate) mod histogram;
pub(crate) mod model;
pub(crate) mod recorder;
pub(crate) mod registry;
pub(crate) mod stats;
pub(crate) mod tally;

pub use exporter::MetricsServer;
pub use histogram::LatencySummary;
pub use model::Op;
pub use registry::{METRICS, MetricsRegistry, OPERATION_BUCKETS, SWEEP_BUCKETS};
pub use stats::{OpStats, Stats, TierStats};

pub(crate) use model::{Event, Outcome, TierCount};
pub(crate) use recorder::Recorder;
pub(crate) use tally::Tally;
