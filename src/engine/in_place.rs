//! Shortcut ① of the request path: RocksDB calls answered on the caller's
//! thread, with no hand-off to the worker pool and back.
//!
//! # Why
//! A hand-off costs two thread wake-ups (the worker's, then the caller's),
//! which on a loaded 2-core machine take many times as long as a warm read
//! or a memtable write: through the pool a single caller writes at a small
//! fraction of the speed of a raw `DB::put` (see BENCHMARKS.md, RocksDB SET).
//!
//! # What may run here
//! Only what cannot wait, because an async executor thread must not block:
//! - reads that memtables or the block cache answer (`ReadTier::BlockCache`);
//! - writes (SET, DELETE and their batch forms) that RocksDB accepts with
//!   `no_slowdown`, whose stripes are free at once, and (deletes) whose "was
//!   it there" memory answers. Fsynced writes (`sync_writes`) always go to
//!   the pool.
//!
//! A SET that finds another in-place write under way joins a group written
//! as one batch instead ([`group`](crate::backend::rocksdb::group)): it
//! waits for a turn of its own thread's ready tasks and at most one batch
//! write, never for a stall.
//!
//! Everything else answers `None` here and goes to the pool, which waits
//! through stalls and file reads, under the in-flight limiter and
//! the request timeout. What does run here is bounded by the number of
//! callers, so it needs no permit.
//!
//! A panic in here is not the caller's: it answers `None`, and the pool,
//! whose supervisor handles backend panics, runs the call the normal way.
//! (A write is idempotent; a DELETE retried after a panic past its write may
//! report the key as absent.)

use std::sync::Arc;

use super::Live;
use crate::backend::rocksdb::RocksStore;
use crate::backend::rocksdb::group::Member;
use crate::command::{Call, InPlace};
use crate::error::Result;
use crate::turn::requeue;

/// Calls answered in place on one thread between two looks at the
/// runtime's global queue (where a task woken from outside the runtime,
/// such as by a worker-pool reply, waits).
const CALLS_PER_LOOK: u32 = 4;
/// Calls answered in place on one thread between two turns given anyway
/// (to the tasks woken inside the runtime, which wait in a worker's own
/// queue). A multiple of [`CALLS_PER_LOOK`]: a turn is decided at a look.
const CALLS_PER_TURN: u32 = 16;

thread_local! {
    /// Calls answered in place on this thread since it last gave a turn.
    static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// To await after a call answered in place.
///
/// Such a call never meets a tokio resource (a socket, a channel, a timer),
/// so a task whose calls are all answered here would never yield to the
/// runtime: with more tasks than threads, a task whose read goes to the
/// pool (a cold read after a restart) would not be polled again until a
/// busy task finished its whole loop, however long that is.
///
/// So every [`CALLS_PER_LOOK`]th call answered in place on a thread looks
/// whether a task waits in the runtime's global queue, where the pool's
/// replies wake their callers, and gives a turn if one does; every
/// [`CALLS_PER_TURN`]th call gives one anyway when the runtime has as many
/// tasks as workers or more (the caller may be a `block_on` future, which
/// is not a task). With fewer, every task has a worker of its own, and a
/// turn would only wake an idle worker to steal the task: at 1 caller on 2
/// workers that makes a SET markedly slower. A look is a thread-local
/// handle and two or three atomic loads.
///
/// A turn is a [`requeue`]: the task goes to the back of its worker's queue
/// and runs again after the tasks queued before it; with nothing else
/// ready it runs again at once. (Not tokio's `yield_now`, which parks the
/// task until the worker next polls its I/O driver: every 61 task polls on
/// a busy worker, each running many calls, so a call that yields waits for
/// thousands of others and cold reads get a long tail; see BENCHMARKS.md,
/// turns by requeue.)
///
/// Why not tokio's own budget (`coop::consume_budget`): it allows 128
/// operations per turn whether or not anyone waits, sized for operations
/// far cheaper than a RocksDB call; at one unit per call a task runs 128
/// calls between turns, and with 64 tasks on 2 threads a cold read's
/// caller waits behind thousands of calls.
pub(crate) async fn share_the_thread() {
    let n = CALLS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(if n >= CALLS_PER_TURN { 0 } else { n });
        n
    });
    if !n.is_multiple_of(CALLS_PER_LOOK) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let m = runtime.metrics();
    let due = m.global_queue_depth() > 0
        || (n >= CALLS_PER_TURN && m.num_alive_tasks() >= m.num_workers());
    if due {
        requeue().await;
    }
}

impl Live {
    /// Starts `call` on the caller's thread when it can run there without
    /// waiting (what it can do is the command's own
    /// [`in_place`](crate::command::Command::in_place)): answered at once,
    /// or (a SET among concurrent ones) joined to a group written as one batch.
    pub(super) fn start_in_place<K: Call>(&self, call: &K) -> InPlace<K::Answer> {
        self.with_store(|store| Some(call.in_place(store)))
            .unwrap_or(InPlace::Elsewhere)
    }

    /// The answer to a SET waiting in a group: `None` sends it the normal
    /// way (a write stall, a busy stripe, or a panic in the group's write).
    pub(super) async fn group_answer(store: Arc<RocksStore>, member: Member) -> Option<Result<()>> {
        let write = || {
            // A panic leaves the taken members' channels closed: they go to
            // the pool (see `Member::answer`).
            let _ = unless_panicked(|| {
                store.write_group();
                Some(())
            });
        };
        member.answer(write).await
    }

    /// Stops or restarts every RocksDB write (tests of the in-place write's
    /// fallback to the pool only).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn inject_write_stall(&self, on: bool) -> Result<()> {
        self.on_open_store(
            "a write stall can only be injected into an open RocksDB keystore",
            |store| store.inject_write_stall(on),
        )
    }

    /// RocksDB's count of write calls and keys written to the values (tests
    /// of the group commit only).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn rocksdb_writes_and_keys(&self) -> Result<(u64, u64)> {
        self.on_open_store(
            "write counts come from an open RocksDB keystore only",
            RocksStore::writes_and_keys,
        )
    }

    /// Runs a test hook on the open RocksDB store; the error `missing` when
    /// there is none.
    #[cfg(feature = "fault-injection")]
    fn on_open_store<R>(
        &self,
        missing: &str,
        call: impl FnOnce(&RocksStore) -> Result<R>,
    ) -> Result<R> {
        match self.in_place.load().as_ref() {
            Some(store) => call(store),
            None => Err(crate::error::KeystoreError::new(
                crate::error::ErrorKind::Usage,
                missing,
            )),
        }
    }

    /// Runs `call` on the in-place store (RocksDB), if there is one, noted
    /// as a foreground call (the janitor rests while there are some); a
    /// panic answers `None` (see the module docs).
    fn with_store<R>(&self, call: impl FnOnce(&Arc<RocksStore>) -> Option<R>) -> Option<R> {
        let guard = self.in_place.load();
        let store = guard.as_ref()?;
        store.note_foreground();
        unless_panicked(|| call(store))
    }
}

/// `call`'s answer; `None` when it panicked (see the module docs).
fn unless_panicked<R>(call: impl FnOnce() -> Option<R>) -> Option<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .ok()
        .flatten()
}
