//! The in-process tier (`keystore.l1`): a bounded copy, in this process, of
//! what the keystore read and wrote, in front of any backend.
//!
//! # What it holds
//! A copy is a name's JSON text as the backend stores it, with two times on
//! the keystore's [`Clock`]: until when it may answer reads (`fresh_until`:
//! its remaining TTL in the backend, at most `keystore.l1.ttl_max`) and
//! when the backend's copy expires (for eager refresh). A copy past both
//! its fresh life and `keystore.fail_safe.max_age` is dead: never served,
//! and removed when a read finds it.
//!
//! The cache itself is `quick_cache`'s `sync::Cache`: sharded (a read takes
//! one shard's read lock), bounded by a weigher that counts the bytes of
//! the name and the JSON text (`keystore.l1.max_bytes`), with S3-FIFO
//! eviction. A hit is answered on the caller's thread before anything
//! awaits (like the RocksDB memory read), from the async and the blocking
//! face alike; nothing in it waits on I/O. Why not moka: its reads record
//! every access in a shared buffer and run the policy's upkeep on the
//! reading thread, which makes a tier hit cost more than a RocksDB memory
//! read (see BENCHMARKS.md, in-process tier); its per-entry expiry is not
//! needed, as the copy's own times decide what is served.
//!
//! # Keeping it coherent
//! - **In this process**, every read that fills the tier takes a [`Ticket`]
//!   before it asks the backend, and every write or invalidation of a name
//!   bumps that name's generation (one of [`STRIPES`] striped counters, or
//!   the epoch that prefix deletes and clears bump). A read whose ticket is
//!   stale when its answer comes back stores nothing, so a slow
//!   read can never put back a value older than a write or an invalidation
//!   that finished while it was on the wire. A write stores its own value
//!   only when nothing else touched the name while it was in flight (else it
//!   drops the copy: two racing writers cannot leave the loser's value).
//! - **Across instances**, each write through a keystore with the tier on
//!   publishes the names on the backplane ([`message`]); the [`Backplane`]
//!   actor of every other instance hands them to [`Tier::received`], which
//!   drops the copies. When the subscription is made again after an outage
//!   the tier is cleared: messages may have been missed meanwhile.
//! - **Against writers that publish nothing** (the Python services,
//!   `redis-cli`), `ttl_max` bounds how long a copy can be stale.
//!
//! [`Backplane`]: crate::backend::redis::Backplane

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, Weighter};

use crate::backend::redis::Invalidations;
use crate::clock::Clock;
use crate::config::TierConfig;
use crate::metrics::{Event, Recorder, TierCount};

pub(crate) mod message;
mod touch;

use message::{Invalidation, Scope};
pub(crate) use touch::Touch;

/// Generation stripes: names that share one only cost each other a fill.
const STRIPES: usize = 256;

/// A name's copy in the tier.
pub(crate) struct Cached {
    /// The JSON text, as the backend stores it.
    pub json: Arc<str>,
    /// On the keystore's clock: until when the copy answers reads.
    fresh_until: Duration,
    /// On the keystore's clock: when the backend's value expires (`None`:
    /// never). Eager refresh measures a value's age against it.
    pub expires_at: Option<Duration>,
}

/// Taken before a backend call whose answer may fill the tier: it is still
/// current when the answer comes back only if no write or invalidation of
/// the name finished meanwhile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    stripe: usize,
    generation: u64,
    epoch: u64,
}

/// The in-process tier (see the module docs).
pub(crate) struct Tier {
    cache: Cache<Arc<str>, Arc<Cached>, Bytes, quick_cache::DefaultHashBuilder, Evictions>,
    /// Per stripe of names: bumped by each write and invalidation.
    generations: Box<[Mutex<u64>]>,
    /// Bumped by prefix deletes and clears, which touch names of every
    /// stripe. Fills hold it shared while they check and insert; a prefix
    /// drop holds it exclusively while it bumps and removes, so no fill
    /// slips in between.
    epoch: RwLock<u64>,
    ttl_max: Duration,
    /// `keystore.fail_safe.max_age`.
    max_age: Duration,
    clock: Clock,
    recorder: Recorder,
    /// This keystore's id on the backplane (its own messages are skipped).
    instance: String,
    /// Where invalidations are published; `None` when there is no backplane.
    channel: Option<Arc<str>>,
}

/// The tier's weigher: bytes of the name and the JSON text.
#[derive(Clone)]
struct Bytes;

impl Weighter<Arc<str>, Arc<Cached>> for Bytes {
    fn weight(&self, name: &Arc<str>, copy: &Arc<Cached>) -> u64 {
        (name.len() + copy.json.len()).max(1) as u64
    }
}

/// Counts the copies the byte bound pushes out.
#[derive(Clone)]
struct Evictions(Recorder);

impl Lifecycle<Arc<str>, Arc<Cached>> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _name: Arc<str>, _copy: Arc<Cached>) {
        self.0.tier(TierCount::Eviction, 1);
    }
}

impl Tier {
    /// A tier as `config` says; `backplane` says whether invalidations are
    /// published (a Redis-protocol backend with `keystore.backplane.enabled`).
    pub(crate) fn new(
        config: &TierConfig,
        backplane: bool,
        clock: Clock,
        recorder: Recorder,
    ) -> Tier {
        // Sized for copies of about 256 bytes; the bound is the weight.
        let items = usize::try_from(config.max_bytes / 256).unwrap_or(usize::MAX);
        let cache = Cache::with(
            items.clamp(16, 1 << 22),
            config.max_bytes,
            Bytes,
            quick_cache::DefaultHashBuilder::default(),
            Evictions(recorder.clone()),
        );
        Tier {
            cache,
            generations: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            epoch: RwLock::new(0),
            ttl_max: config.ttl_max,
            max_age: config.fail_safe_max_age,
            clock,
            recorder,
            instance: instance_id(),
            channel: backplane.then(|| Arc::from(config.channel.as_str())),
        }
    }

    /// Now on the keystore's clock.
    pub(crate) fn now(&self) -> Duration {
        self.clock.now_unix()
    }

    fn stripe(name: &str) -> usize {
        let mut h = std::hash::DefaultHasher::new();
        name.hash(&mut h);
        (h.finish() as usize) % STRIPES
    }

    /// The fresh copy of `name`, counted as a tier hit or miss.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Cached>> {
        let found = self.cache.get(name).filter(|c| self.now() < c.fresh_until);
        let what = if found.is_some() {
            TierCount::Hit
        } else {
            TierCount::Miss
        };
        self.recorder.tier(what, 1);
        found
    }

    /// The last copy of each of `names`, in their order, if every one's
    /// fresh life ended no more than `keystore.fail_safe.max_age` ago (the
    /// backend just failed); counted as stale served only then.
    pub(crate) fn stale_copies<S: AsRef<str>>(&self, names: &[S]) -> Option<Vec<Arc<str>>> {
        if self.max_age.is_zero() {
            return None;
        }
        let now = self.now();
        let copies = names
            .iter()
            .map(|name| {
                let copy = self.cache.get(name.as_ref())?;
                (now <= copy.fresh_until + self.max_age).then(|| copy.json.clone())
            })
            .collect::<Option<Vec<_>>>()?;
        self.recorder
            .tier(TierCount::StaleServed, copies.len() as u64);
        Some(copies)
    }

    /// A ticket for a backend call about `name` (see [`Ticket`]).
    pub(crate) fn ticket(&self, name: &str) -> Ticket {
        let epoch = *self.epoch.read();
        let stripe = Tier::stripe(name);
        let generation = *self.generations[stripe].lock();
        Ticket {
            stripe,
            generation,
            epoch,
        }
    }

    /// A copy of what a read found: `json` with `left` to live in the backend
    /// (`None`: never expires). Stored only if `ticket` is still current.
    pub(crate) fn fill(&self, name: &str, json: &str, left: Option<Duration>, ticket: Ticket) {
        let epoch = self.epoch.read();
        let generation = self.generations[ticket.stripe].lock();
        if *epoch == ticket.epoch && *generation == ticket.generation {
            self.insert(name, json, left);
        }
    }

    /// What a write through this keystore stored: `json` for `ttl` seconds
    /// (`None`: never). Bumps the name's generation; keeps the new value
    /// when nothing else touched the name since `ticket`, else drops it.
    pub(crate) fn wrote(&self, name: &str, json: &str, ttl: Option<u64>, ticket: Ticket) {
        let epoch = self.epoch.read();
        let mut generation = self.generations[ticket.stripe].lock();
        let untouched = *epoch == ticket.epoch && *generation == ticket.generation;
        *generation += 1;
        if untouched {
            self.insert(name, json, ttl.map(Duration::from_secs));
        } else {
            self.cache.remove(name);
        }
    }

    fn insert(&self, name: &str, json: &str, left: Option<Duration>) {
        let now = self.now();
        let life = left.map_or(self.ttl_max, |l| l.min(self.ttl_max));
        if life.is_zero() {
            self.cache.remove(name);
            return;
        }
        let copy = Cached {
            json: Arc::from(json),
            fresh_until: now + life,
            expires_at: left.map(|l| now + l),
        };
        self.cache.insert(Arc::from(name), Arc::new(copy));
    }

    /// Drops the copy of each of `names` (a delete, or another instance's write).
    pub(crate) fn forget<S: AsRef<str>>(&self, names: &[S]) {
        for name in names {
            let name = name.as_ref();
            let mut generation = self.generations[Tier::stripe(name)].lock();
            *generation += 1;
            self.cache.remove(name);
        }
    }

    /// Drops every copy whose name starts with `prefix` (`""`: all of them).
    pub(crate) fn forget_prefix(&self, prefix: &str) {
        let mut epoch = self.epoch.write();
        *epoch += 1;
        if prefix.is_empty() {
            self.cache.clear();
        } else {
            self.cache.retain(|name, _| !name.starts_with(prefix));
        }
    }

    /// The channel and message that tell the other instances to drop
    /// `scope`, when there is a backplane; counted as sent.
    pub(crate) fn publish(&self, scope: Scope) -> Option<(Arc<str>, String)> {
        let channel = self.channel.clone()?;
        self.recorder.tier(TierCount::InvalidationSent, 1);
        let message = Invalidation {
            from: Some(self.instance.clone()),
            scope,
        }
        .encode();
        Some((channel, message))
    }

    /// The tier's weight now (bytes of names and JSON text) and its entries.
    pub(crate) fn weight(&self) -> (u64, u64) {
        (self.cache.weight(), self.cache.len() as u64)
    }
}

/// Whether a value with `ttl` seconds in all, expiring at `expires_at`, is
/// past `fraction` of its life at `now`.
pub(crate) fn is_due(now: Duration, expires_at: Option<Duration>, ttl: u64, fraction: f64) -> bool {
    let Some(expires_at) = expires_at else {
        return false;
    };
    if fraction <= 0.0 || ttl == 0 {
        return false;
    }
    let left = expires_at.saturating_sub(now).as_secs_f64();
    left < (1.0 - fraction) * ttl as f64
}

impl Invalidations for Tier {
    fn received(&self, payload: &[u8]) {
        let message = match Invalidation::decode(payload) {
            Ok(m) => m,
            Err(why) => {
                tracing::warn!("backplane: ignoring a message: {why}");
                return;
            }
        };
        if message.from.as_deref() == Some(self.instance.as_str()) {
            return;
        }
        match &message.scope {
            Scope::Names(names) => self.forget(names),
            Scope::Prefix(prefix) => self.forget_prefix(prefix),
            Scope::Clear => self.forget_prefix(""),
        }
        self.recorder.tier(TierCount::InvalidationReceived, 1);
    }

    fn subscribed(&self) {
        self.forget_prefix("");
        self.recorder.record(Event::BackplaneUp(true));
    }

    fn lost(&self) {
        self.recorder.record(Event::BackplaneUp(false));
    }
}

/// An id for this keystore on the backplane: the process id, the time and
/// a per-process counter, hashed (unique enough across a fleet's instances).
fn instance_id() -> String {
    use std::hash::BuildHasher;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    std::process::id().hash(&mut h);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .hash(&mut h);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(max_age: u64) -> (Tier, Clock) {
        let clock = Clock::manual();
        let config = TierConfig {
            enabled: true,
            fail_safe_max_age: Duration::from_secs(max_age),
            ..TierConfig::default()
        };
        let (recorder, _events, _dropped) = Recorder::new(false);
        (Tier::new(&config, true, clock.clone(), recorder), clock)
    }

    #[test]
    fn a_read_that_raced_a_write_or_an_invalidation_stores_nothing() {
        let (t, _) = tier(0);
        let read = t.ticket("k");
        let write = t.ticket("k");
        t.wrote("k", "2", Some(60), write);
        t.fill("k", "1", Some(Duration::from_secs(60)), read);
        assert_eq!(t.get("k").map(|c| c.json.to_string()), Some("2".into()));

        let read = t.ticket("k");
        t.forget(&["k"]);
        t.fill("k", "1", None, read);
        assert!(t.get("k").is_none());

        let read = t.ticket("user:1");
        t.forget_prefix("user:");
        t.fill("user:1", "1", None, read);
        assert!(t.get("user:1").is_none());

        // Two writes in flight at once: neither value is kept.
        let (a, b) = (t.ticket("w"), t.ticket("w"));
        t.wrote("w", "a", None, a);
        t.wrote("w", "b", None, b);
        assert!(t.get("w").is_none());
    }

    #[test]
    fn lifetime_is_the_smaller_of_ttl_and_ttl_max_and_stale_lasts_max_age() {
        let (t, clock) = tier(10);
        let tk = t.ticket("short");
        t.fill("short", "1", Some(Duration::from_secs(2)), tk);
        let tk = t.ticket("long");
        t.fill("long", "2", None, tk);
        clock.advance(Duration::from_secs(3));
        assert!(t.get("short").is_none());
        assert!(t.get("long").is_some());
        clock.advance(Duration::from_secs(3));
        assert!(t.get("long").is_none(), "ttl_max is 5 s");
        assert_eq!(t.stale_copies(&["long"]), Some(vec![Arc::from("2")]));
        clock.advance(Duration::from_secs(10));
        assert!(t.stale_copies(&["long"]).is_none());
    }

    #[test]
    fn own_messages_are_skipped_and_others_applied() {
        let (t, _) = tier(0);
        for n in ["a", "b", "p:1"] {
            let tk = t.ticket(n);
            t.fill(n, "1", None, tk);
        }
        let Some((_, message)) = t.publish(Scope::Names(vec!["a".into()])) else {
            panic!("no publish command");
        };
        t.received(message.as_bytes());
        assert!(t.get("a").is_some(), "its own message");
        t.received(br#"{"from":"other","names":["a"]}"#);
        assert!(t.get("a").is_none());
        t.received(br#"{"prefix":"p:"}"#);
        assert!(t.get("p:1").is_none() && t.get("b").is_some());
        t.received(b"garbage");
        t.subscribed();
        assert!(t.get("b").is_none(), "a new subscription clears the tier");
    }

    #[test]
    fn eager_refresh_rule() {
        let now = Duration::from_secs(1000);
        let at = |left| Some(now + Duration::from_secs(left));
        assert!(!is_due(now, at(90), 100, 0.8));
        assert!(is_due(now, at(10), 100, 0.8));
        assert!(!is_due(now, None, 100, 0.8));
        assert!(!is_due(now, at(10), 100, 0.0));
    }
}
