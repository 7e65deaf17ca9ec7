//! [`Tally`]: what keeps totals of what the engine did ([`Stats`](super::Stats)
//! aggregate and the Prometheus handles), and how an [`Event`] is applied
//! to one.

use std::time::Duration;

use super::model::{Event, Op};
use super::recorder::OpTotals;
use crate::error::ErrorKind;

/// Something that keeps totals of what the engine did. The metrics actor
/// feeds every sink the same events and counter differences.
pub(crate) trait Tally {
    /// What the striped success counters gained since the last drain.
    fn counts(&mut self, added: &OpTotals);
    fn failed(&mut self, op: Op, kind: ErrorKind, latency: Duration);
    fn swept(&mut self, removed: u64, scanned: u64, duration: Duration);
    fn sweep_failed(&mut self);
    fn restarted(&mut self);
    fn backend_up(&mut self, up: bool);
    fn backplane_up(&mut self, up: bool);
}

impl Event {
    /// Applies this event to `sink`.
    pub(crate) fn tally(&self, sink: &mut dyn Tally) {
        match *self {
            Event::Failed { op, kind, latency } => sink.failed(op, kind, latency),
            Event::Sweep {
                removed,
                scanned,
                duration,
            } => sink.swept(removed, scanned, duration),
            Event::SweepFailed => sink.sweep_failed(),
            Event::Restart => sink.restarted(),
            Event::BackendUp(up) => sink.backend_up(up),
            Event::BackplaneUp(up) => sink.backplane_up(up),
        }
    }
}
