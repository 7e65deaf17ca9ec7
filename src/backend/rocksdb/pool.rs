//! The RocksDB backend's worker pool: threads, because every RocksDB call
//! blocks and must stay off the async executors.
//!
//! It is a sync actor in the manner of actix's `SyncArbiter`, with one change:
//! `SyncArbiter` routes each message through its arbiter thread before a
//! worker sees it (two queue hops), while this pool is fed straight from a
//! `crossbeam-channel` by the handle (one hop). Its lifetime is owned
//! by that channel: the workers finish the queue and exit when the last sender
//! is dropped (a restart or shutdown), and the last one out closes the database.

use std::sync::Arc;

use super::RocksStore;
use crate::backend::{Request, Supervision};

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
    fn handle(&self, req: Request) {
        let Some(req) = req.if_wanted("rocksdb") else {
            return;
        };
        let on_panic = |payload: &(dyn std::any::Any + Send), what: &str| {
            self.supervision.panicked(
                payload,
                what,
                &format!("rocksdb ({})", self.store.path().display()),
            )
        };
        req.on_rocks(&self.store, &on_panic);
    }
}
