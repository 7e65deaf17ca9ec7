//! Deadline timers for callers that wait on an actor or a worker.
//!
//! A caller may run on any executor, or on none (the blocking API), so the
//! timer cannot come from the caller's runtime. It cannot come from the
//! engine's runtime either: `shutdown()` stops that runtime while other
//! clones may still wait, and polling a timer of a runtime that has shut
//! down panics inside tokio. So the timers live on one small runtime of the
//! process's own, driven by a dedicated thread for the life of the process.

use std::sync::OnceLock;
use std::time::Instant;

use tokio::runtime::{Builder, Handle};

/// The timer runtime's handle (started on first use).
pub(crate) fn handle() -> &'static Handle {
    static TIMERS: OnceLock<Handle> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let rt = Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime with only a timer builds");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("objdatakey-timers".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("the OS starts one thread for the timers");
        handle
    })
}

/// Sleeps until `at`, on the timer runtime, whichever executor polls it.
pub(crate) fn sleep_until(at: Instant) -> tokio::time::Sleep {
    let _timers = handle().enter();
    tokio::time::sleep_until(at.into())
}
