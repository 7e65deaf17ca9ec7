//! Giving the other tasks ready on this thread a turn.
//!
//! Calls answered on the caller's thread (warm RocksDB reads, in-place
//! writes) never meet a tokio resource, so a task making only such calls
//! would never yield by itself; the request path yields for it (see
//! `engine::in_place`), and a SET joining a write group yields so the other
//! ready callers can join (see `backend::rocksdb::group`). Both yield with
//! [`requeue`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Yields once: the task wakes itself and answers `Pending`, so its
/// scheduler puts it at the back of its run queue (tokio's multi-thread
/// worker: the back of the worker's local queue) and polls it again after
/// the tasks queued before it.
///
/// Why not `tokio::task::yield_now`: that one defers the task until its
/// worker next polls the I/O driver, which a busy worker does once every 61
/// task polls. With many callers making warm reads, each of those polls
/// runs many calls, so a call that yields waits for thousands of others and
/// cold reads get a long tail (see BENCHMARKS.md, turns by requeue).
pub(crate) fn requeue() -> Requeue {
    Requeue { woken: false }
}

/// The future of [`requeue`].
#[must_use = "a requeue does nothing unless awaited"]
pub(crate) struct Requeue {
    woken: bool,
}

impl Future for Requeue {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken {
            return Poll::Ready(());
        }
        self.woken = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A task that requeues lets every task queued before it run first, and
    /// then goes on by itself (no timer or I/O needed).
    #[test]
    fn a_requeued_task_runs_again_after_the_tasks_queued_before_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let ran = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..3 {
                let (order, ran) = (order.clone(), ran.clone());
                tasks.push(tokio::spawn(async move {
                    order.lock().push((t, 0));
                    requeue().await;
                    order.lock().push((t, 1));
                    ran.fetch_add(1, Ordering::Relaxed);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert_eq!(ran.load(Ordering::Relaxed), 3);
        assert_eq!(
            *order.lock(),
            [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
        );
    }
}
