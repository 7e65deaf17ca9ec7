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

use super::RedisDirect;
use super::direct::Conn;
use super::slot::slot;
use crate::backend::{Command, Deadline, Reply};
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

/// What a waiting caller asked for.
enum Asked {
    Get(Arc<str>),
    Set {
        key: Arc<str>,
        json: String,
        ttl: Option<u64>,
    },
}

impl Asked {
    fn key(&self) -> &Arc<str> {
        match self {
            Asked::Get(key) | Asked::Set { key, .. } => key,
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
            Asked::Get(_) => Group::Gets { slot },
            Asked::Set { ttl, .. } => Group::Sets { ttl: *ttl, slot },
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

/// A caller waiting in the pending list.
struct Waiter {
    asked: Asked,
    reply: oneshot::Sender<Result<Reply>>,
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
pub(super) enum Route<'a> {
    /// Alone: sent on the caller's task. The guard counts it in flight.
    Direct(DirectGuard<'a>),
    /// Behind others: waits for the runner's answer; `start` says this
    /// caller must start the runner.
    Queued {
        answer: oneshot::Receiver<Result<Reply>>,
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
    /// Routes `command`; `None` for commands that are never combined (sent
    /// alone): everything but GETs and SETs of at most
    /// [`COMBINE_MAX_JSON`] bytes.
    pub(super) fn route(&self, command: &Command) -> Option<Route<'_>> {
        match command {
            Command::Get { .. } => {}
            Command::Set { json, .. } if json.len() <= COMBINE_MAX_JSON => {}
            _ => return None,
        }
        {
            let mut st = self.state.lock();
            if st.direct < DIRECT_MAX && st.pending.is_empty() {
                st.direct += 1;
                return Some(Route::Direct(DirectGuard(self)));
            }
        }
        // Copied outside the lock (a value may be kilobytes). If the runner
        // stopped meanwhile, this waiter starts the next one.
        let asked = match command {
            Command::Get { key } => Asked::Get(key.clone()),
            Command::Set { key, json, ttl } => Asked::Set {
                key: key.clone(),
                json: json.clone(),
                ttl: *ttl,
            },
            _ => return None,
        };
        let (tx, rx) = oneshot::channel();
        let mut st = self.state.lock();
        st.pending.push(Waiter { asked, reply: tx });
        // A second runner only for a big batch, while the first has one out.
        let start = st.runners == 0 || (st.runners == 1 && st.pending.len() >= OVERLAP_MIN);
        if start {
            st.runners += 1;
        }
        Some(Route::Queued { answer: rx, start })
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
                .filter(|w| !w.reply.is_closed())
                .collect();
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }
}

impl RedisDirect {
    /// The runner (see the module docs): sends the pending commands, a
    /// batch at a time, until none waits.
    pub(super) async fn run_combined(self: Arc<Self>, conn: Conn) {
        let cluster = matches!(conn, Conn::Cluster(_));
        while let Some(batch) = self.combiner.next_batch() {
            let deadline = Deadline::after(self.target.response_timeout);
            let mut groups: Vec<(Group, Vec<Waiter>)> = Vec::new();
            for w in batch {
                let of = w.asked.group(cluster);
                match groups.iter_mut().find(|(g, _)| *g == of) {
                    Some((_, waiters)) => waiters.push(w),
                    None => groups.push((of, vec![w])),
                }
            }
            let (this, conn) = (&*self, &conn);
            let sent = groups.into_iter().map(|(group, waiters)| async move {
                match group {
                    Group::Gets { .. } => this.send_gets(conn, waiters, deadline).await,
                    Group::Sets { ttl, .. } => this.send_sets(conn, waiters, ttl, deadline).await,
                }
            });
            futures_util::future::join_all(sent).await;
        }
    }

    /// Sends `gets` as one MGET (one GET when alone) and answers each.
    async fn send_gets(&self, conn: &Conn, gets: Vec<Waiter>, deadline: Deadline) {
        let n = gets.len();
        if n == 0 {
            return;
        }
        let keys: Vec<Arc<str>> = gets.iter().map(|w| w.asked.key().clone()).collect();
        let command = if n == 1 {
            Command::Get {
                key: keys[0].clone(),
            }
        } else {
            Command::GetMany { keys }
        };
        match self.call_alone(conn.clone(), &command, deadline).await {
            Ok(Reply::Value(value)) if n == 1 => {
                for w in gets {
                    let _ = w.reply.send(Ok(Reply::Value(value.clone())));
                }
            }
            Ok(Reply::Values(values)) if values.len() == n => {
                for (w, value) in gets.into_iter().zip(values) {
                    let _ = w.reply.send(Ok(Reply::Value(value)));
                }
            }
            Ok(other) => answer_all(gets, &unexpected("GET", &other), n),
            // One key's value is not text: that is an error of that key
            // alone, so each GET of the batch is sent on its own.
            Err(e) if n > 1 && e.is_data_error() => {
                let alone = gets.into_iter().map(|w| async move {
                    let get = Command::Get {
                        key: w.asked.key().clone(),
                    };
                    let answer = self.call_alone(conn.clone(), &get, deadline).await;
                    let _ = w.reply.send(answer);
                });
                futures_util::future::join_all(alone).await;
            }
            Err(e) => answer_all(gets, &e, n),
        }
    }

    /// Sends `sets` (all with `ttl`) as one MSET (`ttl` `None`) or one
    /// script call (one SET when alone) and answers each.
    async fn send_sets(
        &self,
        conn: &Conn,
        mut sets: Vec<Waiter>,
        ttl: Option<u64>,
        deadline: Deadline,
    ) {
        let n = sets.len();
        let mut entries: Vec<(Arc<str>, String)> = Vec::with_capacity(n);
        for w in &mut sets {
            // Moved out: the waiter keeps its key, to be named in an error.
            if let Asked::Set { key, json, .. } = &mut w.asked {
                entries.push((key.clone(), std::mem::take(json)));
            }
        }
        let command = if n == 1
            && let Some((key, json)) = entries.pop()
        {
            Command::Set { key, json, ttl }
        } else {
            Command::SetMany { entries, ttl }
        };
        match self.call_alone(conn.clone(), &command, deadline).await {
            Ok(Reply::Done) => {
                for w in sets {
                    let _ = w.reply.send(Ok(Reply::Done));
                }
            }
            Ok(other) => answer_all(sets, &unexpected("SET", &other), n),
            Err(e) => answer_all(sets, &e, n),
        }
    }
}

/// Answers every waiter of a failed combined command of `n` keys with `e`,
/// as its own error.
fn answer_all(waiters: Vec<Waiter>, e: &KeystoreError, n: usize) {
    for w in waiters {
        let _ = w.reply.send(Err(own(e, &w.asked, n)));
    }
}

fn unexpected(what: &str, reply: &Reply) -> KeystoreError {
    KeystoreError::new(
        crate::error::ErrorKind::Backend,
        format!("internal error: unexpected answer to a combined {what}: {reply:?}"),
    )
}

/// `e`, the error of a combined command of `n` keys, as the error of the
/// command `asked`: the same kind, its own key named first.
fn own(e: &KeystoreError, asked: &Asked, n: usize) -> KeystoreError {
    if n == 1 {
        return e.clone();
    }
    let (what, sent_in) = match asked {
        Asked::Get(_) => ("get", "one MGET"),
        Asked::Set { ttl: None, .. } => ("set", "one MSET"),
        Asked::Set { .. } => ("set", "one script call or pipeline"),
    };
    KeystoreError::new(
        e.kind(),
        format!(
            "{what} of key {:?} (sent in {sent_in} with {} other commands): {e}",
            asked.key(),
            n - 1
        ),
    )
}
