//! The janitor actor: every `ttl_cleanup_interval` it removes expired RocksDB
//! entries, walking the expiry index in batches (see
//! [`backend::rocksdb::store`](crate::backend::rocksdb::store)), so its cost follows the
//! number of expired entries, not the size of the database.
//!
//! Sweep batches run on the backend's worker threads, interleaved with
//! foreground requests in the same queue, so a large sweep delays a request by
//! at most one batch (64 entries, about a quarter of a millisecond). After
//! about a millisecond of batches the janitor rests as long as they took (at
//! most 50 ms): a long sweep then uses about half of one core, and
//! foreground requests keep the rest of the machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::backend::{BackendSlot, Command, Deadline, Reply, Request};
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::metrics::{Event, Recorder};

/// Expired entries removed per batch (one worker message). A foreground
/// request queued behind a batch waits for all of it, so batches stay short
/// (about 0.25 ms); the sweep pays with more round trips. BENCHMARKS.md
/// (Janitor) has the measurements behind the figure: batches of 1 024, 256
/// and 64 put the foreground GET p99 during a sweep at about 5x, 2.3x and
/// 1.4x its p99 without one.
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
    slot: Arc<BackendSlot>,
    interval: Duration,
    recorder: Recorder,
    /// Resolves when the supervisor drops its sender: time to stop.
    stop: Option<oneshot::Receiver<()>>,
}

impl Janitor {
    pub(crate) fn new(
        slot: Arc<BackendSlot>,
        interval: Duration,
        recorder: Recorder,
        stop: oneshot::Receiver<()>,
    ) -> Self {
        Janitor {
            slot,
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
        let slot = self.slot.clone();
        let recorder = self.recorder.clone();
        let work = async move {
            let started = Instant::now();
            let result = sweep_all(&slot).await;
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
async fn sweep_all(slot: &BackendSlot) -> Result<(u64, u64)> {
    let (mut removed, mut scanned) = (0, 0);
    let mut worked = Duration::ZERO;
    loop {
        let batch_started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let req = Request {
            command: Command::Sweep { limit: BATCH },
            deadline: Deadline::after(BATCH_DEADLINE),
            reply: tx,
            permit: None,
        };
        if slot.send(req).is_err() {
            return Err(KeystoreError::new(
                ErrorKind::Shutdown,
                "expiry sweep: the keystore has shut down",
            ));
        }
        match rx.await {
            Ok(Ok(Reply::Swept {
                removed: r,
                scanned: s,
                more,
            })) => {
                removed += r;
                scanned += s;
                if !more {
                    return Ok((removed, scanned));
                }
                // Duty cycle: once the batches since the last rest took
                // REST_AFTER, rest as long as they took (at most MAX_REST),
                // so a long sweep takes at most about half of one core from
                // foreground requests. Meanwhile each next batch still
                // queues behind the foreground requests already waiting.
                worked += batch_started.elapsed();
                if worked >= REST_AFTER {
                    tokio::time::sleep(worked.min(MAX_REST)).await;
                    worked = Duration::ZERO;
                }
            }
            Ok(Ok(other)) => {
                return Err(KeystoreError::new(
                    ErrorKind::Backend,
                    format!("expiry sweep: unexpected backend answer {other:?}"),
                ));
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
