//! The metrics actor: drains what the hot path records (the striped success
//! counters, and the event channel for everything else), keeps the totals
//! that [`Stats`] reports, and updates the engine's Prometheus handles
//! ([`EngineMetrics`], registered once at start). It also samples what is not
//! an event (requests in flight, events dropped) on every drain.
//!
//! It stops on its own when every [`Recorder`](crate::metrics::Recorder) is
//! gone (the channel disconnects): ownership, not a flag, ends it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use crossbeam_channel::{Receiver, TryRecvError};
use tokio::sync::oneshot;

use super::limiter::Limiter;
use crate::config::BackendKind;
use crate::metrics::handles::EngineMetrics;
use crate::metrics::recorder::{OpCounters, OpTotals};
use crate::metrics::stats::Aggregate;
use crate::metrics::{Event, Stats, Tally};
use crate::tier::Tier;

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
    limiter: Limiter,
    /// The in-process tier, whose weight is sampled on every drain.
    tier: Option<Arc<Tier>>,
    ticks: u32,
}

impl MetricsActor {
    pub(crate) fn new(
        backend: BackendKind,
        events: Receiver<Event>,
        dropped: Arc<AtomicU64>,
        counters: Arc<OpCounters>,
        prom: Option<EngineMetrics>,
        limiter: Limiter,
        tier: Option<Arc<Tier>>,
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
            tier,
            ticks: 0,
        }
    }

    /// Applies every queued event; `false` once all senders are gone.
    fn drain(&mut self) -> bool {
        let alive = loop {
            match self.events.try_recv() {
                Ok(e) => {
                    e.tally(&mut self.totals);
                    if let Some(p) = &mut self.prom {
                        e.tally(p);
                    }
                }
                Err(TryRecvError::Empty) => break true,
                Err(TryRecvError::Disconnected) => break false,
            }
        };
        let now = self.counters.totals();
        let added = now.since(&self.seen);
        self.seen = now;
        self.totals.counts(&added);
        if let Some(p) = &mut self.prom {
            p.counts(&added);
            p.sample(
                self.limiter.in_flight(),
                self.dropped.load(Ordering::Relaxed),
                self.tier.as_ref().map_or(0, |t| t.weight().0),
            );
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
