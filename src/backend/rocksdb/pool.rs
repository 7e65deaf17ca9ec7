//! The RocksDB backend's worker pool: threads, because every RocksDB call
//! blocks and must stay off the async executors.
//!
//! It is a sync actor in the manner of actix's `SyncArbiter`, with one change:
//! `SyncArbiter` routes each message through its arbiter thread before a
//! worker sees it (two queue hops), while this pool is fed straight from a
//! `crossbeam-channel` by the handle (one hop). Its lifetime is owned
//! by that channel: the workers finish the queue and exit when the last sender
//! is dropped (a restart or shutdown), and the last one out closes the database.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::RocksStore;
use crate::backend::{Command, Reply, Request, Supervision};
use crate::error::Result;

/// One worker of the pool. All workers share the one open database.
struct RocksWorker {
    store: Arc<RocksStore>,
    /// Told when a call panics, so it restarts the pool.
    supervision: Supervision,
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
    supervision: Supervision,
) -> std::io::Result<crossbeam_channel::Sender<Request>> {
    let (tx, rx) = crossbeam_channel::unbounded::<Request>();
    for i in 0..threads.max(1) {
        let rx = rx.clone();
        let worker = RocksWorker {
            store: store.clone(),
            supervision: supervision.clone(),
        };
        std::thread::Builder::new()
            .name(format!("objdatakey-rocksdb-{}.{i}", supervision.generation))
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
        if !matches!(command, Command::Sweep { .. }) {
            self.store.note_foreground();
        }
        Ok(match command {
            Command::Get { key } => Reply::Value(self.store.get(key)?),
            Command::Set { key, json, ttl } => {
                self.store.set(key, json, *ttl)?;
                Reply::Done
            }
            Command::Delete { key } => Reply::Deleted(self.store.delete(key)?),
            Command::Ttl { key } => Reply::Remaining(self.store.ttl(key)?),
            Command::GetMany { keys } => Reply::Texts(self.store.get_many(keys)?),
            Command::SetMany { entries, ttl } => {
                self.store.set_many(entries, *ttl)?;
                Reply::Done
            }
            Command::DeleteMany { keys } => Reply::Count(self.store.delete_many(keys)?),
            Command::DeletePrefix { prefix } => Reply::Count(self.store.delete_prefix(prefix)?),
            Command::Entries { keys } => Reply::Entries(
                keys.iter()
                    .map(|k| self.store.entry(k))
                    .collect::<Result<_>>()?,
            ),
            // No backplane on an embedded database: one process owns it.
            Command::Publish { .. } => Reply::Done,
            Command::Ping => {
                self.store.ping()?;
                Reply::Done
            }
            // The database's LOCK file already keeps other processes out.
            Command::Lock { .. } => Reply::Acquired(true),
            Command::Unlock { .. } => Reply::Done,
            Command::Sweep { limit } => {
                let o = self.store.sweep(*limit)?;
                Reply::Swept {
                    removed: o.removed,
                    scanned: o.scanned,
                    more: o.more,
                    contended: o.contended,
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

    fn handle(&self, req: Request) {
        let Some(req) = req.if_wanted("rocksdb") else {
            return;
        };
        let result = catch_unwind(AssertUnwindSafe(|| self.execute(&req.command))).unwrap_or_else(
            |payload| {
                Err(self.supervision.panicked(
                    payload.as_ref(),
                    &req.command.describe(),
                    &format!("rocksdb ({})", self.store.path().display()),
                ))
            },
        );
        req.answer(result);
    }
}
