//! The metrics actor: drains the event channel the hot path writes to, keeps
//! the totals that [`Stats`] reports, and updates the engine's Prometheus
//! handles ([`EngineMetrics`], registered once at start). It also samples what
//! is not an event (requests in flight, events dropped) on every drain.
//!
//! It stops on its own when every [`Recorder`](crate::stats::Recorder) is gone
//! (the channel disconnects): ownership, not a flag, ends it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use crossbeam_channel::{Receiver, TryRecvError};
use tokio::sync::oneshot;

use tokio::sync::Semaphore;

use crate::config::BackendKind;
use crate::prometheus::EngineMetrics;
use crate::stats::{Aggregate, Event, OpCounters, OpTotals, Stats};

/// How often the channel is drained when nobody asks for a snapshot.
const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// Drains between two registry upkeeps (histogram folding): 5 s.
const UPKEEP_EVERY: u32 = 50;

pub(crate) struct MetricsActor {
    backend: BackendKind,
    events: Receiver<Event>,
    dropped: Arc<AtomicU64>,
    /// Successful operations, counted on the hot path without events.
    counters: Arc<OpCounters>,
    /// The counters' sums at the last drain: each drain applies what was added since.
    seen: OpTotals,
    totals: Aggregate,
    /// `None` when metrics are off (`KeystoreBuilder::metrics(false)`).
    prom: Option<EngineMetrics>,
    limiter: Arc<Semaphore>,
    max_in_flight: usize,
    ticks: u32,
}

impl MetricsActor {
    pub(crate) fn new(
        backend: BackendKind,
        events: Receiver<Event>,
        dropped: Arc<AtomicU64>,
        counters: Arc<OpCounters>,
        prom: Option<EngineMetrics>,
        limiter: Arc<Semaphore>,
        max_in_flight: usize,
    ) -> Self {
        MetricsActor {
            backend,
            events,
            dropped,
            counters,
            seen: OpTotals::default(),
            totals: Aggregate::default(),
            prom,
            limiter,
            max_in_flight,
            ticks: 0,
        }
    }

    /// Applies every queued event; `false` once all senders are gone.
    fn drain(&mut self) -> bool {
        let alive = loop {
            match self.events.try_recv() {
                Ok(e) => {
                    self.totals.apply(&e);
                    if let Some(p) = &mut self.prom {
                        p.apply(&e);
                    }
                }
                Err(TryRecvError::Empty) => break true,
                Err(TryRecvError::Disconnected) => break false,
            }
        };
        let now = self.counters.totals();
        let added = now.since(&self.seen);
        self.seen = now;
        self.totals.apply_counts(&added);
        if let Some(p) = &mut self.prom {
            p.apply_counts(&added);
        }
        if let Some(p) = &mut self.prom {
            let in_flight = self
                .max_in_flight
                .saturating_sub(self.limiter.available_permits());
            p.sample(in_flight, self.dropped.load(Ordering::Relaxed));
        }
        alive
    }
}

impl Actor for MetricsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(DRAIN_EVERY, |act, ctx| {
            if !act.drain() {
                ctx.stop();
            }
            act.ticks += 1;
            if act.ticks >= UPKEEP_EVERY {
                act.ticks = 0;
                if let Some(p) = &act.prom {
                    p.registry().upkeep();
                }
            }
        });
    }
}

/// Applies every event recorded before the ask, then answers.
pub(crate) struct Flush {
    pub reply: oneshot::Sender<()>,
}

impl Message for Flush {
    type Result = ();
}

impl Handler<Flush> for MetricsActor {
    type Result = ();

    fn handle(&mut self, msg: Flush, _ctx: &mut Context<Self>) {
        self.drain();
        let _ = msg.reply.send(());
    }
}

/// Asks for a [`Stats`] snapshot that includes every event recorded before the ask.
pub(crate) struct Snapshot {
    pub reply: oneshot::Sender<Stats>,
}

impl Message for Snapshot {
    type Result = ();
}

impl Handler<Snapshot> for MetricsActor {
    type Result = ();

    fn handle(&mut self, msg: Snapshot, _ctx: &mut Context<Self>) {
        self.drain();
        let mut s = self.totals.snapshot(self.backend);
        s.events_dropped = self.dropped.load(Ordering::Relaxed);
        let _ = msg.reply.send(s);
    }
}
