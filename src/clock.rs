//! [`Clock`]: the time source for TTLs, so expiry can be tested without sleeping.
//!
//! The RocksDB backend stores expiry as unix seconds, so the clock answers
//! wall-clock time. A manual clock starts at the real time and moves only when
//! told to, which lets a test expire a value "an hour later" in microseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time source used for TTL decisions. Cheap to clone; clones share the time.
///
/// ```
/// use objdatakey::Clock;
/// use std::time::Duration;
/// let clock = Clock::manual();
/// let t0 = clock.now_unix();
/// clock.advance(Duration::from_secs(3600));
/// assert_eq!(clock.now_unix() - t0, Duration::from_secs(3600));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None` is the system clock; `Some` holds the manual clock's time in
    /// nanoseconds since the epoch, shared by every clone.
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's wall clock (the default).
    #[must_use]
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock that starts at the current wall-clock time and moves only by
    /// [`advance`](Self::advance) or [`set`](Self::set).
    #[must_use]
    pub fn manual() -> Self {
        let now = system_now().as_nanos().min(u128::from(u64::MAX)) as u64;
        Clock {
            manual: Some(Arc::new(AtomicU64::new(now))),
        }
    }

    /// Time since the unix epoch.
    #[must_use]
    pub fn now_unix(&self) -> Duration {
        match &self.manual {
            None => system_now(),
            Some(t) => Duration::from_nanos(t.load(Ordering::Acquire)),
        }
    }

    /// Moves a manual clock forward. No effect on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.manual {
            let by = by.as_nanos().min(u128::from(u64::MAX)) as u64;
            t.fetch_add(by, Ordering::AcqRel);
        }
    }

    /// Sets a manual clock to `since_epoch`. No effect on the system clock.
    pub fn set(&self, since_epoch: Duration) {
        if let Some(t) = &self.manual {
            t.store(
                since_epoch.as_nanos().min(u128::from(u64::MAX)) as u64,
                Ordering::Release,
            );
        }
    }

    /// Whether this is a manual clock.
    #[must_use]
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }
}

fn system_now() -> Duration {
    // A clock set before 1970 is a broken machine, not a reason to panic.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}
