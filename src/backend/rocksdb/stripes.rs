//! The per-key stripe locks that keep a sweep from deleting a value written
//! after the sweep read it (see the store's module docs, *Concurrency*).
//!
//! # Shared and exclusive
//! A stripe is a reader-writer lock. A SET takes its stripe **shared**: two
//! sets never need to exclude each other (each puts its own index entry
//! before its value, so whichever value wins has its entry), and with a
//! mutex two callers writing unrelated keys that hash to one stripe would
//! queue behind each other. Sweeps and deletes take their stripes
//! **exclusive**: a sweep must not delete a value a set is writing, and a
//! delete reads "was it there" and deletes under one lock, so concurrent
//! deletes of one key report it once.
//!
//! # Waiting or not
//! Pool workers wait for a stripe ([`Wait::Yes`]). A write on the caller's
//! async thread must never wait ([`Wait::No`]): a sweep holds its stripes for
//! a whole batch, which may read files. When the stripe is not free at once
//! the write goes to the pool instead.
//!
//! Several stripes are always taken in ascending order, so no two holders
//! can wait for each other.

use std::hash::{BuildHasher, Hasher};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of stripes: enough that a sweep batch and unrelated writes rarely
/// share one.
const STRIPES: usize = 64;

/// Which stripes [`Stripes::shared_where_free`] took, one bit each.
pub(crate) struct Free(u64);

// One bit of a `u64` per stripe.
const _: () = assert!(STRIPES <= 64);

/// Whether taking a lock may block the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A pool worker: wait until the lock is free.
    Yes,
    /// The caller's async thread: answer `None` instead of waiting.
    No,
}

/// Held stripes; dropping it releases them.
pub(crate) enum Held<'a> {
    Shared(#[allow(dead_code)] Vec<RwLockReadGuard<'a, ()>>),
    Exclusive(#[allow(dead_code)] Vec<RwLockWriteGuard<'a, ()>>),
}

/// The stripe locks of one store.
pub(crate) struct Stripes {
    locks: Box<[RwLock<()>]>,
    hasher: std::hash::RandomState,
}

impl Stripes {
    pub(crate) fn new() -> Self {
        Stripes {
            locks: (0..STRIPES).map(|_| RwLock::new(())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn index(&self, key: &[u8]) -> usize {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        (h.finish() as usize) % self.locks.len()
    }

    /// The distinct stripes of `keys`, ascending.
    fn of<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Vec<usize> {
        let mut stripes: Vec<usize> = keys.map(|k| self.index(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes
    }

    /// The stripe of `key`, shared (a set). `None` only with [`Wait::No`]
    /// when a sweep or delete holds it.
    pub(crate) fn shared_one(&self, key: &[u8], wait: Wait) -> Option<RwLockReadGuard<'_, ()>> {
        let lock = &self.locks[self.index(key)];
        match wait {
            Wait::Yes => Some(lock.read()),
            Wait::No => lock.try_read(),
        }
    }

    /// The stripes of `keys`, shared (sets). `None` only with [`Wait::No`].
    pub(crate) fn shared<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
        wait: Wait,
    ) -> Option<Held<'_>> {
        let mut held = Vec::new();
        for s in self.of(keys) {
            held.push(match wait {
                Wait::Yes => self.locks[s].read(),
                Wait::No => self.locks[s].try_read()?,
            });
        }
        Some(Held::Shared(held))
    }

    /// The stripes of `keys` that are free at once, shared (a group of sets
    /// on the callers' threads, which never waits); [`has`](Self::has) tells
    /// which keys' stripes were taken.
    pub(crate) fn shared_where_free<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
    ) -> (Held<'_>, Free) {
        let mut held = Vec::new();
        let mut free = 0u64;
        for s in self.of(keys) {
            if let Some(g) = self.locks[s].try_read() {
                held.push(g);
                free |= 1 << s;
            }
        }
        (Held::Shared(held), Free(free))
    }

    /// Whether `key`'s stripe is among those `free` says were taken.
    pub(crate) fn has(&self, free: &Free, key: &[u8]) -> bool {
        free.0 & (1 << self.index(key)) != 0
    }

    /// The stripes of `keys`, exclusive (sweeps, deletes). `None` only with
    /// [`Wait::No`] when any of them is held.
    pub(crate) fn exclusive<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
        wait: Wait,
    ) -> Option<Held<'_>> {
        let mut held = Vec::new();
        for s in self.of(keys) {
            held.push(match wait {
                Wait::Yes => self.locks[s].write(),
                Wait::No => self.locks[s].try_write()?,
            });
        }
        Some(Held::Exclusive(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_share_a_stripe_and_a_sweep_excludes_them() {
        let s = Stripes::new();
        let a = s.shared_one(b"k", Wait::No).expect("free stripe");
        // Another set of the same key (or of a key on the same stripe) goes on.
        assert!(s.shared_one(b"k", Wait::No).is_some());
        // A sweep or delete of it must wait, and one that may not wait says so.
        assert!(s.exclusive([&b"k"[..]].into_iter(), Wait::No).is_none());
        drop(a);
        let swept = s
            .exclusive([&b"k"[..], b"other"].into_iter(), Wait::No)
            .expect("nothing holds the stripes");
        assert!(s.shared_one(b"k", Wait::No).is_none());
        assert!(s.shared([&b"other"[..]].into_iter(), Wait::No).is_none());
        drop(swept);
        assert!(s.shared_one(b"k", Wait::No).is_some());
    }

    #[test]
    fn a_group_of_sets_takes_the_free_stripes_and_tells_which() {
        let s = Stripes::new();
        // Two keys on different stripes.
        let a = b"a".as_slice();
        let b = (0..1000)
            .map(|i| format!("b{i}").into_bytes())
            .find(|k| s.index(k) != s.index(a))
            .expect("keys spread over stripes");
        let swept = s.exclusive([a].into_iter(), Wait::No).unwrap();
        let (held, free) = s.shared_where_free([a, b.as_slice()].into_iter());
        assert!(!s.has(&free, a), "a sweep holds a's stripe");
        assert!(s.has(&free, &b));
        // b's stripe is held shared: a sweep of it must wait.
        assert!(s.exclusive([b.as_slice()].into_iter(), Wait::No).is_none());
        drop((held, swept));
        assert!(
            s.exclusive([a, b.as_slice()].into_iter(), Wait::No)
                .is_some()
        );
    }
}
