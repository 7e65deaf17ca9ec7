//! The request path inside the engine: admit a command, route it, wait for
//! its answer. (The handle resolves the command before and records the
//! outcome after: see `Keystore::run`.)
//!
//! 1. **In place** (RocksDB): a read that memtables or block cache can
//!    answer, or a write RocksDB takes without stalling, runs on the caller's
//!    thread (see [`in_place`](super::in_place)). It never waits, so it takes
//!    no in-flight permit and no timer.
//! 2. **Admit**: a permit from the [`Limiter`](super::limiter::Limiter),
//!    waiting at most until the call's [`Deadline`].
//! 3. **Route**: the Redis direct path when the actor has a connection
//!    ready (the permit is freed when the caller's call ends: the command
//!    on the wire is dropped by the connection at its reply or its reply
//!    timeout, the same request timeout); else a [`Request`] into the
//!    backend slot, answered on a oneshot, with the permit travelling in the
//!    request until the backend is done with it.
//! 4. **Wait** for the answer until the deadline, on a timer of the
//!    process's timer runtime (see [`timer`](super::timer)).

use tokio::sync::oneshot;

use super::in_place::{self, InPlace};
use super::limiter::Refused;
use super::{Engine, shut_down, timer};
use crate::backend::{BackendFailed, Command, Deadline, Reply, Request, Unsent};
use crate::error::{ErrorKind, KeystoreError, Result};

impl Engine {
    /// Runs `command` on the backend and answers its reply, all within the
    /// request timeout.
    pub(crate) async fn call(&self, command: Command) -> Result<Reply> {
        match self.start_in_place(&command) {
            InPlace::Answered(answer) => {
                in_place::share_the_thread().await;
                return answer;
            }
            InPlace::Joined(store, member) => {
                if let Some(answer) = Engine::group_answer(store, member).await {
                    return answer;
                }
            }
            InPlace::Elsewhere => {}
        }
        let actors = self.actors()?;
        let deadline = Deadline::after(self.timeout);
        // Kept apart from the command (which moves into the request) for
        // messages; cloning the key is a reference count.
        let (verb, subject) = (command.verb(), command.subject());
        let what = || match &self.address {
            Some(address) => format!("{} on {} ({address})", subject.describe(verb), self.backend),
            None => format!("{} on {}", subject.describe(verb), self.backend),
        };

        let permit = match self
            .limiter
            .admit(|d: Deadline| timer::sleep_until(d.at), deadline)
            .await
        {
            Ok(p) => p,
            Err(Refused::ShutDown) => return Err(shut_down()),
            Err(Refused::Full) => return Err(self.busy(&what())),
        };
        if let Some((direct, conn)) = actors.slot.redis_direct() {
            let answer = direct.call(conn, &command, deadline).await;
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
        let (tx, rx) = oneshot::channel();
        let stopped = |why: &str| {
            KeystoreError::new(
                ErrorKind::Backend,
                format!("{}: {why}; retry the call", what()),
            )
        };
        let req = Request {
            command,
            deadline,
            reply: tx,
            permit: Some(permit),
        };
        match actors.slot.send(req) {
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
