//! The janitor actor: every `ttl_cleanup_interval` it removes expired RocksDB
//! entries, walking the expiry index in batches (see
//! [`backend::rocksdb::store`](crate::backend::rocksdb::store)), so its cost follows the
//! number of expired entries, not the size of the database.
//!
//! Sweep batches run on the backend's worker threads, interleaved with
//! foreground requests in the same queue, so a large sweep delays a request by
//! at most one batch (64 entries, a short wait). After
//! about a millisecond of batches during which callers used the store, the
//! janitor rests as long as the batches took (at most 50 ms): a long sweep
//! then uses about half of one core, and foreground requests keep the rest of
//! the machine. With no caller to make room for, it sweeps without resting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::backend::rocksdb::SweepOutcome;
use crate::backend::{CurrentBackend, Deadline, Request};
use crate::command::{Job, Sweep};
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::metrics::{Event, Recorder};

/// Expired entries removed per batch (one worker message). A foreground
/// request queued behind a batch waits for all of it, so batches stay
/// short; the sweep pays with more round trips. Larger batches put the
/// foreground GET p99 during a sweep at several times its p99 without one
/// (see BENCHMARKS.md, Janitor).
const BATCH: usize = 64;
/// Deadline of one batch: generous, a sweep is background work.
const BATCH_DEADLINE: Duration = Duration::from_secs(60);

/// The longest rest between two sweep batches (see `sweep_all`).
const MAX_REST: Duration = Duration::from_millis(50);

/// Batch time after which the janitor rests (see `sweep_all`): a rest is a
/// timer, which cannot be shorter than a millisecond, so resting after
/// every short batch would halve the sweep's pace again.
const REST_AFTER: Duration = Duration::from_millis(1);

pub(crate) struct Janitor {
    current: Arc<CurrentBackend>,
    interval: Duration,
    recorder: Recorder,
    /// Resolves when the supervisor drops its sender: time to stop.
    stop: Option<oneshot::Receiver<()>>,
}

impl Janitor {
    pub(crate) fn new(
        current: Arc<CurrentBackend>,
        interval: Duration,
        recorder: Recorder,
        stop: oneshot::Receiver<()>,
    ) -> Self {
        Janitor {
            current,
            interval,
            recorder,
            stop: Some(stop),
        }
    }

    fn schedule(&self, ctx: &mut Context<Self>) {
        ctx.run_later(self.interval, |act, ctx| act.sweep(ctx, None, true));
    }

    fn sweep(
        &mut self,
        ctx: &mut Context<Self>,
        reply: Option<oneshot::Sender<Result<u64>>>,
        periodic: bool,
    ) {
        let current = self.current.clone();
        let recorder = self.recorder.clone();
        let work = async move {
            let started = Instant::now();
            let result = sweep_all(&current).await;
            match result {
                Ok((removed, scanned)) => recorder.record(Event::Sweep {
                    removed,
                    scanned,
                    duration: started.elapsed(),
                }),
                // Shutting down is not a failed sweep.
                Err(ref e) if e.kind() == ErrorKind::Shutdown => {}
                Err(_) => recorder.record(Event::SweepFailed),
            }
            result.map(|(removed, _)| removed)
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            match (&result, periodic) {
                (Ok(n), _) if *n > 0 => tracing::debug!("janitor removed {n} expired entries"),
                (Err(e), true) => tracing::warn!("janitor sweep failed (will retry): {e}"),
                _ => {}
            }
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
            if periodic {
                act.schedule(ctx);
            }
        }));
    }
}

/// Runs sweep batches until none is left; answers (removed, scanned).
async fn sweep_all(current: &CurrentBackend) -> Result<(u64, u64)> {
    let (mut removed, mut scanned) = (0, 0);
    let mut pace = Pace::default();
    loop {
        let batch_started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let req = Request {
            work: Box::new(Job {
                command: Sweep { limit: BATCH },
                reply: tx,
            }),
            deadline: Deadline::after(BATCH_DEADLINE),
            permit: None,
        };
        if current.send(req).is_err() {
            return Err(KeystoreError::new(
                ErrorKind::Shutdown,
                "expiry sweep: the keystore has shut down",
            ));
        }
        match rx.await {
            Ok(Ok(SweepOutcome {
                removed: r,
                scanned: s,
                more,
                contended,
            })) => {
                removed += r;
                scanned += s;
                if !more {
                    return Ok((removed, scanned));
                }
                if let Some(rest) = pace.after_batch(batch_started.elapsed(), contended) {
                    tokio::time::sleep(rest).await;
                }
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(KeystoreError::new(
                    ErrorKind::Shutdown,
                    "expiry sweep: the backend stopped before answering",
                ));
            }
        }
    }
}

/// The sweep's duty cycle: once the batches since the last rest took
/// [`REST_AFTER`], rest as long as they took (at most [`MAX_REST`]) if
/// foreground calls used the store meanwhile, so a long sweep takes at most
/// about half of one core from them (each next batch still queues behind
/// the foreground requests already waiting). If none did, go on at once:
/// resting would only make the sweep longer.
#[derive(Default)]
struct Pace {
    /// Batch time since the last rest (or the last look at the callers).
    worked: Duration,
    /// Whether a batch since then reported foreground calls.
    contended: bool,
}

impl Pace {
    /// Counts a batch that took `took`; answers the rest due after it.
    fn after_batch(&mut self, took: Duration, contended: bool) -> Option<Duration> {
        self.worked += took;
        self.contended |= contended;
        if self.worked < REST_AFTER {
            return None;
        }
        let rest = self.contended.then(|| self.worked.min(MAX_REST));
        *self = Pace::default();
        rest
    }
}

impl Actor for Janitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(stop) = self.stop.take() {
            ctx.spawn(
                async move {
                    let _ = stop.await;
                }
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
            );
        }
        self.schedule(ctx);
    }
}

/// Sweep now (outside the schedule); answers the number of entries removed.
pub(crate) struct SweepNow {
    pub reply: oneshot::Sender<Result<u64>>,
}

impl Message for SweepNow {
    type Result = ();
}

impl Handler<SweepNow> for Janitor {
    type Result = ();

    fn handle(&mut self, msg: SweepNow, ctx: &mut Context<Self>) {
        self.sweep(ctx, Some(msg.reply), false);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{MAX_REST, Pace, REST_AFTER};

    const BATCH_TOOK: Duration = Duration::from_micros(300);

    #[test]
    fn with_callers_a_sweep_rests_as_long_as_its_batches_took() {
        let mut pace = Pace::default();
        let mut batches = Duration::ZERO;
        let rest = loop {
            batches += BATCH_TOOK;
            if let Some(rest) = pace.after_batch(BATCH_TOOK, batches == BATCH_TOOK) {
                break rest;
            }
            assert!(batches < REST_AFTER, "no rest after {batches:?} of batches");
        };
        assert!(batches >= REST_AFTER);
        assert_eq!(rest, batches, "rests as long as the batches took");
        // The next window starts afresh: its own callers decide.
        assert_eq!(pace.after_batch(REST_AFTER, false), None);
        assert_eq!(pace.after_batch(REST_AFTER, true), Some(REST_AFTER));
    }

    #[test]
    fn without_callers_a_sweep_never_rests() {
        let mut pace = Pace::default();
        for _ in 0..1000 {
            assert_eq!(pace.after_batch(BATCH_TOOK, false), None);
        }
    }

    #[test]
    fn a_rest_is_at_most_max_rest() {
        let mut pace = Pace::default();
        assert_eq!(pace.after_batch(MAX_REST * 3, true), Some(MAX_REST));
    }
}
