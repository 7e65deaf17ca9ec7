//! [`Limiter`]: the bound on requests in flight.
//!
//! actix mailboxes and the worker pool's queue are unbounded in spirit, so
//! the bound lives here, before anything is queued: a request takes a permit
//! on admission and the backend frees it when it is done with the request.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::backend::Deadline;

/// Requests admitted at once, and how many are in flight now.
#[derive(Clone)]
pub(crate) struct Limiter {
    permits: Arc<Semaphore>,
    max: usize,
}

/// Why no permit was given.
pub(crate) enum Refused {
    /// The limiter was closed: the keystore has shut down.
    ShutDown,
    /// The deadline passed while every permit was taken.
    Full,
}

impl Limiter {
    pub(crate) fn new(max: usize) -> Self {
        Limiter {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Requests admitted and not yet finished.
    pub(crate) fn in_flight(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }

    /// A permit, waiting at most until `deadline` when none is free. The
    /// wait's timer comes from `timer`, made only when there is a wait.
    pub(crate) async fn admit<T: Future>(
        &self,
        timer: impl FnOnce(Deadline) -> T,
        deadline: Deadline,
    ) -> Result<OwnedSemaphorePermit, Refused> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(TryAcquireError::Closed) => Err(Refused::ShutDown),
            Err(TryAcquireError::NoPermits) => tokio::select! {
                biased;
                p = self.permits.clone().acquire_owned() => p.map_err(|_| Refused::ShutDown),
                _ = timer(deadline) => Err(Refused::Full),
            },
        }
    }

    /// Refuses every request from now on; waiting ones are woken with `ShutDown`.
    pub(crate) fn close(&self) {
        self.permits.close();
    }
}
