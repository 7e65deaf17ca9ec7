//! [`MetricsRegistry`]: the Prometheus registry the engines record into, and
//! the catalogue of every metric ([`METRICS`]).
//!
//! Registering goes through `metrics::Recorder::register_counter(&recorder, ..)`
//! on our own recorder, never through the `metrics` crate's global one (see
//! the [module docs](super) for why).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// `objdatakey_operation_duration_seconds` buckets: 5 µs (an embedded read) to
/// 10 s (past any sane request timeout), about three per decade.
pub const OPERATION_BUCKETS: [f64; 19] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// `objdatakey_janitor_sweep_duration_seconds` buckets: 100 µs to 5 minutes.
pub const SWEEP_BUCKETS: [f64; 12] = [
    0.000_1, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0,
];

/// Every metric name, with its type and help text (the exposition's `# HELP`).
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "objdatakey_cache_hits_total",
        "counter",
        "get_cache calls that found a live value",
    ),
    (
        "objdatakey_cache_misses_total",
        "counter",
        "get_cache calls that found nothing or an expired value",
    ),
    (
        "objdatakey_operations_total",
        "counter",
        "Completed operations by op and result (hit, miss, ok, error)",
    ),
    (
        "objdatakey_errors_total",
        "counter",
        "Failed operations by op and error kind",
    ),
    (
        "objdatakey_operation_duration_seconds",
        "histogram",
        "Operation latency as the caller saw it, queueing included",
    ),
    (
        "objdatakey_requests_in_flight",
        "gauge",
        "Requests admitted and not yet answered (sampled every 100 ms)",
    ),
    (
        "objdatakey_requests_in_flight_limit",
        "gauge",
        "The in-flight limit (keystore.max_in_flight), summed over engines",
    ),
    (
        "objdatakey_backend_up",
        "gauge",
        "Engines whose backend is up: 1 when the one engine of a backend is connected/open, 0 when not",
    ),
    (
        "objdatakey_backend_restarts_total",
        "counter",
        "Times a supervisor restarted its backend actor",
    ),
    (
        "objdatakey_engines",
        "gauge",
        "Keystore engines running in this process",
    ),
    (
        "objdatakey_janitor_sweeps_total",
        "counter",
        "Completed janitor sweeps of expired entries",
    ),
    (
        "objdatakey_janitor_sweep_failures_total",
        "counter",
        "Janitor sweeps that failed (retried at the next interval)",
    ),
    (
        "objdatakey_janitor_keys_removed_total",
        "counter",
        "Expired entries the janitor deleted",
    ),
    (
        "objdatakey_janitor_keys_scanned_total",
        "counter",
        "Expiry-index entries the janitor looked at",
    ),
    (
        "objdatakey_janitor_sweep_duration_seconds",
        "histogram",
        "Duration of one whole janitor sweep",
    ),
    (
        "objdatakey_l1_hits_total",
        "counter",
        "Reads answered from the in-process tier (keystore.l1)",
    ),
    (
        "objdatakey_l1_misses_total",
        "counter",
        "Reads the in-process tier could not answer (they went to the backend)",
    ),
    (
        "objdatakey_l1_evictions_total",
        "counter",
        "In-process tier entries pushed out by keystore.l1.max_bytes",
    ),
    (
        "objdatakey_l1_bytes",
        "gauge",
        "Bytes of names and JSON text the in-process tier holds (sampled every 100 ms)",
    ),
    (
        "objdatakey_invalidations_sent_total",
        "counter",
        "Invalidations published on the backplane channel",
    ),
    (
        "objdatakey_invalidations_received_total",
        "counter",
        "Invalidations from other instances applied to the in-process tier",
    ),
    (
        "objdatakey_backplane_up",
        "gauge",
        "Engines whose backplane subscription is up (1 per engine)",
    ),
    (
        "objdatakey_stale_served_total",
        "counter",
        "Stale values served because the backend failed (keystore.fail_safe.max_age)",
    ),
    (
        "objdatakey_refreshes_total",
        "counter",
        "Background reloads started by keystore.eager_refresh",
    ),
    (
        "objdatakey_metrics_events_dropped_total",
        "counter",
        "Metric events lost because the metrics channel was full (normally 0)",
    ),
];

static NEXT_REGISTRY_ID: AtomicU64 = AtomicU64::new(1);

/// A Prometheus registry that keystores record into, and its rendering.
///
/// [`MetricsRegistry::global`] (the default for every keystore) is shared by
/// all engines of the process; [`MetricsRegistry::new`] makes a private one.
/// Cheap to clone. It is never installed as the `metrics` crate's global
/// recorder (see the module docs for why).
#[derive(Clone)]
pub struct MetricsRegistry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    id: u64,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRegistry")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        MetricsRegistry::global()
    }
}

impl MetricsRegistry {
    /// The process-wide registry, created on first use; every keystore records
    /// here unless given another one.
    #[must_use]
    pub fn global() -> MetricsRegistry {
        static GLOBAL: OnceLock<MetricsRegistry> = OnceLock::new();
        GLOBAL.get_or_init(MetricsRegistry::new).clone()
    }

    /// A new, private registry (for tests, or to keep one keystore's numbers apart).
    #[must_use]
    pub fn new() -> MetricsRegistry {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("objdatakey_operation_duration_seconds".into()),
                &OPERATION_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("objdatakey_janitor_sweep_duration_seconds".into()),
                    &SWEEP_BUCKETS,
                )
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        for (name, kind, help) in METRICS {
            let name = KeyName::from_const_str(name);
            let help = (*help).into();
            match *kind {
                "counter" => recorder.describe_counter(name, None, help),
                "gauge" => recorder.describe_gauge(name, None, help),
                _ => recorder.describe_histogram(name, None, help),
            }
        }
        let handle = recorder.handle();
        MetricsRegistry {
            inner: Arc::new(RegistryInner {
                id: NEXT_REGISTRY_ID.fetch_add(1, Ordering::Relaxed),
                recorder,
                handle,
            }),
        }
    }

    /// Tells registries apart (a listener serves one registry per address).
    pub(super) fn id(&self) -> u64 {
        self.inner.id
    }

    /// The Prometheus text exposition (format 0.0.4) of everything recorded here.
    #[must_use]
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    /// Folds recorded histogram samples into their buckets (rendering does it
    /// too); the metrics actors call it periodically so memory stays bounded
    /// when nobody scrapes.
    pub(crate) fn upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    fn key(name: &'static str, labels: Vec<Label>) -> Key {
        Key::from_parts(name, labels)
    }

    pub(super) fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.inner
            .recorder
            .register_counter(&Self::key(name, labels), &METADATA)
    }

    pub(super) fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.inner
            .recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
    }

    pub(super) fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.inner
            .recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
    }
}

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

pub(super) fn label(k: &'static str, v: &'static str) -> Label {
    Label::from_static_parts(k, v)
}
