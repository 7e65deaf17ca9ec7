//! The hot-path side of metrics: the [`Recorder`] every call records into.
//!
//! Recording never waits. A successful operation (nearly all of them) adds to
//! the recording thread's stripe of [`OpCounters`]: a few relaxed atomic adds
//! on cache lines no other core writes, nothing to queue or drop, at any rate.
//! Everything else (failures with their kind, sweeps, restarts, backend up or
//! down) is an [`Event`] sent into a bounded `crossbeam-channel` with
//! `try_send`. If the metrics actor ever falls so far behind that the channel
//! is full, the event is dropped and counted in `Stats::events_dropped`, so
//! an undercount is visible rather than silent. With
//! [`KeystoreBuilder::metrics(false)`](crate::KeystoreBuilder::metrics) the
//! recorder records nothing at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::histogram::{BUCKETS, LatencyHistogram};
use super::model::{Event, Op, Outcome, TierCount};

/// Events the channel holds before recording starts dropping them.
pub(crate) const EVENT_CAPACITY: usize = 1 << 16;

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

    /// Counts `n` of `what` for the in-process tier (striped, like successes).
    pub(crate) fn tier(&self, what: TierCount, n: u64) {
        if self.on {
            self.counters.stripe().tier[what.index()].fetch_add(n, Ordering::Relaxed);
        }
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
pub(super) const STRIPES: usize = 8;

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
    buckets: [[[AtomicU64; BUCKETS]; 3]; Op::COUNT],
    sum_ns: [AtomicU64; Op::COUNT],
    max_ns: [AtomicU64; Op::COUNT],
    /// The in-process tier's counts, by [`TierCount`].
    tier: [AtomicU64; TierCount::COUNT],
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
            tier: atomics(),
        }
    }
}

impl OpCounters {
    fn new() -> Self {
        OpCounters {
            stripes: (0..STRIPES).map(|_| Stripe::new()).collect(),
        }
    }

    /// This thread's stripe.
    fn stripe(&self) -> &Stripe {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static MINE: usize = (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % STRIPES;
        }
        &self.stripes[MINE.with(|m| *m)]
    }

    fn add(&self, op: Op, result: usize, latency: Duration) {
        let stripe = self.stripe();
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
            for i in 0..Op::COUNT {
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
            for (sum, n) in t.tier.iter_mut().zip(&s.tier) {
                *sum += n.load(Ordering::Relaxed);
            }
        }
        t
    }
}

/// Sums of [`OpCounters`], or the difference of two sums.
#[derive(Clone)]
pub(crate) struct OpTotals {
    pub(super) results: [[u64; 3]; Op::COUNT],
    pub(super) buckets: Box<[[u64; BUCKETS]; Op::COUNT]>,
    pub(super) sum_ns: [u64; Op::COUNT],
    /// The largest latency so far (not a difference).
    pub(super) max_ns: [u64; Op::COUNT],
    /// The tier's counts, by [`TierCount`].
    pub(super) tier: [u64; TierCount::COUNT],
}

impl Default for OpTotals {
    fn default() -> Self {
        OpTotals {
            results: [[0; 3]; Op::COUNT],
            buckets: Box::new([[0; BUCKETS]; Op::COUNT]),
            sum_ns: [0; Op::COUNT],
            max_ns: [0; Op::COUNT],
            tier: [0; TierCount::COUNT],
        }
    }
}

impl OpTotals {
    /// What was added since `earlier` (an older sum of the same counters).
    pub(crate) fn since(&self, earlier: &OpTotals) -> OpTotals {
        let mut d = self.clone();
        for i in 0..Op::COUNT {
            for r in 0..3 {
                d.results[i][r] -= earlier.results[i][r];
            }
            for b in 0..BUCKETS {
                d.buckets[i][b] -= earlier.buckets[i][b];
            }
            d.sum_ns[i] -= earlier.sum_ns[i];
        }
        for (now, then) in d.tier.iter_mut().zip(&earlier.tier) {
            *now -= then;
        }
        d
    }

    /// Successful `op`s that were hits, misses and other successes.
    pub(crate) fn results(&self, op: Op) -> (u64, u64, u64) {
        let r = &self.results[op.index()];
        (r[RESULT_HIT], r[RESULT_MISS], r[RESULT_OK])
    }

    /// What the tier counted of `what`.
    pub(crate) fn tier(&self, what: TierCount) -> u64 {
        self.tier[what.index()]
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
