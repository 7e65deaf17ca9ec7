//! Single flight for `get_or_set`: concurrent callers that miss the same
//! name share one run of the loader (as moka's `get_with` and Go's
//! `singleflight` do).
//!
//! The first caller to miss starts a *flight*: it registers a shared future
//! for the name, then runs the loader in a task of its own, which stores the
//! value and resolves that future with the stored JSON text. Callers that
//! miss while it runs join the future. Because the loader runs in its own
//! task, a caller that gives up (its future dropped, or its request timeout)
//! never cancels the load for the others. A flight leaves the map when its
//! task ends, however it ends (a drop guard), so an error, a panic or a
//! cancelled task never poisons the name: the next miss starts a new flight.
//!
//! No user code and no spawn runs under the map's lock: registering is a map
//! insert, and the leader starts the load after the lock is released.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::oneshot;

use crate::error::{ErrorKind, KeystoreError};

/// The outcome of one flight: the JSON text stored, or why nothing was.
pub(super) type Landing = Result<Arc<str>, KeystoreError>;

/// A flight that callers can wait on, each with its own clone.
pub(super) type Flight = Shared<BoxFuture<'static, Landing>>;

/// The flights under way, by name.
#[derive(Default)]
pub(super) struct Flights {
    running: parking_lot::Mutex<HashMap<Arc<str>, (u64, Flight)>>,
    /// Tells flights of one name apart, so an ending flight removes only itself.
    next_id: AtomicU64,
}

/// What [`Flights::join_or_start`] gives a caller.
pub(super) enum Joined {
    /// A flight was under way: wait for it.
    Follower(Flight),
    /// This caller registered the flight: it must start the load with
    /// [`Takeoff::land`], then wait like the others.
    Leader(Flight, Takeoff),
}

impl Flights {
    /// The flight for `name`: the one under way, or a new one this caller leads.
    pub(super) fn join_or_start(self: &Arc<Self>, name: &str) -> Joined {
        let mut running = self.running.lock();
        if let Some((_, flight)) = running.get(name) {
            return Joined::Follower(flight.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = name.into();
        let (tx, rx) = oneshot::channel();
        let flight = rx
            .map(|landed| {
                landed.unwrap_or_else(|_| {
                    Err(KeystoreError::new(
                        ErrorKind::Loader,
                        "get_or_set: the loader's task ended without an answer \
                         (its runtime shut down); nothing was stored",
                    ))
                })
            })
            .boxed()
            .shared();
        running.insert(name.clone(), (id, flight.clone()));
        let takeoff = Takeoff {
            answer: tx,
            landed: Landed {
                flights: Arc::downgrade(self),
                name,
                id,
            },
        };
        Joined::Leader(flight, takeoff)
    }

    /// Flights under way.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.running.lock().len()
    }
}

/// The leader's part of a flight: where its load answers, and the guard
/// that takes the flight out of the map.
pub(super) struct Takeoff {
    answer: oneshot::Sender<Landing>,
    landed: Landed,
}

impl Takeoff {
    /// Answers every waiter with `landing` and ends the flight.
    pub(super) fn land(self, landing: Landing) {
        // The flight leaves the map first: a caller that misses after the
        // answer starts a new flight rather than joining a finished one.
        let Takeoff { answer, landed } = self;
        drop(landed);
        let _ = answer.send(landing);
    }
}

/// Removes its flight from the map when dropped (landing, or the loader's
/// task dropped unfinished).
struct Landed {
    flights: std::sync::Weak<Flights>,
    name: Arc<str>,
    id: u64,
}

impl Drop for Landed {
    fn drop(&mut self) {
        if let Some(flights) = self.flights.upgrade() {
            let mut running = flights.running.lock();
            if running
                .get(&self.name)
                .is_some_and(|(id, _)| *id == self.id)
            {
                running.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(j: Joined) -> (Flight, Takeoff) {
        match j {
            Joined::Leader(f, t) => (f, t),
            Joined::Follower(_) => panic!("expected to lead"),
        }
    }

    #[test]
    fn a_second_caller_joins_and_the_flight_leaves_when_it_lands() {
        let flights = Arc::new(Flights::default());
        let (f1, takeoff) = leader(flights.join_or_start("k"));
        let Joined::Follower(f2) = flights.join_or_start("k") else {
            panic!("the second caller joins");
        };
        assert_eq!(flights.len(), 1);
        takeoff.land(Ok(Arc::from("1")));
        assert_eq!(flights.len(), 0);
        let (a, b) = futures_util::future::join(f1, f2).now_or_never().unwrap();
        assert_eq!((a.unwrap().as_ref(), b.unwrap().as_ref()), ("1", "1"));
        // A new miss starts a new flight.
        let (_, takeoff) = leader(flights.join_or_start("k"));
        // A load dropped unfinished answers its waiters and leaves the map.
        let Joined::Follower(f3) = flights.join_or_start("k") else {
            panic!("joins");
        };
        drop(takeoff);
        assert_eq!(flights.len(), 0);
        let e = f3.now_or_never().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Loader);
    }
}
