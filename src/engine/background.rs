//! Detached background tasks (a `get_or_set` loader), run where they cannot
//! be cancelled by the caller that started them.
//!
//! On the caller's own tokio runtime when there is one, so the loader runs
//! beside the code that asked for it; otherwise (the blocking API, a
//! non-tokio executor, or the timer runtime) on a small runtime of the
//! process's own, started on first use, whose workers never run timers for
//! anyone else, so a slow loader delays no deadline.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle};
use tokio::task::JoinHandle;

use super::timer;

/// Worker threads of the process's background runtime.
const WORKERS: usize = 2;

/// Spawns `fut` detached (dropping the handle does not cancel it).
pub(crate) fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match Handle::try_current() {
        Ok(h) if h.id() != timer::handle().id() => h.spawn(fut),
        _ => runtime().spawn(fut),
    }
}

fn runtime() -> &'static Handle {
    static BACKGROUND: OnceLock<Handle> = OnceLock::new();
    BACKGROUND.get_or_init(|| {
        let rt = Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("objdatakey-background")
            .enable_all()
            .build()
            .expect("the OS starts the background runtime's threads");
        let handle = rt.handle().clone();
        // The runtime lives as long as the process: its workers keep running
        // after this function returns.
        std::mem::forget(rt);
        handle
    })
}
