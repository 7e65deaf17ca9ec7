//! The message interface between the engine and the backends, and the
//! backends themselves, one folder each.
//!
//! - A [`Command`] says what to do; a [`Reply`] is its answer.
//! - A [`Request`] carries a command to a backend actor with its
//!   [`Deadline`], the caller's reply channel and its in-flight permit.
//! - The [`BackendSlot`] is where the handle finds the current backend's
//!   mailbox ([`BackendTx`]); the supervisor fills it at start and on every
//!   restart, and empties it at shutdown.
//! - A backend that cannot go on serving (a call panicked, its actor stopped)
//!   says so through its [`Supervision`], a weak recipient of
//!   [`BackendFailed`]: backends never name the supervisor's type, so the
//!   imports flow one way, engine → backend.
//!
//! Backends: [`rocksdb`] (the embedded store and its worker pool) and
//! [`redis`] (Redis, Redis Cluster and Dragonfly: the actor that owns the
//! connection and the direct path the handle calls).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::WeakRecipient;
use actix::prelude::*;
use arc_swap::ArcSwapOption;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::error::{ErrorKind, KeystoreError, Result};

pub(crate) mod redis;
pub(crate) mod rocksdb;
mod texts;

pub(crate) use texts::ValueTexts;

/// What to do.
#[derive(Debug)]
pub(crate) enum Command {
    Get {
        key: Arc<str>,
    },
    Set {
        key: Arc<str>,
        json: String,
        /// Seconds, already resolved and clamped; `None`: never expire.
        ttl: Option<u64>,
    },
    Delete {
        key: Arc<str>,
    },
    /// The remaining lifetime of a key.
    Ttl {
        key: Arc<str>,
    },
    GetMany {
        keys: Vec<Arc<str>>,
    },
    SetMany {
        entries: Vec<(Arc<str>, String)>,
        /// As for `Set`.
        ttl: Option<u64>,
    },
    DeleteMany {
        keys: Vec<Arc<str>>,
    },
    /// Every key that starts with `prefix` (`""`: every key this keystore
    /// can address).
    DeletePrefix {
        prefix: Arc<str>,
    },
    /// The values of `keys` with their remaining lifetimes (the in-process
    /// tier and eager refresh need both): a `GET` + `PTTL` pipeline per
    /// hash slot on Redis, the envelope's `expires_at` on RocksDB.
    Entries {
        keys: Vec<Arc<str>>,
    },
    /// Sends `message` on the pub/sub `channel` (the backplane's
    /// invalidations; Redis-protocol backends only).
    Publish {
        channel: Arc<str>,
        message: String,
    },
    Ping,
    /// `SET key token NX PX ms`: take the short cross-process lock of a
    /// `get_or_set` load (Redis and Dragonfly; RocksDB, held by one process
    /// anyway, always grants it).
    Lock {
        key: Arc<str>,
        token: Arc<str>,
        ms: u64,
    },
    /// Deletes `key` if it still holds `token` (a lock that expired and was
    /// taken by another process is left to it).
    Unlock {
        key: Arc<str>,
        token: Arc<str>,
    },
    /// Remove up to `limit` expired entries (RocksDB; a no-op elsewhere).
    Sweep {
        limit: usize,
    },
    /// Panics inside the backend call (tests of the supervisor only).
    #[cfg(feature = "fault-injection")]
    Panic,
    /// Holds a backend worker for this long (tests of backpressure only).
    #[cfg(feature = "fault-injection")]
    Stall(std::time::Duration),
}

impl Command {
    /// The name of the operation, for messages.
    pub(crate) fn verb(&self) -> &'static str {
        match self {
            Command::Get { .. } => "get",
            Command::Set { .. } => "set",
            Command::Delete { .. } => "delete",
            Command::Ttl { .. } => "ttl",
            Command::GetMany { .. } => "get_many",
            Command::SetMany { .. } => "set_many",
            Command::DeleteMany { .. } => "delete_many",
            Command::DeletePrefix { prefix } if prefix.is_empty() => "clear",
            Command::DeletePrefix { .. } => "delete_prefix",
            Command::Entries { .. } => "get",
            Command::Publish { .. } => "publish",
            Command::Ping => "ping",
            Command::Lock { .. } => "get_or_set lock",
            Command::Unlock { .. } => "get_or_set unlock",
            Command::Sweep { .. } => "expiry sweep",
            #[cfg(feature = "fault-injection")]
            Command::Panic => "injected panic",
            #[cfg(feature = "fault-injection")]
            Command::Stall(_) => "injected stall",
        }
    }

    /// The key the command is about, if it is about one.
    pub(crate) fn key(&self) -> Option<&Arc<str>> {
        match self {
            Command::Get { key }
            | Command::Set { key, .. }
            | Command::Delete { key }
            | Command::Ttl { key }
            | Command::Lock { key, .. }
            | Command::Unlock { key, .. } => Some(key),
            _ => None,
        }
    }

    /// What the command is about, for messages: its key, its keys, its prefix.
    pub(crate) fn subject(&self) -> Subject {
        match self {
            Command::GetMany { keys }
            | Command::DeleteMany { keys }
            | Command::Entries { keys } => Subject::keys(keys),
            Command::SetMany { entries, .. } => {
                Subject::keys(entries.iter().map(|(k, _)| k).take(SHOWN_KEYS + 1))
                    .with_total(entries.len())
            }
            Command::DeletePrefix { prefix } if !prefix.is_empty() => {
                Subject::Prefix(prefix.clone())
            }
            other => match other.key() {
                Some(k) => Subject::Key(k.clone()),
                None => Subject::None,
            },
        }
    }

    /// `get of key "k"`, for messages.
    pub(crate) fn describe(&self) -> String {
        self.subject().describe(self.verb())
    }
}

/// How many names a message lists before it says how many more there are.
const SHOWN_KEYS: usize = 5;

/// What a command is about, kept apart from it for messages (cheap: the
/// names are reference counted, and a batch keeps only the first few).
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    None,
    Key(Arc<str>),
    Keys { first: Vec<Arc<str>>, total: usize },
    Prefix(Arc<str>),
}

impl Subject {
    fn keys<'a>(keys: impl IntoIterator<Item = &'a Arc<str>>) -> Subject {
        let mut first = Vec::new();
        let mut total = 0;
        for k in keys {
            if first.len() < SHOWN_KEYS {
                first.push(k.clone());
            }
            total += 1;
        }
        Subject::Keys { first, total }
    }

    fn with_total(self, n: usize) -> Subject {
        match self {
            Subject::Keys { first, .. } => Subject::Keys { first, total: n },
            other => other,
        }
    }

    /// `get of key "k"`, `get_many of 3 keys ["a", "b", "c"]`,
    /// `delete_prefix of keys starting with "p:"`, or just `ping`.
    pub(crate) fn describe(&self, verb: &str) -> String {
        match self {
            Subject::None => verb.to_owned(),
            Subject::Key(k) => format!("{verb} of key {k:?}"),
            Subject::Keys { first, total } => {
                let more = total.saturating_sub(first.len());
                let tail = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("{verb} of {total} keys {first:?}{tail}")
            }
            Subject::Prefix(p) => format!("{verb} of keys starting with {p:?}"),
        }
    }
}

/// The answer to a [`Command`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `Get`: the JSON text, or `None` when missing or expired.
    Value(Option<String>),
    /// `Set`, `SetMany` and `Ping`.
    Done,
    /// `Delete`: whether a live value was there.
    Deleted(bool),
    /// `Lock`: whether this caller took the lock.
    Acquired(bool),
    /// `GetMany`: the JSON text of each key, in the order asked.
    Values(Vec<Option<String>>),
    /// `GetMany` on RocksDB: the same, in one buffer.
    Texts(ValueTexts),
    /// `DeleteMany`, `DeletePrefix`: how many live values were removed.
    Count(u64),
    /// `Ttl`: the remaining lifetime, `None` when missing or expired.
    Remaining(Option<crate::ttl::Ttl>),
    /// `Entries`: each key's value and remaining lifetime, in the order asked.
    Entries(Vec<Option<Stored>>),
    /// `Sweep`.
    Swept {
        removed: u64,
        scanned: u64,
        more: bool,
        /// Foreground calls used the store since the previous batch: the
        /// janitor rests before its next batches only then.
        contended: bool,
    },
}

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

/// One request to a backend actor.
pub(crate) struct Request {
    pub command: Command,
    /// After this the caller has given up: the backend answers `Timeout` without working.
    pub deadline: Deadline,
    pub reply: oneshot::Sender<Result<Reply>>,
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
        if self.reply.is_closed() {
            return None;
        }
        if self.deadline.passed() {
            let what = self.command.describe();
            self.answer(Err(KeystoreError::new(
                ErrorKind::Timeout,
                format!(
                    "{what} on {backend} timed out waiting in the queue; the engine is overloaded \
                     (raise keystore.request_timeout_ms or lower the load)"
                ),
            )));
            return None;
        }
        Some(self)
    }

    /// Frees the in-flight slot, then answers: a caller that reads
    /// `Stats::in_flight` right after its answer sees its slot freed.
    pub(crate) fn answer(mut self, result: Result<Reply>) {
        drop(self.permit.take());
        let _ = self.reply.send(result);
    }
}

/// A backend tells its supervisor it cannot go on serving (a call panicked,
/// its workers or actor stopped); the supervisor starts a new generation.
pub(crate) struct BackendFailed {
    pub generation: u64,
    pub reason: String,
}

impl Message for BackendFailed {
    type Result = ();
}

/// What a backend generation knows of its supervisor: where to report a
/// failure, and which generation it is (a report from an older one is stale).
/// The recipient is weak, so a backend never keeps its supervisor alive.
#[derive(Clone)]
pub(crate) struct Supervision {
    pub sink: WeakRecipient<BackendFailed>,
    pub generation: u64,
}

impl Supervision {
    /// Reports that this generation cannot go on serving.
    pub(crate) fn failed(&self, reason: String) {
        if let Some(s) = self.sink.upgrade() {
            s.do_send(BackendFailed {
                generation: self.generation,
                reason,
            });
        }
    }

    /// A backend call (`what`, on `place`) panicked: logs it, reports it
    /// (the supervisor restarts the backend) and gives the caller's error.
    pub(crate) fn panicked(
        &self,
        payload: &(dyn std::any::Any + Send),
        what: &str,
        place: &str,
    ) -> KeystoreError {
        let why = panic_text(payload);
        tracing::error!("the backend panicked during {what} on {place}: {why}; restarting it");
        self.failed(format!("a call panicked: {why}"));
        KeystoreError::new(
            ErrorKind::Panic,
            format!(
                "{what} on {place} panicked inside the backend ({why}); \
                 the supervisor is restarting it, retry the call"
            ),
        )
    }
}

/// The mailbox of a backend generation.
pub(crate) enum BackendTx {
    /// A pool of blocking worker threads (RocksDB), fed directly: one queue hop.
    Pool(crossbeam_channel::Sender<Request>),
    /// An async actor (Redis, Dragonfly), and the direct path beside it.
    Redis {
        actor: Recipient<Request>,
        direct: Arc<redis::RedisDirect>,
    },
}

/// Why a request could not be handed to a backend.
pub(crate) enum Unsent {
    /// The keystore has shut down.
    ShutDown,
    /// The backend of this generation is gone (its workers exited).
    BackendGone { generation: u64 },
}

/// Where the handle finds the current backend. The supervisor swaps in a
/// new mailbox when it restarts the backend; `None` after shutdown.
#[derive(Default)]
pub(crate) struct BackendSlot {
    /// The mailbox and the supervisor generation that started it.
    current: ArcSwapOption<(u64, BackendTx)>,
}

impl BackendSlot {
    pub(crate) fn set(&self, tx: Option<(u64, BackendTx)>) {
        self.current.store(tx.map(Arc::new));
    }

    /// Hands `req` to the current backend (dropping it, with its reply channel, on failure).
    pub(crate) fn send(&self, req: Request) -> Result<(), Unsent> {
        match &*self.current.load() {
            Some(entry) => match &entry.1 {
                BackendTx::Pool(tx) => tx.send(req).map_err(|_| Unsent::BackendGone {
                    generation: entry.0,
                }),
                BackendTx::Redis { actor, .. } => {
                    actor.do_send(req);
                    Ok(())
                }
            },
            None => Err(Unsent::ShutDown),
        }
    }

    /// The current Redis direct path and its connection, when one is ready.
    pub(crate) fn redis_direct(&self) -> Option<(Arc<redis::RedisDirect>, redis::Conn)> {
        match &*self.current.load() {
            Some(entry) => match &entry.1 {
                BackendTx::Redis { direct, .. } => {
                    let conn = direct.ready()?;
                    Some((direct.clone(), conn))
                }
                BackendTx::Pool(_) => None,
            },
            None => None,
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}
