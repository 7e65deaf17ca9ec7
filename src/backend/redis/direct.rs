//! [`RedisDirect`]: the part of a Redis backend generation the handle calls
//! on the caller's own task, and the commands it runs.
//!
//! The command is encoded and its reply decoded on the caller's thread; only
//! the socket I/O runs where the connection's driver task lives (the
//! engine's runtime, or the I/O runtime). Every command is pipelined over the
//! one multiplexed socket while earlier ones wait for their replies.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use arc_swap::{ArcSwap, ArcSwapOption};
use futures_util::FutureExt;
use redis::aio::ConnectionManager;

use super::RedisTarget;
use super::cluster::ClusterRouter;
use super::combine::{Combiner, Route};
use super::commands::{Failure, run_once};
use crate::backend::{Command, Deadline, Reply, Supervision};
use crate::error::Result;
use crate::metrics::Recorder;

/// The connection the commands go through; cloning it is cheap.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterRouter),
}

/// The part of a Redis backend generation the handle calls directly: the
/// connection (once the actor has one ready) and what a call needs around it.
/// One per actor; the supervisor puts it in the backend slot beside the
/// actor's mailbox, so a restart replaces both at once.
pub(crate) struct RedisDirect {
    pub(super) target: Arc<RedisTarget>,
    /// Whether the last command or ping reached the server.
    pub(super) up: Arc<Liveness>,
    /// Filled by the actor: at start for a single server (the manager is
    /// lazy and reconnects itself), once opened for a cluster.
    pub(super) conn: ArcSwapOption<Conn>,
    /// Where the connection lives: the I/O runtime, or the engine's. redis-rs
    /// spawns its driver and reconnects and arms reply timers on whatever
    /// runtime is current, so every poll of a call enters this one, whichever
    /// executor drives the caller. Swapped to the engine's runtime if the
    /// I/O runtime shuts down first.
    pub(super) rt: ArcSwap<tokio::runtime::Handle>,
    /// Told when a call panics, so it restarts this generation.
    pub(super) supervision: Supervision,
    /// Concurrent GETs waiting to go out as one MGET (see [`combine`](super::combine)).
    pub(super) combiner: Combiner,
}

impl RedisDirect {
    /// The connection to send on, when the actor has one ready.
    pub(crate) fn ready(&self) -> Option<Conn> {
        self.conn.load().as_deref().cloned()
    }

    /// Runs `command` over `conn` on the calling task (see the module docs),
    /// answering [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) at the deadline. A panic inside is
    /// caught, answered as [`ErrorKind::Panic`](crate::ErrorKind::Panic) and reported to the
    /// supervisor, which restarts the backend.
    pub(crate) async fn call(
        self: &Arc<Self>,
        conn: Conn,
        command: &Command,
        deadline: Deadline,
    ) -> Result<Reply> {
        match self.combiner.route(command) {
            None => self.call_alone(conn, command, deadline).await,
            Some(Route::Direct(_in_flight)) => self.call_alone(conn, command, deadline).await,
            Some(Route::Queued { answer, start }) => {
                let rt = self.rt.load_full();
                if start {
                    // Detached: the runner serves every waiter, not only this one.
                    drop(rt.spawn(self.clone().run_combined(conn)));
                }
                let waited = in_runtime(&rt, tokio::time::timeout_at(deadline.at.into(), answer));
                match waited.await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_gone)) => Err(crate::error::KeystoreError::new(
                        crate::error::ErrorKind::Backend,
                        format!(
                            "{} on {}: the connection's runtime stopped before it was \
                             answered; retry the call",
                            command.describe(),
                            self.target.kind
                        ),
                    )),
                    Err(_elapsed) => Err(deadline.timed_out(&format!(
                        "{} on {}",
                        command.describe(),
                        self.target.kind
                    ))),
                }
            }
        }
    }

    /// [`call`](Self::call) for a command sent on its own.
    pub(super) async fn call_alone(
        &self,
        conn: Conn,
        command: &Command,
        deadline: Deadline,
    ) -> Result<Reply> {
        let rt = self.rt.load_full();
        // The deadline's timer is created inside the connection's runtime
        // too: with an I/O runtime that is the caller's own, whose timer
        // wheel is sharded per worker, rather than the engine thread's one.
        // (A timer of a runtime that shut down mid-call panics: caught too.)
        let run = AssertUnwindSafe(in_runtime(&rt, async {
            let run = execute(&self.target, conn, command, deadline, &self.up);
            tokio::time::timeout_at(deadline.at.into(), run).await
        }));
        let what = || format!("{} on {}", command.describe(), self.target.kind);
        match run.catch_unwind().await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_elapsed)) => Err(deadline.timed_out(&what())),
            Err(payload) => Err(self.supervision.panicked(
                payload.as_ref(),
                &command.describe(),
                self.target.kind.as_str(),
            )),
        }
    }
}

/// Polls `fut` inside `rt`'s context, whichever executor drives it.
pub(super) fn in_runtime<F: Future>(rt: &tokio::runtime::Handle, fut: F) -> InRuntime<'_, F> {
    InRuntime { rt, fut }
}

pin_project_lite::pin_project! {
    /// [`in_runtime`]'s future: a struct, not an `async fn`, so the wrapped
    /// future is held once (an `async fn` keeps an awaited argument twice:
    /// as the argument and as the awaited future, a kilobyte per call here,
    /// copied at every call).
    pub(super) struct InRuntime<'rt, F> {
        rt: &'rt tokio::runtime::Handle,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for InRuntime<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.rt.enter();
        this.fut.poll(cx)
    }
}

/// Tracks `backend up` and tells the metrics actor when it changes.
pub(crate) struct Liveness {
    pub(super) up: AtomicBool,
    pub(super) recorder: Recorder,
}

impl Liveness {
    pub(super) fn set(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.recorder.backend_up(up);
        }
    }
}

/// Runs one command, retrying reads once on a dropped connection.
async fn execute(
    target: &RedisTarget,
    conn: Conn,
    command: &Command,
    deadline: Deadline,
    up: &Liveness,
) -> Result<Reply> {
    // Only reads are repeated. A write whose connection dropped may have
    // reached the server: repeating it could overwrite a newer value another
    // client wrote meanwhile (or count a delete twice), so its caller gets
    // the connection error and decides.
    let retry_safe = matches!(
        command,
        Command::Get { .. }
            | Command::GetMany { .. }
            | Command::Entries { .. }
            | Command::Ttl { .. }
            | Command::Ping
            // An invalidation sent twice drops the same copies twice.
            | Command::Publish { .. }
    );
    let mut first = true;
    loop {
        match run_once(target, conn.clone(), command, deadline).await {
            Ok(reply) => {
                up.set(true);
                return Ok(reply);
            }
            Err(Failure::Redis(e)) => {
                let dropped = e.is_connection_dropped() || e.is_unrecoverable_error();
                if dropped || e.is_io_error() {
                    up.set(false);
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
                return Err(target.error(&command.describe(), &e));
            }
            Err(Failure::Ours(e)) => return Err(e),
        }
    }
}
