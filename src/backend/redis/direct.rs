//! [`RedisDirect`]: the part of a Redis backend generation the engine calls
//! on the caller's own task.
//!
//! The command is encoded and its reply decoded on the caller's thread; only
//! the socket I/O runs where the connection's driver task lives (the
//! engine's runtime, or the I/O runtime). Every command is pipelined over the
//! one multiplexed socket while earlier ones wait for their replies; GETs and
//! SETs that find many others in flight are combined (see [`combine`](super::combine)).

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::RedisTarget;
use super::combine::{self, Combiner, Route};
use super::commands;
use super::conn::{Conn, in_runtime};
use super::link::Link;
use crate::backend::Deadline;
use crate::error::{ErrorKind, KeystoreError, Result};

/// The part of a Redis backend generation the engine calls directly: the
/// connection (once the actor has one ready) and what a call needs around it.
/// One per actor; the supervisor puts it in the current backend beside the
/// actor's mailbox, so a restart replaces both at once.
pub(crate) struct RedisDirect {
    pub(super) link: Arc<Link>,
    /// Filled by the actor: at start for a single server (the manager is
    /// lazy and reconnects itself), once opened for a cluster.
    pub(super) conn: ArcSwapOption<Conn>,
    /// Concurrent GETs and SETs waiting to go out as one command.
    pub(super) combiner: Arc<Combiner>,
}

impl RedisDirect {
    /// The connection to send on, when the actor has one ready.
    pub(crate) fn ready(&self) -> Option<Conn> {
        self.conn.load().as_deref().cloned()
    }

    /// The server this generation talks to.
    pub(crate) fn target(&self) -> &RedisTarget {
        &self.link.target
    }

    /// What a call over the connection needs around it; [`Link::run`] is
    /// the one way a command goes over the wire.
    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    /// `GET key` (`what` names it in errors), combined with other GETs into one MGET when many are in
    /// flight.
    pub(crate) async fn get(
        &self,
        conn: Conn,
        key: &Arc<str>,
        deadline: Deadline,
        what: impl Fn() -> String,
    ) -> Result<Option<String>> {
        let _in_flight = match self.combiner.route_get(key) {
            Route::Direct(guard) => Some(guard),
            Route::Alone => None,
            Route::Queued { answer, start } => {
                return self.queued(conn, answer, start, deadline, what).await;
            }
        };
        let target = self.target();
        self.link
            .run(conn, deadline, true, what, |c| {
                commands::get(target, c, key)
            })
            .await
    }

    /// `SET key json [EX ttl]` (`what` names it in errors), combined with other SETs into one MSET or
    /// script call when many are in flight.
    pub(crate) async fn set(
        &self,
        conn: Conn,
        key: &Arc<str>,
        json: &str,
        ttl: Option<u64>,
        deadline: Deadline,
        what: impl Fn() -> String,
    ) -> Result<()> {
        let _in_flight = match self.combiner.route_set(key, json, ttl) {
            Route::Direct(guard) => Some(guard),
            Route::Alone => None,
            Route::Queued { answer, start } => {
                return self.queued(conn, answer, start, deadline, what).await;
            }
        };
        self.link
            .run(conn, deadline, false, what, |c| {
                commands::set(c, key, json, ttl)
            })
            .await
    }

    /// Waits for a combined command's answer, starting the runner first
    /// when `start`.
    async fn queued<T>(
        &self,
        conn: Conn,
        answer: tokio::sync::oneshot::Receiver<Result<T>>,
        start: bool,
        deadline: Deadline,
        what: impl Fn() -> String,
    ) -> Result<T> {
        let rt = self.link.rt.load_full();
        if start {
            // Detached: the runner serves every waiter, not only this one.
            let (link, combiner) = (self.link.clone(), self.combiner.clone());
            drop(rt.spawn(async move { combine::run(&link, &combiner, conn).await }));
        }
        let waited = in_runtime(&rt, tokio::time::timeout_at(deadline.at.into(), answer));
        match waited.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_gone)) => Err(KeystoreError::new(
                ErrorKind::Stopped,
                format!(
                    "{}: the connection's runtime stopped before it was answered; retry the call",
                    self.link.on(&what())
                ),
            )),
            Err(_elapsed) => Err(deadline.timed_out(&self.link.on(&what()))),
        }
    }
}
