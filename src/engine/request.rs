//! The one request path: every operation reaches a backend through
//! [`Engine::call`], and nowhere else.
//!
//! 1. **No-op engine** (`keystore.enabled: false`): the command's own
//!    `disabled()` answer; nothing runs.
//! 2. **Tier** (`keystore.l1.enabled`): a read of values
//!    ([`TierRead`](crate::command::TierRead)) answers from the tier's
//!    fresh copies and fills it from the backend
//!    ([`tiered`](super::tiered)); a write takes what it changes in the
//!    tier ([`Command::touch`](crate::command::Command::touch)) before it
//!    runs, and applies it when the answer comes back (then publishes it
//!    on the backplane).
//! 3. **In place** (RocksDB): what memory can answer and writes RocksDB
//!    takes without stalling run on the caller's thread
//!    ([`in_place`](super::in_place)). It never waits, so it takes no
//!    in-flight permit and no timer.
//! 4. **Admit**: a permit from the [`Limiter`](super::limiter::Limiter),
//!    waiting at most until the call's [`Deadline`].
//! 5. **Route**: the Redis direct path when the actor has a connection
//!    ready (the permit is freed when the caller's call ends: the command
//!    on the wire is dropped by the connection at its reply or its reply
//!    timeout, the same request timeout); else a [`Job`] into the current
//!    backend's mailbox, answered on a oneshot, with the permit travelling
//!    in the request until the backend is done with it.
//! 6. **Wait** for the answer until the deadline, on a timer of the
//!    process's timer runtime (see [`timer`](super::timer)).

use tokio::sync::oneshot;

use super::in_place::share_the_thread;
use super::limiter::Refused;
use super::{Engine, Live, shut_down, timer};
use crate::backend::{BackendFailed, Deadline, Request, Unsent};
use crate::command::{Call, Command, InPlace, Job, Publish};
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::tier::{Tier, Touch};

impl Engine {
    /// Runs `call` on the backend and answers it, all within the request
    /// timeout (see the module docs).
    pub(crate) async fn call<K: Call>(&self, call: K) -> Result<K::Answer> {
        let live = match self {
            Engine::Live(live) => live,
            Engine::Noop(_) => {
                let (command, finish) = call.into_command();
                return finish(command.disabled()?);
            }
        };
        let Some(tier) = live.tier.as_deref() else {
            return live.run(call).await;
        };
        let call = match call.through_tier() {
            Ok(read) => return live.read_through(tier, read).await,
            Err(call) => call,
        };
        let touch = call.touch(tier);
        let answer = live.run(call).await;
        if let Some(touch) = touch {
            // Boxed: the publish it may send would otherwise make every
            // call's future, reads included, as large as a second send.
            Box::pin(live.touched(tier, touch, answer.is_ok())).await;
        }
        answer
    }
}

impl Live {
    /// [`Engine::call`] past the tier: in place when it can be, else sent.
    pub(super) async fn run<K: Call>(&self, call: K) -> Result<K::Answer> {
        match self.start_in_place(&call) {
            InPlace::Answered(answer) => {
                share_the_thread().await;
                return answer;
            }
            InPlace::Joined {
                store,
                member,
                done,
            } => {
                if let Some(answer) = Live::group_answer(store, member).await {
                    return answer.map(|()| done());
                }
            }
            InPlace::Elsewhere => {}
        }
        let (command, finish) = call.into_command();
        // Boxed: a sent call's state (the permit wait, the route, the
        // reply wait) is the largest of the path; held inline it would
        // size every call's future, and a warm read, answered above,
        // would copy all of it each time its future is made and moved.
        finish(Box::pin(self.send(command)).await?)
    }

    /// Admits `command`, routes it to the backend and waits for its answer.
    async fn send<C: Command>(&self, command: C) -> Result<C::Answer> {
        let actors = self.actors()?;
        let deadline = Deadline::after(self.timeout);
        let what = || self.on_backend(&command.describe());

        let permit = match self
            .limiter
            .admit(|d: Deadline| timer::sleep_until(d.at), deadline)
            .await
        {
            Ok(p) => p,
            Err(Refused::ShutDown) => return Err(shut_down()),
            Err(Refused::Full) => return Err(self.busy(&what())),
        };
        if let Some((direct, conn)) = actors.backend.redis_direct() {
            let answer = command.on_redis(&direct, conn, deadline).await;
            drop(permit);
            // The direct path's deadline error names the backend only: name
            // the server too, as its other errors do.
            return answer.map_err(|e| match &self.address {
                Some(a)
                    if e.kind() == ErrorKind::Timeout && !e.to_string().contains(a.as_str()) =>
                {
                    deadline.timed_out(&what())
                }
                _ => e,
            });
        }
        // Named before the command moves into the request.
        let (verb, subject) = (command.verb(), command.subject());
        let what = || self.on_backend(&subject.describe(verb));
        let (tx, rx) = oneshot::channel();
        let stopped = |why: &str| {
            KeystoreError::new(
                ErrorKind::Stopped,
                format!("{}: {why}; retry the call", what()),
            )
        };
        let req = Request {
            work: Box::new(Job { command, reply: tx }),
            deadline,
            permit: Some(permit),
        };
        match actors.backend.send(req) {
            Ok(()) => {}
            Err(Unsent::ShutDown) => return Err(shut_down()),
            Err(Unsent::BackendGone { generation }) => {
                actors.supervisor.do_send(BackendFailed {
                    generation,
                    reason: "its workers are gone".into(),
                });
                return Err(stopped(
                    "the backend stopped; the supervisor is restarting it",
                ));
            }
        }
        tokio::select! {
            biased;
            r = rx => r.unwrap_or_else(|_| Err(stopped("the backend stopped before answering"))),
            _ = timer::sleep_until(deadline.at) => Err(deadline.timed_out(&what())),
        }
    }

    /// After a write: applies `touch` to the tier (`ok`: the backend
    /// acknowledged it), then publishes the invalidation on the backplane.
    /// A failed publish is logged, not returned: the write itself
    /// succeeded, and the other instances' copies expire within
    /// `keystore.l1.ttl_max`.
    async fn touched(&self, tier: &Tier, touch: Touch, ok: bool) {
        let Some(scope) = touch.apply(tier, ok) else {
            return;
        };
        if let Some((channel, message)) = tier.publish(scope)
            && let Err(e) = self.send(Publish { channel, message }).await
        {
            tracing::warn!(
                "the write succeeded, but its invalidation was not published: {e}; \
                 other instances may serve their copies for up to keystore.l1.ttl_max"
            );
        }
    }

    /// `what` on this backend, for messages: `get of key "k" on redis
    /// (127.0.0.1:6379)`.
    fn on_backend(&self, what: &str) -> String {
        match &self.address {
            Some(address) => format!("{what} on {} ({address})", self.backend),
            None => format!("{what} on {}", self.backend),
        }
    }

    fn busy(&self, what: &str) -> KeystoreError {
        KeystoreError::new(
            ErrorKind::Busy,
            format!(
                "{what}: the engine stayed full ({} requests in flight) for {} ms; \
                 raise keystore.max_in_flight or lower the load",
                self.limiter.max(),
                self.timeout.as_millis()
            ),
        )
    }
}
