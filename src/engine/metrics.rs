//! The metrics actor: drains the event channel the hot path writes to and
//! keeps the totals that [`Stats`] reports.
//!
//! It stops on its own when every [`Recorder`](crate::stats::Recorder) is gone
//! (the channel disconnects): ownership, not a flag, ends it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use crossbeam_channel::{Receiver, TryRecvError};
use tokio::sync::oneshot;

use crate::config::BackendKind;
use crate::stats::{Aggregate, Event, Stats};

/// How often the channel is drained when nobody asks for a snapshot.
const DRAIN_EVERY: Duration = Duration::from_millis(100);

pub(crate) struct MetricsActor {
    backend: BackendKind,
    events: Receiver<Event>,
    dropped: Arc<AtomicU64>,
    totals: Aggregate,
}

impl MetricsActor {
    pub(crate) fn new(
        backend: BackendKind,
        events: Receiver<Event>,
        dropped: Arc<AtomicU64>,
    ) -> Self {
        MetricsActor {
            backend,
            events,
            dropped,
            totals: Aggregate::default(),
        }
    }

    /// Applies every queued event; `false` once all senders are gone.
    fn drain(&mut self) -> bool {
        loop {
            match self.events.try_recv() {
                Ok(e) => self.totals.apply(&e),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }
}

impl Actor for MetricsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(DRAIN_EVERY, |act, ctx| {
            if !act.drain() {
                ctx.stop();
            }
        });
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
