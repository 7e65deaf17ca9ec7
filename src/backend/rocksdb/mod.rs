//! The embedded RocksDB backend: the [`store`] (the stored envelope, the
//! expiry index and its sweep) and the [`pool`] of worker threads that runs
//! its blocking calls.
//!
//! Warm reads skip the pool: [`RocksStore::get_in_memory`] answers from
//! memtables and block cache on the caller's thread (see `engine::request`).

pub(crate) mod pool;
pub(crate) mod store;

pub(crate) use pool::start_pool;
pub(crate) use store::RocksStore;
