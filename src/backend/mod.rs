//! The message interface every backend actor speaks, and the backends.
//!
//! The handle sends a [`Request`] straight to the current backend actor (one
//! actor hop); the actor answers through the request's oneshot. A [`Request`]
//! carries its in-flight permit, so the limit counts a request until the
//! backend is done with it, even when the caller has stopped waiting. On
//! Redis the handle skips the hop once the actor has a connection ready (see
//! [`redis::RedisDirect`]).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use arc_swap::ArcSwapOption;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::error::{ErrorKind, KeystoreError, Result};

pub(crate) mod redis;
pub(crate) mod rocksdb;

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
    Ping,
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
    /// `get of key "k"`, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Command::Get { key } => format!("get of key {key:?}"),
            Command::Set { key, .. } => format!("set of key {key:?}"),
            Command::Delete { key } => format!("delete of key {key:?}"),
            Command::Ping => "ping".to_owned(),
            Command::Sweep { .. } => "expiry sweep".to_owned(),
            #[cfg(feature = "fault-injection")]
            Command::Panic => "injected panic".to_owned(),
            #[cfg(feature = "fault-injection")]
            Command::Stall(_) => "injected stall".to_owned(),
        }
    }
}

/// The answer to a [`Command`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `Get`: the JSON text, or `None` when missing or expired.
    Value(Option<String>),
    /// `Set` and `Ping`.
    Done,
    /// `Delete`: whether a live value was there.
    Deleted(bool),
    /// `Sweep`.
    Swept {
        removed: u64,
        scanned: u64,
        more: bool,
    },
}

/// One request to a backend actor.
pub(crate) struct Request {
    pub command: Command,
    /// After this the caller has given up: the backend answers `Timeout` without working.
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Reply>>,
    /// Held until the request is dropped, i.e. until the backend is done with it.
    pub _permit: Option<OwnedSemaphorePermit>,
}

impl Message for Request {
    type Result = ();
}

impl Request {
    /// Answers `Timeout` and returns `true` when the caller is gone or the deadline passed.
    pub(crate) fn expired(&mut self, backend: &str) -> bool {
        if self.reply.is_closed() {
            return true;
        }
        if Instant::now() >= self.deadline {
            let (tx, _) = oneshot::channel();
            let reply = std::mem::replace(&mut self.reply, tx);
            let _ = reply.send(Err(KeystoreError::new(
                ErrorKind::Timeout,
                format!(
                    "{} on {backend} timed out waiting in the queue; the engine is overloaded \
                     (raise keystore.request_timeout_ms or lower the load)",
                    self.command.describe()
                ),
            )));
            return true;
        }
        false
    }
}

/// The mailbox of a backend actor.
pub(crate) enum BackendTx {
    /// A pool of blocking worker threads (RocksDB), fed directly: one queue hop.
    Pool(crossbeam_channel::Sender<Request>),
    /// An async actor (Redis, Dragonfly), and the direct path beside it.
    Redis {
        actor: Recipient<Request>,
        direct: Arc<redis::RedisDirect>,
    },
}

/// Why a request could not be handed to the backend: there is none. `None`:
/// shut down; `Some(generation)`: the actor of that generation is gone.
pub(crate) struct Gone(pub Option<u64>);

/// Where the handle finds the current backend actor. The supervisor swaps in
/// a new mailbox when it restarts the backend; `None` after shutdown.
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
    pub(crate) fn send(&self, req: Request) -> Result<(), Gone> {
        match &*self.current.load() {
            Some(entry) => match &entry.1 {
                BackendTx::Pool(tx) => tx.send(req).map_err(|_| Gone(Some(entry.0))),
                BackendTx::Redis { actor, .. } => {
                    actor.do_send(req);
                    Ok(())
                }
            },
            None => Err(Gone(None)),
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
