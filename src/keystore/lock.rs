//! The optional cross-process lock of a `get_or_set` load
//! (`keystore.get_or_set_lock_ms`, Redis and Dragonfly).
//!
//! Single flight ([`flight`](super::flight)) makes one load per name in a
//! process; with several processes sharing a server, each would still load
//! a missing name once. With the lock on, a process's flight first takes
//! `SET <name>:lock <token> NX PX <ms>`: the holder loads and stores, then
//! deletes the lock if it still holds its token; the others poll, re-reading
//! the value, until it is stored (they answer it) or the lock is gone (a
//! holder whose load failed released it; one that died lets it expire),
//! when the next of them takes it. Nothing waits forever: a flight gives up
//! with a timeout after the lock's lifetime plus the request timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::command::{Get, Lock, Unlock};
use crate::engine::{Engine, timer};
use crate::error::{ErrorKind, KeystoreError, Result};

/// What waiting for a name's load lock ended with.
pub(super) enum Locked {
    /// This process holds the lock: load, store, then [`Held::release`].
    Held(Held),
    /// Another process stored the value meanwhile: its JSON text.
    Loaded(Arc<str>),
}

/// A lock this process holds.
pub(super) struct Held {
    key: Arc<str>,
    token: Arc<str>,
}

/// The lock key of `name`.
pub(super) fn lock_key(name: &str) -> String {
    format!("{name}:lock")
}

/// A token no other holder has: this process's id, the time, a counter.
fn new_token() -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("objdatakey:{}:{nanos}:{n}", std::process::id()).into()
}

/// Takes `name`'s lock for `hold`, or waits for the value another process
/// is loading under it (see the module docs). `patience`: the request
/// timeout, added to `hold` for the longest wait.
pub(super) async fn take_or_wait(
    engine: &Engine,
    name: &str,
    hold: Duration,
    patience: Duration,
) -> Result<Locked> {
    let key: Arc<str> = lock_key(name).into();
    let token = new_token();
    let ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1);
    let give_up = Instant::now() + hold + patience;
    let poll = (hold / 20).clamp(Duration::from_millis(5), Duration::from_millis(100));
    loop {
        let lock = Lock {
            key: key.clone(),
            token: token.clone(),
            ms,
        };
        if engine.call(lock).await? {
            return Ok(Locked::Held(Held { key, token }));
        }
        if let Some(json) = engine.call(Get { key: name.into() }).await? {
            return Ok(Locked::Loaded(json.into()));
        }
        if Instant::now() >= give_up {
            return Err(KeystoreError::new(
                ErrorKind::Timeout,
                format!(
                    "get_or_set of key {name:?}: another process held the load lock {key:?} and \
                     stored no value within {} ms (keystore.get_or_set_lock_ms plus \
                     keystore.request_timeout_ms); retry the call",
                    (hold + patience).as_millis()
                ),
            ));
        }
        timer::sleep_until(Instant::now() + poll).await;
    }
}

impl Held {
    /// Deletes the lock if this process still holds it. A failure is only
    /// logged: the lock expires by itself.
    pub(super) async fn release(self, engine: &Engine) {
        let unlock = Unlock {
            key: self.key.clone(),
            token: self.token,
        };
        if let Err(e) = engine.call(unlock).await {
            tracing::warn!(
                "get_or_set could not release its load lock {:?} ({e}); it expires by itself",
                self.key
            );
        }
    }
}
