//! Counting what the engine does: the hot-path [`Recorder`], the events it
//! sends, the aggregate the metrics actor keeps, and the public [`Stats`] snapshot.
//!
//! Recording never waits. A successful operation (nearly all of them) adds to
//! the recording thread's stripe of [`OpCounters`]: a few relaxed atomic adds
//! on cache lines no other core writes, nothing to queue or drop, at any rate.
//! Everything else (failures with their kind, sweeps, restarts, backend up or
//! down) is an [`Event`] sent into a bounded `crossbeam-channel` with
//! `try_send`. If the metrics actor ever falls so far behind that the channel
//! is full, the event is dropped and counted in [`Stats::events_dropped`], so
//! an undercount is visible rather than silent.
//!
//! The metrics actor applies each event twice: to the [`Aggregate`] behind
//! [`Stats`], and to the engine's Prometheus handles
//! ([`EngineMetrics`](crate::prometheus::EngineMetrics)), and so every 100 ms
//! what the striped counters gained. Both happen off the hot path. With
//! [`KeystoreBuilder::metrics(false)`](crate::KeystoreBuilder::metrics) the
//! recorder sends nothing at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::BackendKind;
use crate::error::ErrorKind;

/// Events the channel holds before recording starts dropping them.
pub(crate) const EVENT_CAPACITY: usize = 1 << 16;

/// The operations the engine counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `get_cache`.
    Get,
    /// `set_cache`.
    Set,
    /// `delete`.
    Delete,
    /// `has_keystore` / `ping`.
    Ping,
}

impl Op {
    /// Every op, in label order.
    pub const ALL: [Op; 4] = [Op::Get, Op::Set, Op::Delete, Op::Ping];

    /// The `op` label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::Ping => "ping",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How one operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A get that found a live value.
    Hit,
    /// A get that found nothing (or an expired value).
    Miss,
    /// Any other op that succeeded.
    Ok,
    /// Failed.
    Error(ErrorKind),
}

/// One thing that happened, as the metrics actor receives it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    /// An operation that failed; successes are counted in [`OpCounters`].
    Failed {
        op: Op,
        kind: ErrorKind,
        latency: Duration,
    },
    Sweep {
        removed: u64,
        scanned: u64,
        duration: Duration,
    },
    /// A janitor sweep failed (it is retried at the next interval).
    SweepFailed,
    Restart,
    /// The backend became reachable/open (`true`) or lost (`false`).
    BackendUp(bool),
}

/// The hot-path side of metrics: cheap to clone, never blocks.
#[derive(Clone)]
pub(crate) struct Recorder {
    /// `false` under `KeystoreBuilder::metrics(false)`: nothing is sent.
    on: bool,
    tx: crossbeam_channel::Sender<Event>,
    /// Events lost to a full channel (see the module docs).
    dropped: Arc<AtomicU64>,
    /// Where successful operations are counted: at a million reads a second
    /// an event per read would fill any channel the actor drains every
    /// 100 ms, and two cores sending into one would fight over its tail.
    counters: Arc<OpCounters>,
}

impl Recorder {
    /// A recorder and the receiving end of its channel; `on: false` makes
    /// every recording a no-op.
    pub(crate) fn new(on: bool) -> (Self, crossbeam_channel::Receiver<Event>, Arc<AtomicU64>) {
        let (tx, rx) = crossbeam_channel::bounded(if on { EVENT_CAPACITY } else { 1 });
        let dropped = Arc::new(AtomicU64::new(0));
        (
            Recorder {
                on,
                tx,
                dropped: dropped.clone(),
                counters: Arc::new(OpCounters::new()),
            },
            rx,
            dropped,
        )
    }

    pub(crate) fn record(&self, event: Event) {
        if self.on && self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one operation: a success into this thread's stripe of
    /// [`OpCounters`], a failure (rare, and it carries its kind) as an event.
    pub(crate) fn op(&self, op: Op, outcome: Outcome, latency: Duration) {
        if !self.on {
            return;
        }
        let result = match outcome {
            Outcome::Ok => RESULT_OK,
            Outcome::Hit => RESULT_HIT,
            Outcome::Miss => RESULT_MISS,
            Outcome::Error(kind) => return self.record(Event::Failed { op, kind, latency }),
        };
        self.counters.add(op, result, latency);
    }

    /// The counters the metrics actor sums.
    pub(crate) fn counters(&self) -> Arc<OpCounters> {
        self.counters.clone()
    }

    /// The backend's connection went up (`true`) or down (`false`); exported
    /// as the `objdatakey_backend_up` gauge. RocksDB engines report up when
    /// the worker pool starts and down when they stop; network backends on
    /// every connect and disconnect. Repeating the same state is harmless.
    pub(crate) fn backend_up(&self, up: bool) {
        self.record(Event::BackendUp(up));
    }
}

const RESULT_OK: usize = 0;
const RESULT_HIT: usize = 1;
const RESULT_MISS: usize = 2;
/// Stripes of [`OpCounters`]; threads beyond this many share them.
const STRIPES: usize = 8;
const BUCKETS: usize = 256;

/// Counts of successful operations and their latency buckets, striped: each
/// thread adds to its own stripe with relaxed atomic adds on cache lines no
/// other core writes (while there are no more recording threads than
/// stripes), so recording costs a few uncontended adds and never waits or
/// drops anything. Counters only grow; the metrics actor sums the stripes
/// and applies the difference from its last sum ([`OpTotals::since`]).
pub(crate) struct OpCounters {
    stripes: Box<[Stripe]>,
}

#[repr(align(128))]
struct Stripe {
    /// Per op and result (ok, hit, miss): [`LatencyHistogram`]'s buckets.
    /// A bucket per result, so one add counts both the result and the
    /// latency.
    buckets: [[[AtomicU64; BUCKETS]; 3]; 4],
    sum_ns: [AtomicU64; 4],
    max_ns: [AtomicU64; 4],
}

fn atomics<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl Stripe {
    fn new() -> Self {
        Stripe {
            buckets: std::array::from_fn(|_| std::array::from_fn(|_| atomics())),
            sum_ns: atomics(),
            max_ns: atomics(),
        }
    }
}

impl OpCounters {
    fn new() -> Self {
        OpCounters {
            stripes: (0..STRIPES).map(|_| Stripe::new()).collect(),
        }
    }

    fn add(&self, op: Op, result: usize, latency: Duration) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static MINE: usize = (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % STRIPES;
        }
        let stripe = &self.stripes[MINE.with(|m| *m)];
        let (i, ns) = (
            op.index(),
            latency.as_nanos().min(u128::from(u64::MAX)) as u64,
        );
        stripe.buckets[i][result][LatencyHistogram::bucket(ns)].fetch_add(1, Ordering::Relaxed);
        stripe.sum_ns[i].fetch_add(ns, Ordering::Relaxed);
        // A new maximum is rare: look before paying for the read-modify-write.
        if ns > stripe.max_ns[i].load(Ordering::Relaxed) {
            stripe.max_ns[i].fetch_max(ns, Ordering::Relaxed);
        }
    }

    /// The sums over all stripes, now.
    pub(crate) fn totals(&self) -> OpTotals {
        let mut t = OpTotals::default();
        for s in self.stripes.iter() {
            for i in 0..4 {
                for r in 0..3 {
                    for (b, n) in s.buckets[i][r].iter().enumerate() {
                        let n = n.load(Ordering::Relaxed);
                        t.results[i][r] += n;
                        t.buckets[i][b] += n;
                    }
                }
                t.sum_ns[i] += s.sum_ns[i].load(Ordering::Relaxed);
                t.max_ns[i] = t.max_ns[i].max(s.max_ns[i].load(Ordering::Relaxed));
            }
        }
        t
    }
}

/// Sums of [`OpCounters`], or the difference of two sums.
#[derive(Clone)]
pub(crate) struct OpTotals {
    results: [[u64; 3]; 4],
    buckets: Box<[[u64; BUCKETS]; 4]>,
    sum_ns: [u64; 4],
    /// The largest latency so far (not a difference).
    max_ns: [u64; 4],
}

impl Default for OpTotals {
    fn default() -> Self {
        OpTotals {
            results: [[0; 3]; 4],
            buckets: Box::new([[0; BUCKETS]; 4]),
            sum_ns: [0; 4],
            max_ns: [0; 4],
        }
    }
}

impl OpTotals {
    /// What was added since `earlier` (an older sum of the same counters).
    pub(crate) fn since(&self, earlier: &OpTotals) -> OpTotals {
        let mut d = self.clone();
        for i in 0..4 {
            for r in 0..3 {
                d.results[i][r] -= earlier.results[i][r];
            }
            for b in 0..BUCKETS {
                d.buckets[i][b] -= earlier.buckets[i][b];
            }
            d.sum_ns[i] -= earlier.sum_ns[i];
        }
        d
    }

    /// Successful `op`s that were hits, misses and other successes.
    pub(crate) fn results(&self, op: Op) -> (u64, u64, u64) {
        let r = &self.results[op.index()];
        (r[RESULT_HIT], r[RESULT_MISS], r[RESULT_OK])
    }

    /// `(representative latency, count)` of each non-empty bucket of `op`.
    pub(crate) fn latencies(&self, op: Op) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.buckets[op.index()]
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(b, n)| (Duration::from_nanos(LatencyHistogram::middle(b)), *n))
    }
}

/// A latency histogram with four log-spaced buckets per power of two of
/// nanoseconds: quantiles are exact to within about 19%.
#[derive(Clone)]
pub(crate) struct LatencyHistogram {
    buckets: Box<[u64; 256]>,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: Box::new([0; 256]),
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl LatencyHistogram {
    fn bucket(ns: u64) -> usize {
        if ns < 4 {
            return ns as usize;
        }
        let log = 63 - ns.leading_zeros() as usize; // >= 2
        let sub = ((ns >> (log - 2)) & 3) as usize;
        log * 4 + sub
    }

    /// The middle of bucket `b`, the value a bucket's counts stand for.
    fn middle(b: usize) -> u64 {
        let lower = if b == 0 { 0 } else { Self::upper(b - 1) + 1 };
        lower + (Self::upper(b) - lower) / 2
    }

    /// Adds the counts of `buckets` (in this histogram's layout).
    fn add_buckets(&mut self, buckets: &[u64; BUCKETS], sum_ns: u64, max_ns: u64) {
        for (mine, n) in self.buckets.iter_mut().zip(buckets) {
            *mine += n;
            self.count += n;
        }
        self.sum_ns += u128::from(sum_ns);
        self.max_ns = self.max_ns.max(max_ns);
    }

    /// The largest value that falls in bucket `b`.
    fn upper(b: usize) -> u64 {
        if b < 4 {
            return b as u64;
        }
        let (log, sub) = (b / 4, (b % 4) as u64);
        let base = 1u64 << log;
        base + (sub + 1) * (base >> 2) - 1
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.buckets[Self::bucket(ns)] += 1;
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(Self::upper(b).min(self.max_ns));
            }
        }
        Duration::from_nanos(self.max_ns)
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        LatencySummary {
            mean: if self.count == 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos((self.sum_ns / u128::from(self.count)) as u64)
            },
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: Duration::from_nanos(self.max_ns),
        }
    }
}

/// Latency of one operation, end to end as the caller saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Arithmetic mean.
    pub mean: Duration,
    /// Median (bucket upper bound, within about 19%).
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest seen.
    pub max: Duration,
}

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

/// A snapshot of what a keystore has done since it started.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The active backend.
    pub backend: BackendKind,
    /// `get_cache` calls that found a live value.
    pub hits: u64,
    /// `get_cache` calls that found nothing or an expired value.
    pub misses: u64,
    /// Per-operation counts and latency.
    pub get: OpStats,
    /// See [`Stats::get`].
    pub set: OpStats,
    /// See [`Stats::get`].
    pub delete: OpStats,
    /// See [`Stats::get`].
    pub ping: OpStats,
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
}

impl Stats {
    pub(crate) fn empty(backend: BackendKind) -> Self {
        Stats {
            backend,
            hits: 0,
            misses: 0,
            get: OpStats::default(),
            set: OpStats::default(),
            delete: OpStats::default(),
            ping: OpStats::default(),
            errors_by_kind: Vec::new(),
            in_flight: 0,
            max_in_flight: 0,
            backend_restarts: 0,
            janitor_sweeps: 0,
            janitor_removed: 0,
            events_dropped: 0,
            backend_up: false,
            janitor_sweep_failures: 0,
        }
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
        }
    }
}

/// The metrics actor's running totals.
#[derive(Default)]
pub(crate) struct Aggregate {
    pub hits: u64,
    pub misses: u64,
    pub counts: [u64; 4],
    pub errors: [u64; 4],
    pub latency: [LatencyHistogram; 4],
    pub errors_by_kind: Vec<(ErrorKind, u64)>,
    pub restarts: u64,
    pub sweeps: u64,
    pub sweep_failures: u64,
    pub removed: u64,
    pub up: bool,
}

impl Aggregate {
    /// Adds what the striped counters gained since the last drain.
    pub(crate) fn apply_counts(&mut self, d: &OpTotals) {
        for op in Op::ALL {
            let i = op.index();
            let (hits, misses, ok) = d.results(op);
            self.counts[i] += hits + misses + ok;
            self.hits += hits;
            self.misses += misses;
            self.latency[i].add_buckets(&d.buckets[i], d.sum_ns[i], d.max_ns[i]);
        }
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        match *event {
            Event::Failed { op, kind, latency } => {
                let i = op.index();
                self.counts[i] += 1;
                self.latency[i].record(latency);
                self.errors[i] += 1;
                match self.errors_by_kind.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, n)) => *n += 1,
                    None => self.errors_by_kind.push((kind, 1)),
                }
            }
            Event::Sweep { removed, .. } => {
                self.sweeps += 1;
                self.removed += removed;
            }
            Event::SweepFailed => self.sweep_failures += 1,
            Event::Restart => self.restarts += 1,
            Event::BackendUp(up) => self.up = up,
        }
    }

    pub(crate) fn snapshot(&self, backend: BackendKind) -> Stats {
        let op = |o: Op| OpStats {
            count: self.counts[o.index()],
            errors: self.errors[o.index()],
            latency: self.latency[o.index()].summary(),
        };
        let mut s = Stats::empty(backend);
        s.hits = self.hits;
        s.misses = self.misses;
        s.get = op(Op::Get);
        s.set = op(Op::Set);
        s.delete = op(Op::Delete);
        s.ping = op(Op::Ping);
        s.errors_by_kind = self.errors_by_kind.clone();
        s.backend_restarts = self.restarts;
        s.janitor_sweeps = self.sweeps;
        s.janitor_removed = self.removed;
        s.janitor_sweep_failures = self.sweep_failures;
        s.backend_up = self.up;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counts_from_many_threads_add_up_exactly_across_drains() {
        let (rec, _events, _dropped) = Recorder::new(true);
        let counters = rec.counters();
        let mut agg = Aggregate::default();
        let mut seen = OpTotals::default();
        let mut drain = |agg: &mut Aggregate| {
            let now = counters.totals();
            agg.apply_counts(&now.since(&seen));
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
    fn histogram_buckets_are_monotonic_and_bound_values() {
        for ns in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            1000,
            1023,
            1024,
            123_456_789,
            u64::MAX / 2,
        ] {
            let b = LatencyHistogram::bucket(ns);
            assert!(LatencyHistogram::upper(b) >= ns, "{ns}");
            if b > 0 {
                assert!(LatencyHistogram::upper(b - 1) < ns, "{ns}");
            }
        }
        let mut h = LatencyHistogram::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert!(s.p50 >= Duration::from_micros(50) && s.p50 <= Duration::from_micros(60));
        assert!(s.p99 >= Duration::from_micros(99));
        assert_eq!(s.max, Duration::from_micros(100));
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
        a.apply_counts(&rec.counters().totals().since(&OpTotals::default()));
        for e in events.try_iter() {
            a.apply(&e);
        }
        let s = a.snapshot(BackendKind::RocksDb);
        assert_eq!((s.hits, s.misses, s.get.count, s.set.errors), (1, 2, 3, 1));
        assert_eq!(s.errors(), 1);
        assert!((s.hit_rate().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    }
}
