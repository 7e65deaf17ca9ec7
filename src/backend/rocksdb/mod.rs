//! The embedded RocksDB backend: the [`store`] (the stored envelope, the
//! expiry index and its sweep), the [`pending`] index entries written a
//! batch at a time, the [`stripes`] that keep sweeps off values written
//! meanwhile, the [`group`] that writes concurrent SETs as one batch, and
//! the [`pool`] of worker threads that runs its blocking calls.
//!
//! Warm reads and writes that need not wait skip the pool:
//! [`RocksStore::get_in_memory`] answers from memtables and block cache, and
//! [`RocksStore::try_set`] and its siblings write with `no_slowdown`, both on
//! the caller's thread (see `engine::request`). Every foreground call is
//! noted in the store's [`foreground`] flag, which each sweep batch takes:
//! the janitor rests between batches only when callers used the store.

pub(crate) mod foreground;
pub(crate) mod group;
pub(crate) mod pending;
pub(crate) mod pool;
pub(crate) mod store;
pub(crate) mod stripes;

pub(crate) use pool::start_pool;
pub(crate) use store::{RocksStore, SetStarted, SweepOutcome};
