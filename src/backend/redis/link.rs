//! [`Link`]: what one call over a Redis-protocol connection needs around
//! the connection: the target it names in errors, the liveness it keeps,
//! the runtime the connection lives on, the supervision a panic reports to.
//! [`Link::run`] is the one way a command goes over the wire: in the
//! connection's runtime, within the deadline, a panic caught, a read
//! retried once on a dropped connection.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use futures_util::FutureExt;

use super::RedisTarget;
use super::commands::{Answer, Failure};
use super::conn::{Conn, in_runtime};
use crate::backend::{Deadline, Supervision};
use crate::error::Result;
use crate::metrics::Recorder;

/// What a call needs around the connection (see the module docs). One per
/// backend generation.
pub(crate) struct Link {
    pub(super) target: Arc<RedisTarget>,
    /// Whether the last command or ping reached the server.
    pub(super) up: Liveness,
    /// Where the connection lives: the I/O runtime, or the engine's. redis-rs
    /// spawns its driver and reconnects and arms reply timers on whatever
    /// runtime is current, so every poll of a call enters this one, whichever
    /// executor drives the caller. Swapped to the engine's runtime if the
    /// I/O runtime shuts down first.
    pub(super) rt: ArcSwap<tokio::runtime::Handle>,
    /// Told when a call panics, so it restarts this generation.
    pub(super) supervision: Supervision,
}

/// Tracks `backend up` and tells the metrics actor when it changes.
pub(crate) struct Liveness {
    pub(super) up: AtomicBool,
    pub(super) recorder: Recorder,
}

impl Liveness {
    pub(super) fn new(recorder: Recorder) -> Self {
        Liveness {
            up: AtomicBool::new(false),
            recorder,
        }
    }

    pub(super) fn set(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.recorder.backend_up(up);
        }
    }
}

impl Link {
    /// Runs `op` over `conn` (see the module docs). `what` names the call
    /// in errors (`get of key "k"`); `retry_safe` says whether sending it
    /// twice is harmless: only then is it repeated after a dropped
    /// connection.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        conn: Conn,
        deadline: Deadline,
        retry_safe: bool,
        what: impl Fn() -> String,
        op: F,
    ) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Answer<T>>,
    {
        let rt = self.rt.load_full();
        // The deadline's timer is created inside the connection's runtime
        // too: with an I/O runtime that is the caller's own, whose timer
        // wheel is sharded per worker, rather than the engine thread's one.
        // (A timer of a runtime that shut down mid-call panics: caught too.)
        let run = AssertUnwindSafe(in_runtime(&rt, async {
            let run = self.execute(conn, deadline, retry_safe, &what, op);
            tokio::time::timeout_at(deadline.at.into(), run).await
        }));
        match run.catch_unwind().await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_elapsed)) => Err(deadline.timed_out(&self.on(&what()))),
            Err(payload) => {
                Err(self
                    .supervision
                    .panicked(payload.as_ref(), &what(), self.target.kind.as_str()))
            }
        }
    }

    /// `what` on this backend, for messages: `get of key "k" on redis`.
    pub(super) fn on(&self, what: &str) -> String {
        format!("{what} on {}", self.target.kind)
    }

    /// Runs `op`, retrying it once on a dropped connection when `retry_safe`.
    async fn execute<T, F, Fut>(
        &self,
        conn: Conn,
        deadline: Deadline,
        retry_safe: bool,
        what: &impl Fn() -> String,
        op: F,
    ) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Answer<T>>,
    {
        // A write whose connection dropped may have reached the server:
        // repeating it could overwrite a newer value another client wrote
        // meanwhile (or count a delete twice), so its caller gets the
        // connection error and decides.
        let mut first = true;
        loop {
            match op(conn.clone()).await {
                Ok(answer) => {
                    self.up.set(true);
                    return Ok(answer);
                }
                Err(Failure::Redis(e)) => {
                    let dropped = e.is_connection_dropped() || e.is_unrecoverable_error();
                    if dropped || e.is_io_error() {
                        self.up.set(false);
                    }
                    // Refused means the server is not there: retrying at once
                    // would only fail again. A dropped connection is worth one
                    // more try on the fresh connection the manager is opening.
                    if first
                        && retry_safe
                        && dropped
                        && !e.is_connection_refusal()
                        && !e.is_timeout()
                        && !deadline.passed()
                    {
                        first = false;
                        continue;
                    }
                    return Err(self.target.error(&what(), &e));
                }
                Err(Failure::Ours(e)) => return Err(e),
            }
        }
    }
}
