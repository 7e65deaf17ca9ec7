//! Concurrent GETs and SETs combined into one MGET, one MSET and a script
//! call per TTL.
//!
//! A multiplexed connection pipelines every caller's command as a command of
//! its own: at hundreds of callers the server, the socket, the reply parser
//! and the connection's driver handle hundreds of small commands, each with
//! its own channel message, reply future and timer. The handle knows more
//! than the connection: GETs that wait at the same moment can be one `MGET`,
//! SETs without a TTL one `MSET`, and SETs with one a script call per TTL
//! (`EVAL`, a `SET … EX` per key; a pipeline of them where the server
//! refuses scripts), per hash slot on a cluster, through the batch path:
//! one message, one reply, one wake-up for the lot, and one command for the
//! server to read and answer instead of one per caller.
//!
//! - A SET of more than [`COMBINE_MAX_JSON`] bytes of JSON is always sent
//!   on its own: its bytes, not the command, are its cost.
//! - A GET or SET that finds fewer than [`DIRECT_MAX`] commands in flight
//!   (and none waiting) is sent at once, on the caller's task: no
//!   added latency at 1 caller, and the connection's pipelining at a few.
//! - One that arrives beyond that waits in the pending list. The first to
//!   wait starts the *runner*, a task of the connection's runtime that sends
//!   all pending GETs as one MGET, the pending SETs without a TTL as one
//!   MSET and those with one as one script call per TTL (at the same time),
//!   hands each caller its answer, and goes on while commands keep
//!   arriving; it stops when the list is empty. A task, not the first
//!   waiter's future, so a waiter that gives up (its deadline, its future
//!   dropped) cancels nothing.
//! - While a runner waits for its batch's answer, the server and the
//!   callers would idle in turn; so once [`OVERLAP_MIN`] more wait, a
//!   second runner sends them (two at most). A smaller batch waits for the
//!   runner out, to go with what arrives meanwhile: batches of one or two
//!   would cost more per command than the callers' own sends. (The second
//!   runner takes SETs with a TTL at hundreds of callers past raw
//!   redis-rs; two runners that always send whatever waits leave them far
//!   behind it: see BENCHMARKS.md, Redis.)
//!
//! Semantics kept:
//! - a command is sent after it started, and a SET is answered only once
//!   the server has answered it: so a GET never answers a value older than
//!   a SET that completed before the GET started (a GET and a SET waiting
//!   together were concurrent, either order is theirs);
//! - an error reaches exactly the callers whose commands failed, each with
//!   an error naming its own key: on a cluster the MGETs, MSETs and
//!   script calls go out one per slot, so a node that fails only fails its own
//!   slots' callers; an MGET that failed because one value is not text is
//!   resent GET by GET, so only that key's GETs fail (a single server's
//!   failed MGET, MSET or script call otherwise fails all of its callers;
//!   an MSET is atomic, so none of its values was written, while a script
//!   that failed part-way may have written the SETs before the failure, as
//!   a pipeline may);
//! - a SET is never sent twice (writes are not retried, combined or not);
//! - each caller waits at most its own deadline and holds its own
//!   in-flight permit while it waits.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::commands;
use super::conn::Conn;
use super::link::Link;
use super::slot::slot;
use crate::backend::{Deadline, Subject};
use crate::error::{KeystoreError, Result};

/// Commands sent on their callers' own tasks at once, at most: below this
/// the connection's own pipelining is as good (combining GETs from 2 on
/// makes GETs at 16 callers slower than sending each alone),
/// above it one MGET, MSET or script call carries what would be dozens of
/// commands.
const DIRECT_MAX: usize = 16;

/// Waiters that make a second runner send while the first has a batch out
/// (see the module docs; anywhere from 8 to 32 does as well at hundreds
/// of callers).
const OVERLAP_MIN: usize = 16;

/// The longest JSON a combined SET carries: a longer one is always sent
/// on its caller's task. Combining saves the server and the connection a
/// command per caller, which is what small SETs cost; a large value's cost
/// is its bytes, which combining copies twice more (into the waiter, and
/// into one command of the whole batch, which a script then copies again on
/// the server). With a TTL (`cargo bench --bench redis -- set_`, 64 and
/// 256 callers), 4 KiB values are clearly faster alone, 1 and 2 KiB alike
/// either way, and 256 B far faster combined (see BENCHMARKS.md, Redis SETs
/// over 2 KiB).
const COMBINE_MAX_JSON: usize = 2048;

/// A caller waiting in the pending list, with where its answer goes.
enum Waiter {
    Get {
        key: Arc<str>,
        reply: oneshot::Sender<Result<Option<String>>>,
    },
    Set {
        key: Arc<str>,
        json: String,
        ttl: Option<u64>,
        reply: oneshot::Sender<Result<()>>,
    },
}

impl Waiter {
    fn key(&self) -> &Arc<str> {
        match self {
            Waiter::Get { key, .. } | Waiter::Set { key, .. } => key,
        }
    }

    /// The caller stopped waiting.
    fn gone(&self) -> bool {
        match self {
            Waiter::Get { reply, .. } => reply.is_closed(),
            Waiter::Set { reply, .. } => reply.is_closed(),
        }
    }

    /// The command this goes out in (see [`Group`]).
    fn group(&self, cluster: bool) -> Group {
        let slot = if cluster {
            slot(self.key().as_bytes())
        } else {
            0
        };
        match self {
            Waiter::Get { .. } => Group::Gets { slot },
            Waiter::Set { ttl, .. } => Group::Sets { ttl: *ttl, slot },
        }
    }

    /// Answers a failed combined command of `n` keys with `e`, as this
    /// waiter's own error (see [`own`]).
    fn fail(self, e: &KeystoreError, n: usize) {
        let e = own(e, &self, n);
        match self {
            Waiter::Get { reply, .. } => drop(reply.send(Err(e))),
            Waiter::Set { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

/// Waiters that go out as one command: GETs as one MGET, SETs without a
/// TTL as one MSET, SETs of one TTL as one script call; on a cluster each
/// of one slot (0 on a single server), so a node that fails fails only its
/// own slots' callers, and a SET, which is never resent, is never in a
/// batch that failed elsewhere.
#[derive(Clone, Copy, PartialEq)]
enum Group {
    Gets { slot: u16 },
    Sets { ttl: Option<u64>, slot: u16 },
}

#[derive(Default)]
struct State {
    /// Commands sent on their callers' own tasks and not answered yet.
    direct: usize,
    pending: Vec<Waiter>,
    /// Runners alive (at most 2).
    runners: usize,
}

/// The pending commands of one connection generation (see the module docs).
#[derive(Default)]
pub(crate) struct Combiner {
    state: parking_lot::Mutex<State>,
}

/// Where a command goes.
pub(super) enum Route<'a, T> {
    /// Sent on the caller's task, counted in flight by the guard.
    Direct(DirectGuard<'a>),
    /// Sent on the caller's task, never combined (a large SET), so not counted.
    Alone,
    /// Behind others: waits for the runner's answer; `start` says this
    /// caller must start the runner.
    Queued {
        answer: oneshot::Receiver<Result<T>>,
        start: bool,
    },
}

/// Counts a command sent on its caller's task until it is answered or dropped.
pub(super) struct DirectGuard<'a>(&'a Combiner);

impl Drop for DirectGuard<'_> {
    fn drop(&mut self) {
        self.0.state.lock().direct -= 1;
    }
}

impl Combiner {
    /// Routes a GET of `key`.
    pub(super) fn route_get(&self, key: &Arc<str>) -> Route<'_, Option<String>> {
        self.route(|reply| Waiter::Get {
            key: key.clone(),
            reply,
        })
    }

    /// Routes a SET; one of more than [`COMBINE_MAX_JSON`] bytes of JSON
    /// always goes alone.
    pub(super) fn route_set(&self, key: &Arc<str>, json: &str, ttl: Option<u64>) -> Route<'_, ()> {
        if json.len() > COMBINE_MAX_JSON {
            return Route::Alone;
        }
        self.route(|reply| Waiter::Set {
            key: key.clone(),
            json: json.to_owned(),
            ttl,
            reply,
        })
    }

    /// Sends at once while few are in flight, else queues the waiter
    /// `waiter` makes (see the module docs).
    fn route<T>(&self, waiter: impl FnOnce(oneshot::Sender<Result<T>>) -> Waiter) -> Route<'_, T> {
        {
            let mut st = self.state.lock();
            if st.direct < DIRECT_MAX && st.pending.is_empty() {
                st.direct += 1;
                return Route::Direct(DirectGuard(self));
            }
        }
        // Made outside the lock (a value may be kilobytes). If the runner
        // stopped meanwhile, this waiter starts the next one.
        let (tx, rx) = oneshot::channel();
        let waiter = waiter(tx);
        let mut st = self.state.lock();
        st.pending.push(waiter);
        // A second runner only for a big batch, while the first has one out.
        let start = st.runners == 0 || (st.runners == 1 && st.pending.len() >= OVERLAP_MIN);
        if start {
            st.runners += 1;
        }
        Route::Queued { answer: rx, start }
    }

    /// The next batch for the runner, or `None` (and the runner stops) when
    /// nothing waits. Waiters that gave up are left out.
    fn next_batch(&self) -> Option<Vec<Waiter>> {
        let mut st = self.state.lock();
        loop {
            // With two runners, a small batch waits for the other one.
            if st.pending.is_empty() || (st.runners > 1 && st.pending.len() < OVERLAP_MIN) {
                st.runners -= 1;
                return None;
            }
            let batch: Vec<Waiter> = std::mem::take(&mut st.pending)
                .into_iter()
                .filter(|w| !w.gone())
                .collect();
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }
}

/// The runner (see the module docs): sends the pending commands of
/// `combiner` over `conn`, a batch at a time, until none waits.
pub(super) async fn run(link: &Link, combiner: &Combiner, conn: Conn) {
    let cluster = matches!(conn, Conn::Cluster(_));
    while let Some(batch) = combiner.next_batch() {
        let deadline = Deadline::after(link.target.response_timeout);
        let mut groups: Vec<(Group, Vec<Waiter>)> = Vec::new();
        for w in batch {
            let of = w.group(cluster);
            match groups.iter_mut().find(|(g, _)| *g == of) {
                Some((_, waiters)) => waiters.push(w),
                None => groups.push((of, vec![w])),
            }
        }
        let conn = &conn;
        let sent = groups.into_iter().map(|(group, waiters)| async move {
            match group {
                Group::Gets { .. } => send_gets(link, conn, waiters, deadline).await,
                Group::Sets { ttl, .. } => send_sets(link, conn, waiters, ttl, deadline).await,
            }
        });
        futures_util::future::join_all(sent).await;
    }
}

/// Sends `gets` as one MGET (one GET when alone) and answers each.
async fn send_gets(link: &Link, conn: &Conn, gets: Vec<Waiter>, deadline: Deadline) {
    let n = gets.len();
    if n == 0 {
        return;
    }
    let target = &*link.target;
    let keys: Vec<Arc<str>> = gets.iter().map(|w| w.key().clone()).collect();
    let answer = if n == 1 {
        let what = || Subject::Key(keys[0].clone()).describe("get");
        link.run(conn.clone(), deadline, true, what, |c| {
            commands::get(target, c, &keys[0])
        })
        .await
        .map(|value| vec![value])
    } else {
        let what = || Subject::keys(&keys).describe("get_many");
        link.run(conn.clone(), deadline, true, what, |c| {
            commands::get_many(target, c, &keys, deadline)
        })
        .await
    };
    match answer {
        Ok(values) => {
            for (w, value) in gets.into_iter().zip(values) {
                if let Waiter::Get { reply, .. } = w {
                    let _ = reply.send(Ok(value));
                }
            }
        }
        // One key's value is not text: that is an error of that key
        // alone, so each GET of the batch is sent on its own.
        Err(e) if n > 1 && e.is_data_error() => {
            let alone = gets.into_iter().map(|w| async move {
                if let Waiter::Get { key, reply } = w {
                    let what = || Subject::Key(key.clone()).describe("get");
                    let answer = link
                        .run(conn.clone(), deadline, true, what, |c| {
                            commands::get(target, c, &key)
                        })
                        .await;
                    let _ = reply.send(answer);
                }
            });
            futures_util::future::join_all(alone).await;
        }
        Err(e) => fail_all(gets, &e),
    }
}

/// Sends `sets` (all with `ttl`) as one MSET (`ttl` `None`) or one
/// script call (one SET when alone) and answers each.
async fn send_sets(
    link: &Link,
    conn: &Conn,
    mut sets: Vec<Waiter>,
    ttl: Option<u64>,
    deadline: Deadline,
) {
    let n = sets.len();
    let mut entries: Vec<(Arc<str>, String)> = Vec::with_capacity(n);
    for w in &mut sets {
        // Moved out: the waiter keeps its key, to be named in an error.
        if let Waiter::Set { key, json, .. } = w {
            entries.push((key.clone(), std::mem::take(json)));
        }
    }
    let answer = if n == 1 {
        let (key, json) = &entries[0];
        let what = || Subject::Key(key.clone()).describe("set");
        link.run(conn.clone(), deadline, false, what, |c| {
            commands::set(c, key, json, ttl)
        })
        .await
    } else {
        let target = &*link.target;
        let what = || Subject::keys(entries.iter().map(|(k, _)| k)).describe("set_many");
        link.run(conn.clone(), deadline, false, what, |c| {
            commands::set_many(target, c, &entries, ttl, deadline)
        })
        .await
    };
    match answer {
        Ok(()) => {
            for w in sets {
                if let Waiter::Set { reply, .. } = w {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        Err(e) => fail_all(sets, &e),
    }
}

/// Answers every waiter of a failed combined command with `e`, as its own error.
fn fail_all(waiters: Vec<Waiter>, e: &KeystoreError) {
    let n = waiters.len();
    for w in waiters {
        w.fail(e, n);
    }
}

/// `e`, the error of a combined command of `n` keys, as the error of the
/// waiter `w`: the same kind, its own key named first.
fn own(e: &KeystoreError, w: &Waiter, n: usize) -> KeystoreError {
    if n == 1 {
        return e.clone();
    }
    let (what, sent_in) = match w {
        Waiter::Get { .. } => ("get", "one MGET"),
        Waiter::Set { ttl: None, .. } => ("set", "one MSET"),
        Waiter::Set { .. } => ("set", "one script call or pipeline"),
    };
    KeystoreError::new(
        e.kind(),
        format!(
            "{what} of key {:?} (sent in {sent_in} with {} other commands): {e}",
            w.key(),
            n - 1
        ),
    )
}
