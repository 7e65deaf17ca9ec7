//! What travels from the engine to a backend actor: a [`Request`] carrying
//! one command's [`Work`] (its type erased, so a backend runs any command
//! without naming it), the caller's [`Deadline`] and in-flight permit.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::OwnedSemaphorePermit;

use super::redis::{Conn, RedisDirect};
use super::rocksdb::RocksStore;
use crate::error::{ErrorKind, KeystoreError};

/// A live value and how long it has left: `None` is never expires.
pub(crate) type Stored = (String, Option<Duration>);

/// When the caller stops waiting, and the budget that made it (for messages).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub at: Instant,
    budget: Duration,
}

impl Deadline {
    /// `budget` from now.
    pub(crate) fn after(budget: Duration) -> Self {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// The time the caller allowed the whole call.
    pub(crate) fn budget(&self) -> Duration {
        self.budget
    }

    pub(crate) fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The error of a call (`what`, e.g. `get of key "k" on redis`) that ran out of time.
    pub(crate) fn timed_out(&self, what: &str) -> KeystoreError {
        KeystoreError::new(
            ErrorKind::Timeout,
            format!(
                "{what} timed out after {} ms (keystore.request_timeout_ms)",
                self.budget.as_millis()
            ),
        )
    }
}

/// Turns a panic payload caught around a backend call (`what`) into the
/// caller's error, reporting it to the supervisor.
pub(crate) type OnPanic<'a> = &'a dyn Fn(&(dyn Any + Send), &str) -> KeystoreError;

/// One command on its way to a backend actor, with the caller's reply
/// channel, its type erased: each backend calls the step that is its own.
/// Implemented once, for every command, in `command::Job`.
pub(crate) trait Work: Send {
    /// `get of key "k"`, for messages.
    fn describe(&self) -> String;
    /// The caller stopped waiting (its future was dropped).
    fn caller_gone(&self) -> bool;
    /// A caller's call, not the janitor's (the janitor rests while there are some).
    fn foreground(&self) -> bool;
    /// Answers `e` without running the command.
    fn fail(self: Box<Self>, e: KeystoreError);
    /// Runs on a RocksDB pool worker and answers; a panic is answered
    /// through `on_panic`. `permit` is freed before the answer is sent.
    fn on_rocks(
        self: Box<Self>,
        store: &RocksStore,
        permit: Option<OwnedSemaphorePermit>,
        on_panic: OnPanic<'_>,
    );
    /// Runs over a Redis-protocol connection and answers.
    fn on_redis(
        self: Box<Self>,
        direct: Arc<RedisDirect>,
        conn: Conn,
        deadline: Deadline,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// One request to a backend actor.
pub(crate) struct Request {
    pub work: Box<dyn Work>,
    /// After this the caller has given up: the backend answers `Timeout` without working.
    pub deadline: Deadline,
    /// The caller's in-flight slot (`None` for the janitor's background
    /// work), held while the backend works on the request, so the limit
    /// counts queued work even after its caller stopped waiting.
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Message for Request {
    type Result = ();
}

impl Request {
    /// Gives the request back if its caller still waits for it. Otherwise
    /// (the caller is gone, or the deadline passed while it was queued)
    /// answers `Timeout`, frees its permit and returns `None`: nobody wants
    /// the work any more.
    pub(crate) fn if_wanted(self, backend: &str) -> Option<Request> {
        if self.work.caller_gone() {
            return None;
        }
        if self.deadline.passed() {
            let what = self.work.describe();
            self.fail(KeystoreError::new(
                ErrorKind::Timeout,
                format!(
                    "{what} on {backend} timed out waiting in the queue; the engine is overloaded \
                     (raise keystore.request_timeout_ms or lower the load)"
                ),
            ));
            return None;
        }
        Some(self)
    }

    /// Frees the in-flight slot, then answers `e`: a caller that reads
    /// `Stats::in_flight` right after its answer sees its slot freed.
    pub(crate) fn fail(mut self, e: KeystoreError) {
        drop(self.permit.take());
        self.work.fail(e);
    }

    /// Runs on a RocksDB pool worker (see [`Work::on_rocks`]).
    pub(crate) fn on_rocks(self, store: &RocksStore, on_panic: OnPanic<'_>) {
        if self.work.foreground() {
            store.note_foreground();
        }
        self.work.on_rocks(store, self.permit, on_panic);
    }

    /// Runs over a Redis-protocol connection (see [`Work::on_redis`]).
    pub(crate) fn on_redis(
        self,
        direct: Arc<RedisDirect>,
        conn: Conn,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.work.on_redis(direct, conn, self.deadline, self.permit)
    }
}
