//! [`CurrentBackend`]: where the engine finds the running backend
//! generation's mailbox. The supervisor fills it at start and on every
//! restart, and empties it at shutdown.

use std::sync::Arc;

use actix::prelude::*;
use arc_swap::ArcSwapOption;

use super::Request;
use super::redis::{Conn, RedisDirect};

/// The mailbox of a backend generation.
pub(crate) enum BackendTx {
    /// A pool of blocking worker threads (RocksDB), fed directly: one queue hop.
    Pool(crossbeam_channel::Sender<Request>),
    /// An async actor (Redis, Dragonfly), and the direct path beside it.
    Redis {
        actor: Recipient<Request>,
        direct: Arc<RedisDirect>,
    },
}

/// Why a request could not be handed to a backend.
pub(crate) enum Unsent {
    /// The keystore has shut down.
    ShutDown,
    /// The backend of this generation is gone (its workers exited).
    BackendGone { generation: u64 },
}

/// Where the engine finds the current backend. The supervisor swaps in a
/// new mailbox when it restarts the backend; `None` after shutdown.
#[derive(Default)]
pub(crate) struct CurrentBackend {
    /// The mailbox and the supervisor generation that started it.
    current: ArcSwapOption<(u64, BackendTx)>,
}

impl CurrentBackend {
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
    pub(crate) fn redis_direct(&self) -> Option<(Arc<RedisDirect>, Conn)> {
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
