//! Concurrent GETs combined into MGETs.
//!
//! A multiplexed connection pipelines every caller's GET as a command of its
//! own: at hundreds of callers the server, the socket and the reply parser
//! handle hundreds of small commands per round trip. The handle knows more
//! than the connection: GETs that wait at the same moment can be one `MGET`
//! (one per hash slot on a cluster, through the batch path).
//!
//! - A GET that finds fewer than [`DIRECT_MAX`] GETs in flight (and none
//!   waiting) is sent at once, on the caller's task, as before: no added
//!   latency at 1 caller, and the connection's pipelining at a few.
//! - A GET that arrives beyond that waits in the pending list. The first to wait starts the *runner*, a task of the
//!   connection's runtime that sends all pending GETs as one MGET, hands each
//!   caller its value, and goes on while GETs keep arriving; it stops when
//!   the list is empty. A task, not the first waiter's future, so a waiter
//!   that gives up (its deadline, its future dropped) cancels nothing.
//!
//! Semantics kept:
//! - a GET is sent after it started, so it never answers a value older
//!   than a SET that completed before it started;
//! - an error reaches exactly the callers whose GETs were in that MGET,
//!   each with an error naming its own key; on a cluster, and for a value
//!   that is not text, only the callers whose own GET fails (the batch's
//!   GETs are then sent one by one);
//! - each caller waits at most its own deadline and holds its own
//!   in-flight permit while it waits.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::RedisDirect;
use super::direct::Conn;
use crate::backend::{Command, Deadline, Reply};
use crate::error::{KeystoreError, Result};

/// GETs sent on their callers' own tasks at once, at most: below this the
/// connection's own pipelining is as good (measured: combining already at 2
/// made the 16-caller cell 0.53x raw, against 0.69x without), above it one
/// MGET carries what would be dozens of commands.
const DIRECT_MAX: usize = 16;

/// A caller waiting in the pending list.
struct Waiter {
    key: Arc<str>,
    reply: oneshot::Sender<Result<Option<String>>>,
}

#[derive(Default)]
struct State {
    /// GETs sent on their callers' own tasks and not answered yet.
    direct: usize,
    pending: Vec<Waiter>,
    /// A runner is sending the pending list.
    running: bool,
}

/// The pending GETs of one connection generation (see the module docs).
#[derive(Default)]
pub(crate) struct Combiner {
    state: parking_lot::Mutex<State>,
}

/// Where a GET goes.
pub(super) enum Route<'a> {
    /// Alone: sent on the caller's task. The guard counts it in flight.
    Direct(DirectGuard<'a>),
    /// Behind another: waits for the runner's answer; `start` says this
    /// caller must start the runner.
    Queued {
        answer: oneshot::Receiver<Result<Option<String>>>,
        start: bool,
    },
}

/// Counts a GET sent on its caller's task until it is answered or dropped.
pub(super) struct DirectGuard<'a>(&'a Combiner);

impl Drop for DirectGuard<'_> {
    fn drop(&mut self) {
        self.0.state.lock().direct -= 1;
    }
}

impl Combiner {
    /// Routes a GET of `key`.
    pub(super) fn route(&self, key: &Arc<str>) -> Route<'_> {
        let mut st = self.state.lock();
        if st.direct < DIRECT_MAX && st.pending.is_empty() {
            st.direct += 1;
            return Route::Direct(DirectGuard(self));
        }
        let (tx, rx) = oneshot::channel();
        st.pending.push(Waiter {
            key: key.clone(),
            reply: tx,
        });
        let start = !st.running;
        st.running = true;
        Route::Queued { answer: rx, start }
    }

    /// The next batch for the runner, or `None` (and the runner stops) when
    /// nothing waits. Waiters that gave up are left out.
    fn next_batch(&self) -> Option<Vec<Waiter>> {
        let mut st = self.state.lock();
        loop {
            if st.pending.is_empty() {
                st.running = false;
                return None;
            }
            let batch: Vec<Waiter> = std::mem::take(&mut st.pending)
                .into_iter()
                .filter(|w| !w.reply.is_closed())
                .collect();
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }
}

impl RedisDirect {
    /// The runner (see the module docs): sends the pending GETs, a batch at
    /// a time, until none waits.
    pub(super) async fn run_combined(self: Arc<Self>, conn: Conn) {
        while let Some(batch) = self.combiner.next_batch() {
            let keys: Vec<Arc<str>> = batch.iter().map(|w| w.key.clone()).collect();
            let n = keys.len();
            let command = if n == 1 {
                Command::Get {
                    key: keys[0].clone(),
                }
            } else {
                Command::GetMany { keys }
            };
            let deadline = Deadline::after(self.target.response_timeout);
            let answer = self.call_alone(conn.clone(), &command, deadline).await;
            match answer {
                Ok(Reply::Value(value)) if n == 1 => {
                    for w in batch {
                        let _ = w.reply.send(Ok(value.clone()));
                    }
                }
                Ok(Reply::Values(values)) if values.len() == n => {
                    for (w, value) in batch.into_iter().zip(values) {
                        let _ = w.reply.send(Ok(value));
                    }
                }
                Ok(other) => {
                    let e = KeystoreError::new(
                        crate::error::ErrorKind::Backend,
                        format!("internal error: unexpected answer to a combined GET: {other:?}"),
                    );
                    for w in batch {
                        let _ = w.reply.send(Err(own(&e, &w.key, n)));
                    }
                }
                // One key's value is not text, or (on a cluster) the node of
                // some of the keys' slots failed: that is an error of those
                // keys alone, so each GET of the batch is sent on its own
                // (the others are answered; a node that is down refuses at
                // once). A single server's failed MGET fails every GET.
                Err(e) if n > 1 && (e.is_data_error() || matches!(conn, Conn::Cluster(_))) => {
                    let alone = batch.into_iter().map(|w| {
                        let (direct, conn) = (self.clone(), conn.clone());
                        async move {
                            let get = Command::Get { key: w.key };
                            let answer = direct.call_alone(conn, &get, deadline).await;
                            let _ = w.reply.send(answer.and_then(|r| match r {
                                Reply::Value(v) => Ok(v),
                                other => Err(KeystoreError::new(
                                    crate::error::ErrorKind::Backend,
                                    format!(
                                        "internal error: unexpected answer to a GET: {other:?}"
                                    ),
                                )),
                            }));
                        }
                    });
                    futures_util::future::join_all(alone).await;
                }
                Err(e) => {
                    for w in batch {
                        let _ = w.reply.send(Err(own(&e, &w.key, n)));
                    }
                }
            }
        }
    }
}

/// `e`, the error of a combined GET of `n` keys, as the error of the GET of
/// `key`: the same kind, its own key named first.
fn own(e: &KeystoreError, key: &str, n: usize) -> KeystoreError {
    if n == 1 {
        return e.clone();
    }
    KeystoreError::new(
        e.kind(),
        format!(
            "get of key {key:?} (sent in one MGET with {} other GETs): {e}",
            n - 1
        ),
    )
}
