//! The public [`Stats`] snapshot, and the [`Aggregate`] the metrics actor
//! keeps to answer it.

use std::time::Duration;

use super::histogram::{LatencyHistogram, LatencySummary};
use super::model::{Op, TierCount};
use super::recorder::OpTotals;
use super::tally::Tally;
use crate::config::BackendKind;
use crate::error::ErrorKind;

/// Counts for one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Calls completed (successes and errors).
    pub count: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Latency of all calls.
    pub latency: LatencySummary,
}

/// What the in-process tier (`keystore.l1`) did; all 0 while it is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// Reads answered from the tier.
    pub hits: u64,
    /// Reads the tier could not answer (they went to the backend).
    pub misses: u64,
    /// Entries pushed out by the byte bound (`keystore.l1.max_bytes`).
    pub evictions: u64,
    /// Invalidations this keystore published on the backplane.
    pub invalidations_sent: u64,
    /// Invalidations from other instances applied to this tier.
    pub invalidations_received: u64,
    /// Stale values served because the backend failed (`keystore.fail_safe`).
    pub stale_served: u64,
    /// Background reloads started by `keystore.eager_refresh`.
    pub refreshes: u64,
    /// Whether the backplane subscription is up.
    pub backplane_up: bool,
    /// The tier's weight now: bytes of names and JSON text held.
    pub bytes: u64,
    /// Entries held now.
    pub entries: u64,
}

/// A snapshot of what a keystore has done since it started.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The active backend.
    pub backend: BackendKind,
    /// Reads (`get_cache`, `get_or_set`) that found a live value.
    pub hits: u64,
    /// Reads that found nothing or an expired value.
    pub misses: u64,
    /// Per-operation counts and latency ([`Stats::op`] gives them by [`Op`]).
    pub get: OpStats,
    /// See [`Stats::get`].
    pub set: OpStats,
    /// See [`Stats::get`].
    pub delete: OpStats,
    /// See [`Stats::get`].
    pub ping: OpStats,
    /// See [`Stats::get`].
    pub get_many: OpStats,
    /// See [`Stats::get`].
    pub set_many: OpStats,
    /// See [`Stats::get`].
    pub delete_many: OpStats,
    /// See [`Stats::get`].
    pub delete_prefix: OpStats,
    /// See [`Stats::get`].
    pub clear: OpStats,
    /// See [`Stats::get`].
    pub ttl: OpStats,
    /// See [`Stats::get`].
    pub get_or_set: OpStats,
    /// Failed calls by error kind.
    pub errors_by_kind: Vec<(ErrorKind, u64)>,
    /// Requests admitted and not yet answered.
    pub in_flight: usize,
    /// The in-flight limit.
    pub max_in_flight: usize,
    /// Times the supervisor restarted the backend actor.
    pub backend_restarts: u64,
    /// Janitor sweeps completed.
    pub janitor_sweeps: u64,
    /// Expired entries the janitor deleted.
    pub janitor_removed: u64,
    /// Events lost because the metrics channel was full (normally 0).
    pub events_dropped: u64,
    /// Whether the backend was up at the last event (see `objdatakey_backend_up`).
    pub backend_up: bool,
    /// Janitor sweeps that failed.
    pub janitor_sweep_failures: u64,
    /// The in-process tier, backplane, fail-safe and eager refresh.
    pub tier: TierStats,
}

impl Stats {
    /// A snapshot of nothing done yet.
    pub(crate) fn empty(backend: BackendKind) -> Self {
        Aggregate::default().snapshot(backend)
    }

    /// `hits / (hits + misses)`, or `None` before the first get.
    #[must_use]
    pub fn hit_rate(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }

    /// All failed calls.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.errors_by_kind.iter().map(|(_, n)| n).sum()
    }

    /// The counts of one op.
    #[must_use]
    pub fn op(&self, op: Op) -> &OpStats {
        match op {
            Op::Get => &self.get,
            Op::Set => &self.set,
            Op::Delete => &self.delete,
            Op::Ping => &self.ping,
            Op::GetMany => &self.get_many,
            Op::SetMany => &self.set_many,
            Op::DeleteMany => &self.delete_many,
            Op::DeletePrefix => &self.delete_prefix,
            Op::Clear => &self.clear,
            Op::Ttl => &self.ttl,
            Op::GetOrSet => &self.get_or_set,
        }
    }
}

/// The metrics actor's running totals.
#[derive(Default)]
pub(crate) struct Aggregate {
    pub hits: u64,
    pub misses: u64,
    pub counts: [u64; Op::COUNT],
    pub errors: [u64; Op::COUNT],
    pub latency: [LatencyHistogram; Op::COUNT],
    pub errors_by_kind: Vec<(ErrorKind, u64)>,
    pub restarts: u64,
    pub sweeps: u64,
    pub sweep_failures: u64,
    pub removed: u64,
    pub up: bool,
    pub tier: TierStats,
}

impl Tally for Aggregate {
    fn counts(&mut self, d: &OpTotals) {
        for op in Op::ALL {
            let i = op.index();
            let (hits, misses, ok) = d.results(op);
            self.counts[i] += hits + misses + ok;
            self.hits += hits;
            self.misses += misses;
            self.latency[i].add_buckets(&d.buckets[i], d.sum_ns[i], d.max_ns[i]);
        }
        let t = &mut self.tier;
        for what in TierCount::ALL {
            let field = match what {
                TierCount::Hit => &mut t.hits,
                TierCount::Miss => &mut t.misses,
                TierCount::Eviction => &mut t.evictions,
                TierCount::InvalidationSent => &mut t.invalidations_sent,
                TierCount::InvalidationReceived => &mut t.invalidations_received,
                TierCount::StaleServed => &mut t.stale_served,
                TierCount::Refresh => &mut t.refreshes,
            };
            *field += d.tier(what);
        }
    }

    fn failed(&mut self, op: Op, kind: ErrorKind, latency: Duration) {
        let i = op.index();
        self.counts[i] += 1;
        self.latency[i].record(latency);
        self.errors[i] += 1;
        match self.errors_by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.errors_by_kind.push((kind, 1)),
        }
    }

    fn swept(&mut self, removed: u64, _scanned: u64, _duration: Duration) {
        self.sweeps += 1;
        self.removed += removed;
    }

    fn sweep_failed(&mut self) {
        self.sweep_failures += 1;
    }

    fn restarted(&mut self) {
        self.restarts += 1;
    }

    fn backend_up(&mut self, up: bool) {
        self.up = up;
    }

    fn backplane_up(&mut self, up: bool) {
        self.tier.backplane_up = up;
    }
}

impl Aggregate {
    pub(crate) fn snapshot(&self, backend: BackendKind) -> Stats {
        let op = |o: Op| OpStats {
            count: self.counts[o.index()],
            errors: self.errors[o.index()],
            latency: self.latency[o.index()].summary(),
        };
        Stats {
            backend,
            hits: self.hits,
            misses: self.misses,
            get: op(Op::Get),
            set: op(Op::Set),
            delete: op(Op::Delete),
            ping: op(Op::Ping),
            get_many: op(Op::GetMany),
            set_many: op(Op::SetMany),
            delete_many: op(Op::DeleteMany),
            delete_prefix: op(Op::DeletePrefix),
            clear: op(Op::Clear),
            ttl: op(Op::Ttl),
            get_or_set: op(Op::GetOrSet),
            errors_by_kind: self.errors_by_kind.clone(),
            in_flight: 0,
            max_in_flight: 0,
            backend_restarts: self.restarts,
            janitor_sweeps: self.sweeps,
            janitor_removed: self.removed,
            events_dropped: 0,
            backend_up: self.up,
            janitor_sweep_failures: self.sweep_failures,
            tier: self.tier,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::model::Outcome;
    use crate::metrics::recorder::{Recorder, STRIPES};

    #[test]
    fn striped_counts_from_many_threads_add_up_exactly_across_drains() {
        let (rec, _events, _dropped) = Recorder::new(true);
        let counters = rec.counters();
        let mut agg = Aggregate::default();
        let mut seen = OpTotals::default();
        let mut drain = |agg: &mut Aggregate| {
            let now = counters.totals();
            agg.counts(&now.since(&seen));
            seen = now;
        };
        // More threads than stripes, so some stripes are shared.
        std::thread::scope(|s| {
            for t in 0..(STRIPES as u64 + 4) {
                let rec = rec.clone();
                s.spawn(move || {
                    for i in 0..1000u64 {
                        let outcome = if i % 4 == 0 {
                            Outcome::Miss
                        } else {
                            Outcome::Hit
                        };
                        rec.op(Op::Get, outcome, Duration::from_micros(t + 1));
                        rec.op(Op::Set, Outcome::Ok, Duration::from_nanos(500));
                    }
                });
            }
            // Drains while the threads record lose and double nothing.
            for _ in 0..20 {
                drain(&mut agg);
                std::thread::yield_now();
            }
        });
        drain(&mut agg);
        let n = (STRIPES as u64 + 4) * 1000;
        assert_eq!((agg.counts[0], agg.counts[1]), (n, n));
        assert_eq!((agg.hits, agg.misses), (n * 3 / 4, n / 4));
        assert_eq!(agg.latency[0].count, n);
        assert_eq!(agg.latency[0].max_ns, (STRIPES as u64 + 4) * 1000);
        assert_eq!(agg.latency[1].sum_ns, u128::from(n) * 500);
        // A drain with nothing new adds nothing; errors still go as events.
        drain(&mut agg);
        assert_eq!(agg.counts[0], n);
        rec.op(Op::Get, Outcome::Error(ErrorKind::Timeout), Duration::ZERO);
        assert_eq!(counters.totals().results(Op::Get), (n * 3 / 4, n / 4, 0));
        // Off: nothing at all.
        let (off, _e, _d) = Recorder::new(false);
        off.op(Op::Get, Outcome::Hit, Duration::ZERO);
        assert_eq!(off.counters().totals().results(Op::Get), (0, 0, 0));
    }

    #[test]
    fn aggregate_counts_exactly() {
        let mut a = Aggregate::default();
        let (rec, events, _dropped) = Recorder::new(true);
        for (op, outcome) in [
            (Op::Get, Outcome::Hit),
            (Op::Get, Outcome::Miss),
            (Op::Get, Outcome::Miss),
            (Op::Set, Outcome::Ok),
            (Op::Set, Outcome::Error(ErrorKind::Timeout)),
        ] {
            rec.op(op, outcome, Duration::from_micros(5));
        }
        a.counts(&rec.counters().totals().since(&OpTotals::default()));
        for e in events.try_iter() {
            e.tally(&mut a);
        }
        let s = a.snapshot(BackendKind::RocksDb);
        assert_eq!((s.hits, s.misses, s.get.count, s.set.errors), (1, 2, 3, 1));
        assert_eq!(s.errors(), 1);
        assert!((s.hit_rate().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    }
}
