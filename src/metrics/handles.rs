//! [`EngineMetrics`]: one engine's Prometheus handles, registered once when
//! the engine starts (labels `backend`, `op`, `result`, `kind` only), and
//! updated by the metrics actor.

use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram};

use super::model::{Op, TierCount};
use super::recorder::OpTotals;
use super::registry::{MetricsRegistry, label};
use super::tally::Tally;
use crate::config::BackendKind;
use crate::error::ErrorKind;

/// The error kinds any op can meet once the engine runs, registered at 0
/// when it starts. (Config, Locked, NotFound, Io... happen at open, Auth and
/// Tls are per deployment, Usage and TooLarge a caller's bug, Storage and Protocol a
/// damaged disk or a foreign server: those appear on first use.)
const EXPECTED_ERRORS: [ErrorKind; 7] = [
    ErrorKind::Timeout,
    ErrorKind::Busy,
    ErrorKind::Connection,
    ErrorKind::Backend,
    ErrorKind::Stopped,
    ErrorKind::Shutdown,
    ErrorKind::Panic,
];

/// The error kinds `op` can meet at run time (see [`EXPECTED_ERRORS`]).
fn expected_errors(op: Op) -> impl Iterator<Item = ErrorKind> {
    let data: &[ErrorKind] = if op == Op::Get {
        // A stored value that is not ours, or not the caller's type.
        &[ErrorKind::CorruptValue, ErrorKind::Serialization]
    } else if op == Op::Set {
        // A value that cannot be encoded as JSON.
        &[ErrorKind::Serialization]
    } else {
        &[]
    };
    EXPECTED_ERRORS.into_iter().chain(data.iter().copied())
}

/// Handles for one op.
struct OpHandles {
    /// By result: hit, miss, ok, error (get has no `ok`; the others no hit/miss).
    hit: Option<Counter>,
    miss: Option<Counter>,
    ok: Option<Counter>,
    error: Counter,
    duration: Histogram,
}

/// One engine's metric handles, registered once when the engine starts, and
/// what this engine adds to the shared gauges (taken back when it stops, so
/// several engines of one backend sum correctly).
pub(crate) struct EngineMetrics {
    registry: MetricsRegistry,
    backend: &'static str,
    hits: Counter,
    misses: Counter,
    ops: [OpHandles; Op::COUNT],
    /// `(op, kind)` → counter. The kinds an op meets at run time
    /// ([`EXPECTED_ERRORS`], plus the data kinds of get/set) are registered
    /// at start, at 0, so dashboards show a number from the first scrape;
    /// rarer ones on first use. About 8 series per op, not 15.
    errors: Vec<((Op, ErrorKind), Counter)>,
    in_flight: Gauge,
    in_flight_limit: Gauge,
    up: Gauge,
    engines: Gauge,
    restarts: Counter,
    sweeps: Counter,
    sweep_failures: Counter,
    removed: Counter,
    scanned: Counter,
    sweep_duration: Histogram,
    events_dropped: Counter,
    /// The tier's counters, by [`TierCount`].
    tier: [Counter; TierCount::COUNT],
    backplane_up: Gauge,
    tier_bytes: Gauge,
    // This engine's contribution to the shared gauges.
    my_limit: f64,
    my_in_flight: f64,
    my_up: bool,
    my_dropped: u64,
    my_backplane_up: bool,
    my_tier_bytes: f64,
}

impl EngineMetrics {
    pub(crate) fn new(registry: MetricsRegistry, backend: BackendKind, limit: usize) -> Self {
        let b = backend.as_str();
        let bl = || vec![label("backend", b)];
        let op_handles = |op: Op| {
            let ol = |result: &'static str| {
                vec![
                    label("backend", b),
                    label("op", op.as_str()),
                    label("result", result),
                ]
            };
            let c = |result| registry.counter("objdatakey_operations_total", ol(result));
            let is_get = op.has_hits();
            OpHandles {
                hit: is_get.then(|| c("hit")),
                miss: is_get.then(|| c("miss")),
                ok: (!is_get).then(|| c("ok")),
                error: c("error"),
                duration: registry.histogram(
                    "objdatakey_operation_duration_seconds",
                    vec![label("backend", b), label("op", op.as_str())],
                ),
            }
        };
        let mut m = EngineMetrics {
            hits: registry.counter("objdatakey_cache_hits_total", bl()),
            misses: registry.counter("objdatakey_cache_misses_total", bl()),
            ops: Op::ALL.map(op_handles),
            errors: Vec::new(),
            in_flight: registry.gauge("objdatakey_requests_in_flight", bl()),
            in_flight_limit: registry.gauge("objdatakey_requests_in_flight_limit", bl()),
            up: registry.gauge("objdatakey_backend_up", bl()),
            engines: registry.gauge("objdatakey_engines", bl()),
            restarts: registry.counter("objdatakey_backend_restarts_total", bl()),
            sweeps: registry.counter("objdatakey_janitor_sweeps_total", bl()),
            sweep_failures: registry.counter("objdatakey_janitor_sweep_failures_total", bl()),
            removed: registry.counter("objdatakey_janitor_keys_removed_total", bl()),
            scanned: registry.counter("objdatakey_janitor_keys_scanned_total", bl()),
            sweep_duration: registry.histogram("objdatakey_janitor_sweep_duration_seconds", bl()),
            events_dropped: registry.counter("objdatakey_metrics_events_dropped_total", bl()),
            tier: TierCount::ALL.map(|what| registry.counter(tier_metric(what), bl())),
            backplane_up: registry.gauge("objdatakey_backplane_up", bl()),
            tier_bytes: registry.gauge("objdatakey_l1_bytes", bl()),
            registry,
            backend: b,
            my_limit: limit as f64,
            my_in_flight: 0.0,
            my_up: false,
            my_dropped: 0,
            my_backplane_up: false,
            my_tier_bytes: 0.0,
        };
        for op in Op::ALL {
            for kind in expected_errors(op) {
                m.error(op, kind);
            }
        }
        m.engines.increment(1.0);
        m.in_flight_limit.increment(m.my_limit);
        m
    }

    pub(crate) fn registry(&self) -> &MetricsRegistry {
        &self.registry
    }

    fn error(&mut self, op: Op, kind: ErrorKind) -> &Counter {
        let i = match self.errors.iter().position(|(k, _)| *k == (op, kind)) {
            Some(i) => i,
            None => {
                let c = self.registry.counter(
                    "objdatakey_errors_total",
                    vec![
                        label("backend", self.backend),
                        label("op", op.as_str()),
                        label("kind", kind.as_str()),
                    ],
                );
                self.errors.push(((op, kind), c));
                self.errors.len() - 1
            }
        };
        &self.errors[i].1
    }

    /// Samples what is not an event: requests in flight, events dropped,
    /// the tier's weight.
    pub(crate) fn sample(&mut self, in_flight: usize, dropped: u64, tier_bytes: u64) {
        let bytes = tier_bytes as f64;
        if bytes != self.my_tier_bytes {
            self.tier_bytes.increment(bytes - self.my_tier_bytes);
            self.my_tier_bytes = bytes;
        }
        let now = in_flight as f64;
        if now != self.my_in_flight {
            self.in_flight.increment(now - self.my_in_flight);
            self.my_in_flight = now;
        }
        if dropped > self.my_dropped {
            self.events_dropped.increment(dropped - self.my_dropped);
            self.my_dropped = dropped;
        }
    }
}

impl Tally for EngineMetrics {
    /// Latencies arrive as bucket counts and are recorded at each bucket's
    /// middle: within about 12% of the measured values.
    fn counts(&mut self, d: &OpTotals) {
        for op in Op::ALL {
            let h = &self.ops[op.index()];
            let (hits, misses, ok) = d.results(op);
            for (counter, n) in [(&h.hit, hits), (&h.miss, misses), (&h.ok, ok)] {
                if let Some(c) = counter
                    && n > 0
                {
                    c.increment(n);
                }
            }
            if hits > 0 {
                self.hits.increment(hits);
            }
            if misses > 0 {
                self.misses.increment(misses);
            }
            for (latency, n) in d.latencies(op) {
                h.duration.record_many(
                    latency.as_secs_f64(),
                    usize::try_from(n).unwrap_or(usize::MAX),
                );
            }
        }
        for what in TierCount::ALL {
            let n = d.tier(what);
            if n > 0 {
                self.tier[what.index()].increment(n);
            }
        }
    }

    fn failed(&mut self, op: Op, kind: ErrorKind, latency: Duration) {
        let h = &self.ops[op.index()];
        h.duration.record(latency.as_secs_f64());
        h.error.increment(1);
        self.error(op, kind).increment(1);
    }

    fn swept(&mut self, removed: u64, scanned: u64, duration: Duration) {
        self.sweeps.increment(1);
        self.removed.increment(removed);
        self.scanned.increment(scanned);
        self.sweep_duration.record(duration.as_secs_f64());
    }

    fn sweep_failed(&mut self) {
        self.sweep_failures.increment(1);
    }

    fn restarted(&mut self) {
        self.restarts.increment(1);
    }

    fn backend_up(&mut self, up: bool) {
        if up != self.my_up {
            self.up.increment(if up { 1.0 } else { -1.0 });
            self.my_up = up;
        }
    }

    fn backplane_up(&mut self, up: bool) {
        if up != self.my_backplane_up {
            self.backplane_up.increment(if up { 1.0 } else { -1.0 });
            self.my_backplane_up = up;
        }
    }
}

/// The counter each [`TierCount`] is exported as.
fn tier_metric(what: TierCount) -> &'static str {
    match what {
        TierCount::Hit => "objdatakey_l1_hits_total",
        TierCount::Miss => "objdatakey_l1_misses_total",
        TierCount::Eviction => "objdatakey_l1_evictions_total",
        TierCount::InvalidationSent => "objdatakey_invalidations_sent_total",
        TierCount::InvalidationReceived => "objdatakey_invalidations_received_total",
        TierCount::StaleServed => "objdatakey_stale_served_total",
        TierCount::Refresh => "objdatakey_refreshes_total",
    }
}

impl Drop for EngineMetrics {
    /// The engine is gone: take back what it added to the shared gauges.
    fn drop(&mut self) {
        self.engines.decrement(1.0);
        self.in_flight_limit.decrement(self.my_limit);
        self.in_flight.decrement(self.my_in_flight);
        if self.my_up {
            self.up.decrement(1.0);
        }
        if self.my_backplane_up {
            self.backplane_up.decrement(1.0);
        }
        self.tier_bytes.decrement(self.my_tier_bytes);
    }
}
