//! The RocksDB backend actor: a pool of worker threads, because every RocksDB
//! call blocks and must stay off the async executors.
//!
//! It is a sync actor in the manner of actix's `SyncArbiter`, with one change:
//! `SyncArbiter` routes each message through its arbiter thread before a
//! worker sees it (two queue hops), while this pool is fed straight from a
//! `crossbeam-channel` by the handle (one hop). Its lifetime is owned
//! by that channel: the workers finish the queue and exit when the last sender
//! is dropped (a restart or shutdown), and the last one out closes the database.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use actix::WeakAddr;

use crate::backend::rocksdb::RocksStore;
use crate::backend::{Command, Reply, Request, panic_text};
use crate::engine::supervisor::{BackendFailed, Supervisor};
use crate::error::{ErrorKind, KeystoreError, Result};

/// One worker of the pool. All workers share the one open database.
struct RocksWorker {
    store: Arc<RocksStore>,
    /// Told when a call panics, so it can restart the pool.
    supervisor: WeakAddr<Supervisor>,
    /// Which start of the backend this worker belongs to (stale reports are ignored).
    generation: u64,
}

/// Starts `threads` workers over `store`; the returned sender is the pool's mailbox.
///
/// The channel is unbounded because its length is already bounded upstream:
/// every foreground request carries an in-flight permit until a worker is done
/// with it, and the janitor has at most one batch queued. (A bounded channel
/// would preallocate a slot per permit.)
pub(crate) fn start_pool(
    threads: usize,
    store: Arc<RocksStore>,
    supervisor: WeakAddr<Supervisor>,
    generation: u64,
) -> std::io::Result<crossbeam_channel::Sender<Request>> {
    let (tx, rx) = crossbeam_channel::unbounded::<Request>();
    for i in 0..threads.max(1) {
        let rx = rx.clone();
        let worker = RocksWorker {
            store: store.clone(),
            supervisor: supervisor.clone(),
            generation,
        };
        std::thread::Builder::new()
            .name(format!("objdatakey-rocksdb-{generation}.{i}"))
            .spawn(move || {
                while let Ok(req) = rx.recv() {
                    worker.handle(req);
                }
            })?;
    }
    Ok(tx)
}

impl RocksWorker {
    fn execute(&self, command: &Command) -> Result<Reply> {
        Ok(match command {
            Command::Get { key } => Reply::Value(self.store.get(key)?),
            Command::Set { key, json, ttl } => {
                self.store.set(key, json, *ttl)?;
                Reply::Done
            }
            Command::Delete { key } => Reply::Deleted(self.store.delete(key)?),
            Command::Ping => {
                self.store.ping()?;
                Reply::Done
            }
            Command::Sweep { limit } => {
                let o = self.store.sweep(*limit)?;
                Reply::Swept {
                    removed: o.removed,
                    scanned: o.scanned,
                    more: o.more,
                }
            }
            #[cfg(feature = "fault-injection")]
            Command::Panic => panic!("injected panic in the RocksDB backend"),
            #[cfg(feature = "fault-injection")]
            Command::Stall(d) => {
                std::thread::sleep(*d);
                Reply::Done
            }
        })
    }

    fn handle(&self, mut req: Request) {
        if req.expired("rocksdb") {
            return;
        }
        let result = match catch_unwind(AssertUnwindSafe(|| self.execute(&req.command))) {
            Ok(r) => r,
            Err(payload) => {
                let why = panic_text(payload.as_ref());
                tracing::error!(
                    "RocksDB backend panicked during {}: {why}; restarting it",
                    req.command.describe()
                );
                if let Some(sup) = self.supervisor.upgrade() {
                    sup.do_send(BackendFailed {
                        generation: self.generation,
                        reason: why.clone(),
                    });
                }
                Err(KeystoreError::new(
                    ErrorKind::Panic,
                    format!(
                        "RocksDB backend panicked during {} ({}); the supervisor is restarting it, retry the call",
                        req.command.describe(),
                        self.store.path().display()
                    ),
                )
                .with_source(why))
            }
        };
        // The work is done: free the in-flight slot before the caller wakes,
        // so a caller that reads `Stats::in_flight` after its answer sees it freed.
        drop(req._permit.take());
        let _ = req.reply.send(result);
    }
}
