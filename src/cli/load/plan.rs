//! The work of one run: what every task shares ([`Plan`]) and what one
//! task does ([`task`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use objdatakey::{Keystore, Ttl};
use serde::de::IgnoredAny;

use super::keys::{Keys, splitmix64};
use super::{Mode, PROGRESS_BATCH};

#[derive(Debug, Clone, Copy)]
pub(super) enum Until {
    /// After exactly this many operations in total.
    Ops(u64),
    /// At this instant (set when the tasks start).
    Deadline(Instant),
}

/// When an open-loop run (`--rate`) means each operation to start.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    /// When operation 0 is due.
    pub(super) start: Instant,
    /// Seconds between two operations of the whole run (1 / rate).
    pub(super) period: f64,
}

/// An operation that starts more than this after its intended time is
/// counted late: the schedule was behind (every caller busy, or the
/// backend slow), beyond what the timer's own 1 ms granularity explains.
pub(super) const LATE_AFTER: Duration = Duration::from_millis(2);

impl Schedule {
    /// When operation `i` is due.
    fn at(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 * self.period)
    }
}

/// What every task needs, shared read-only.
pub(super) struct Plan {
    pub(super) until: Until,
    /// `--rate`: an open loop, each operation timed from when it was due
    /// (a stall shows in every operation it delays, not only in those
    /// under way); `None`: a closed loop, each caller sends its next
    /// operation when its last one is answered.
    pub(super) schedule: Option<Schedule>,
    pub(super) concurrency: u64,
    /// Which key each operation uses (`--key-dist`, `--seed`).
    pub(super) keys: Keys,
    pub(super) read_ratio: f64,
    pub(super) ttl: Ttl,
    /// The stored value: a JSON string whose text is `--value-bytes` long.
    pub(super) value: String,
    pub(super) mode: Mode,
    /// get-or-set mode: how long a loader call takes.
    pub(super) loader_sleep: Duration,
    /// get-or-set mode: loader calls so far.
    pub(super) loader_calls: AtomicU64,
}

impl Plan {
    /// Whether operation `i` is a read: a pure function of `i`, so runs repeat.
    fn is_read(&self, i: u64) -> bool {
        if self.read_ratio >= 1.0 {
            return true;
        }
        if self.read_ratio <= 0.0 {
            return false;
        }
        // The top 53 bits of a well-mixed hash, as a uniform fraction in [0, 1).
        let u = (splitmix64(i) >> 11) as f64 / (1u64 << 53) as f64;
        u < self.read_ratio
    }
}

/// What one task saw, or (merged) the whole run.
pub(super) struct Counts {
    pub latency_ns: Histogram<u64>,
    pub gets: u64,
    pub sets: u64,
    pub hits: u64,
    pub misses: u64,
    /// Open loop: operations that started later than [`LATE_AFTER`] past
    /// their intended time.
    pub late: u64,
    /// Count and first message per error kind.
    pub errors: BTreeMap<&'static str, (u64, String)>,
}

impl Counts {
    fn new() -> Self {
        Counts {
            // Auto-resizing, 3 significant figures: memory follows the largest
            // latency seen (about 120 KiB per task for a 10 ms maximum), not a
            // fixed range.
            latency_ns: Histogram::new(3).expect("3 significant figures is valid"),
            gets: 0,
            sets: 0,
            hits: 0,
            misses: 0,
            late: 0,
            errors: BTreeMap::new(),
        }
    }

    /// The counts of all `tasks` together.
    pub(super) fn merge(tasks: impl IntoIterator<Item = Counts>) -> Result<Counts, String> {
        let mut all = Counts::new();
        for r in tasks {
            all.latency_ns
                .add(&r.latency_ns)
                .map_err(|e| format!("merging latency histograms: {e:?}"))?;
            all.gets += r.gets;
            all.sets += r.sets;
            all.hits += r.hits;
            all.misses += r.misses;
            all.late += r.late;
            for (k, (n, first)) in r.errors {
                all.errors.entry(k).or_insert((0, first)).0 += n;
            }
        }
        Ok(all)
    }
}

/// Runs operations `first`, `first + C`, … of the plan through `keystore`.
pub(super) async fn task(
    keystore: Keystore,
    plan: Arc<Plan>,
    first: u64,
    done: Arc<AtomicU64>,
) -> Counts {
    let mut r = Counts::new();
    let mut key = String::with_capacity(24);
    let mut i = first;
    let mut unreported = 0u64;
    loop {
        // Open loop: the operation's time is when it was due, however late
        // this caller gets to it; closed loop: now.
        let due = plan.schedule.map(|s| s.at(i));
        let started = due.unwrap_or_else(Instant::now);
        match plan.until {
            Until::Ops(n) if i >= n => break,
            Until::Deadline(t) if started >= t => break,
            _ => {}
        }
        if let Some(due) = due {
            let now = Instant::now();
            if now < due {
                tokio::time::sleep_until(due.into()).await;
            } else if now - due > LATE_AFTER {
                r.late += 1;
            }
        }
        key.clear();
        let _ = write!(key, "load:{:08}", plan.keys.of(i));
        let outcome = if plan.mode == Mode::GetOrSet {
            r.gets += 1;
            let source = plan.clone();
            let load = move || async move {
                source.loader_calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(source.loader_sleep).await;
                Ok::<_, String>(source.value.clone())
            };
            keystore
                .get_or_set::<String, _, _, _>(&key, plan.ttl, load)
                .await
                .map(|_| ())
        } else if plan.is_read(i) {
            r.gets += 1;
            match keystore.get_cache::<IgnoredAny>(&key).await {
                Ok(Some(_)) => {
                    r.hits += 1;
                    Ok(())
                }
                Ok(None) => {
                    r.misses += 1;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            r.sets += 1;
            keystore
                .set_cache(&key, plan.value.as_str(), plan.ttl)
                .await
        };
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // `record`, not `saturating_record`: only `record` grows an
        // auto-resizing histogram (saturating clamps to its current top).
        let _ = r.latency_ns.record(ns.max(1));
        if let Err(e) = outcome {
            let slot = r
                .errors
                .entry(e.kind().as_str())
                .or_insert_with(|| (0, e.to_string()));
            slot.0 += 1;
        }
        i += plan.concurrency;
        unreported += 1;
        if unreported == PROGRESS_BATCH {
            done.fetch_add(unreported, Ordering::Relaxed);
            unreported = 0;
        }
    }
    done.fetch_add(unreported, Ordering::Relaxed);
    r
}

#[cfg(test)]
mod tests {
    use super::super::keys::KeyDist;
    use super::*;

    #[test]
    fn read_choice_is_deterministic_and_close_to_the_ratio() {
        let plan = Plan {
            until: Until::Ops(0),
            schedule: None,
            concurrency: 1,
            keys: Keys::new(KeyDist::Sequential, 1, 1),
            read_ratio: 0.3,
            ttl: Ttl::Never,
            value: String::new(),
            mode: Mode::Mixed,
            loader_sleep: Duration::ZERO,
            loader_calls: AtomicU64::new(0),
        };
        let reads = (0..100_000).filter(|&i| plan.is_read(i)).count();
        assert!((28_000..32_000).contains(&reads), "{reads}");
        assert_eq!(
            (0..100).map(|i| plan.is_read(i)).collect::<Vec<_>>(),
            (0..100).map(|i| plan.is_read(i)).collect::<Vec<_>>()
        );
    }
}
