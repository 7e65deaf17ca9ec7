//! The embedded RocksDB store: the stored envelope, per-entry expiry, the
//! expiry index the janitor sweeps, and what removes expired entries from disk.
//!
//! # Keyspaces
//! The database at `keystore.rocksdb.path` holds only the values, in its
//! default column family: key = the name's UTF-8 bytes, value = the envelope
//! (see [`format`]). That is the keyspace a Python service iterates, so every
//! value in it decodes with `json.loads`. The expiry index is a second RocksDB
//! database in the subdirectory [`INDEX_DIR`] (RocksDB leaves directories it
//! did not make alone).
//!
//! Why not a column family: RocksDB opens a database read-write only when
//! every column family is listed, and rocksdict 0.3.29 cannot find them by
//! itself in a database RocksDB 11 wrote (it reads the `OPTIONS` file
//! strictly and gives up on options its RocksDB 9.8.4 does not know). So
//! `Rdict(path, Options(raw_mode=True))`, as the Python services open it,
//! would fail with `Column families not opened: …` on any extra column
//! family (read-only and secondary opens would still work).
//!
//! # Expiry index
//! Next to each value written with a TTL goes an empty index entry
//! `0xFF 'x' <expires_at: u64 big-endian> <key>` in the index database. A
//! sweep walks it in expiry order until the first entry that has not expired:
//! its cost grows with the number of expired entries, not with the total.
//!
//! Index entries do not go in with their values: they wait in
//! [`PendingIndex`] and are written a batch at a time (at most
//! [`FLUSH_AT`](super::pending::FLUSH_AT) writes or
//! [`FLUSH_AFTER`](super::pending::FLUSH_AFTER) later, before every sweep,
//! and at close), so a SET costs one trip through RocksDB's write path, not
//! two. A sweep deletes values first, then their index entries. A crash
//! leaves at worst an index entry without its value (the sweep drops it) or
//! a value without an index entry, because its entry was still waiting or
//! the index's log was lost with the machine (the compaction filter below
//! removes it once expired).
//!
//! Overwrites and deletes leave their old index entry behind (no read before a
//! write); the sweep checks each entry against the current value and drops stale
//! ones.
//!
//! Earlier versions kept the index in the default column family. Opening such
//! a database moves those entries to the index database (one pass, in
//! batches) and compacts their old range, so the default keyspace holds only
//! values.
//!
//! # What removes expired entries, and when
//! - A read never returns an expired value, whoever wrote it.
//! - The janitor's sweep (every `ttl_cleanup_interval`, and
//!   `Keystore::purge_expired`) deletes the values the index names once they
//!   expire: everything this engine wrote with a TTL.
//! - A compaction filter on the default column family drops every envelope
//!   whose `expires_at` has passed (by the store's [`Clock`]) whenever RocksDB
//!   compacts the file holding it: this removes what other programs (the
//!   Python services) wrote without an index entry. Values it cannot decode
//!   and never-expire values (`-1`) are kept. It costs nothing extra: those
//!   files are being rewritten anyway.
//! - Files that no write traffic compacts are still compacted once a day
//!   (RocksDB's periodic compaction, [`PERIODIC_COMPACTION`]), and a sweep
//!   that finds its index done compacts the whole database once every
//!   [`FULL_COMPACTION_EVERY`] of the store's clock (the first one that long
//!   after opening). So an expired entry without an index entry stays on disk
//!   at most about a day; the sweeps in between cost only the expired entries.
//!   A full compaction holds the worker running that sweep batch until it is
//!   done (foreground requests use the other workers).
//!
//! # Durability
//! Every write goes to the write-ahead log, so a crash of the process
//! (`kill -9`) loses no acknowledged write. With
//! `keystore.rocksdb.sync_writes: true` each value write is also fsynced
//! before it is acknowledged, so it survives power loss and OS crashes too.
//! Index entries and sweep deletions are never fsynced: losing one only
//! leaves an entry to the compaction filter, or to sweep again.
//!
//! # Format
//! SST files are written with `keystore.rocksdb.format_version` (default
//! [`DEFAULT_FORMAT_VERSION`](crate::config::DEFAULT_FORMAT_VERSION)), so the
//! RocksDB inside rocksdict reads them. A database whose last `OPTIONS` file
//! says newer files were written (by an earlier version of this engine, with
//! RocksDB's default 7) is rewritten at the configured version when opened.
//!
//! # Concurrency
//! Reads take no lock. A write and a sweep of the same key are serialised by
//! the key's stripe (one of a fixed set of locks chosen by key hash; see
//! [`stripes`](super::stripes)), so a sweep can never delete a value that was
//! rewritten after the sweep read it. Sets share their stripe, deletes and
//! sweeps hold it alone. The compaction filter takes no lock: it only sees
//! versions already in files, and a newer write of the same key always
//! outranks what it drops.
//!
//! # Writes on the caller's thread
//! Handing each write to a pool worker and its answer back costs two thread
//! wake-ups, far more than a memtable insert. So the engine first tries a write
//! in place ([`try_set`](RocksStore::try_set), [`try_delete`](RocksStore::try_delete),
//! and their batch forms): stripes taken only if free, RocksDB's
//! `no_slowdown`, and for deletes the "was it there" read from memory only.
//! Anything that would wait (a stripe a sweep holds, a write stall, a read
//! from a file, fsynced writes) answers `None`, and the write goes to the
//! pool, which waits. The write itself is the same: WAL first,
//! then memtable, acknowledged only after both.
//!
//! [`INDEX_DIR`]: index::INDEX_DIR
//! [`PERIODIC_COMPACTION`]: open::PERIODIC_COMPACTION
//! [`FULL_COMPACTION_EVERY`]: open::FULL_COMPACTION_EVERY

mod index;
mod open;
mod prefix;
mod read;
mod sweep;
mod write;

#[cfg(any(test, feature = "fault-injection"))]
mod faults;

#[cfg(test)]
mod group_tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use rocksdb::{DB, ReadOptions, ReadTier, WriteOptions};

use super::foreground::Foreground;
use super::group::WriteGroup;
use super::pending::PendingIndex;
use super::stripes::Stripes;
use crate::clock::Clock;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format;
use sweep::SweepCursor;

pub(crate) use sweep::SweepOutcome;
pub(crate) use write::SetStarted;

thread_local! {
    /// Read options that answer from memory only (memtables, block cache).
    /// Built once per thread: creating RocksDB read options allocates a C++
    /// object, a noticeable share of a warm read.
    static MEMORY_ONLY: ReadOptions = {
        let mut ro = ReadOptions::default();
        ro.set_read_tier(ReadTier::BlockCache);
        ro
    };
}

/// An open RocksDB database plus what the engine needs around it.
pub(crate) struct RocksStore {
    /// The values (what Python reads).
    db: DB,
    /// The expiry index, in [`INDEX_DIR`](index::INDEX_DIR).
    index: DB,
    /// Index entries not written yet (see the module docs).
    pending: PendingIndex,
    /// As configured (possibly relative), for messages.
    path: PathBuf,
    clock: Clock,
    /// Writes on a pool worker: values fsynced or not
    /// (`keystore.rocksdb.sync_writes`), waiting through write stalls.
    waiting: Writes,
    /// Writes on the caller's thread: `no_slowdown`, so RocksDB answers
    /// `Incomplete` instead of delaying or stopping the write. `None` with
    /// `sync_writes` (an fsync must not block an async thread): every write
    /// then goes to the pool.
    no_wait: Option<Writes>,
    /// Keep sweeps off values written meanwhile (see the module docs).
    stripes: Stripes,
    /// Concurrent SETs on the callers' threads, written as one batch (see
    /// [`group`](super::group)).
    group: WriteGroup,
    /// Where the next sweep batch starts. Deleted index entries stay in the
    /// database as tombstones until compaction; starting every batch at the
    /// front of the index would step over all of them again, making a large
    /// sweep quadratic. Only sweeps (one at a time, from the janitor) use it.
    cursor: Mutex<SweepCursor>,
    /// When (store clock, unix seconds) a sweep last compacted everything;
    /// the open time until then.
    compacted_at: Mutex<f64>,
    /// Envelopes the compaction filter dropped and no sweep has reported yet.
    filter_dropped: Arc<AtomicU64>,
    /// Whether callers used the store since the last sweep batch (see
    /// [`foreground`](super::foreground)): the janitor rests only then.
    foreground: Foreground,
    /// Dropped with the store: its receiver learns the database is closed, so
    /// shutdown can wait until the lock file is released.
    _closed: crossbeam_channel::Sender<()>,
}

/// The write options of one way of writing (built once: each is a C++
/// object RocksDB allocates).
struct Writes {
    values: WriteOptions,
    index: WriteOptions,
}

/// RocksDB's answer to a `no_slowdown` write it would have delayed or stopped.
fn would_stall(e: &rocksdb::Error) -> bool {
    e.kind() == rocksdb::ErrorKind::Incomplete
}

impl RocksStore {
    /// The database directory as configured.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn now(&self) -> f64 {
        self.clock.now_unix().as_secs_f64()
    }

    /// Whether an entry expiring at `expires_at` has expired, reading the
    /// clock only for an entry that can (a warm read of a never-expiring
    /// value reads no clock).
    fn expired(&self, expires_at: f64) -> bool {
        expires_at >= 0.0 && format::is_expired(expires_at, self.now())
    }

    fn db_error(&self, what: &str, key: &str, e: rocksdb::Error) -> KeystoreError {
        KeystoreError::new(
            ErrorKind::Storage,
            format!(
                "RocksDB {what} of key {key:?} in {} failed",
                self.path.display()
            ),
        )
        .with_source(e)
    }

    fn corrupt(&self, key: &str, why: &str) -> KeystoreError {
        KeystoreError::new(
            ErrorKind::CorruptValue,
            format!(
                "RocksDB value of key {key:?} in {} is not in objdatakey's format \
                 ({{\"data\": \"<json text>\", \"expires_at\": <unix seconds or -1>}}): {why}; \
                 delete the key or rewrite it with set_cache",
                self.path.display()
            ),
        )
    }

    /// The stored bytes of `key` (pinned, not copied), expired or not.
    fn stored(&self, key: &str) -> Result<Option<rocksdb::DBPinnableSlice<'_>>> {
        self.db
            .get_pinned(key.as_bytes())
            .map_err(|e| self.db_error("get", key, e))
    }
}

impl Drop for RocksStore {
    /// Writes the index entries still waiting, so a closed database has
    /// every one (the databases close after this, with the fields).
    fn drop(&mut self) {
        let _ = self.write_index(self.pending.take(), &self.waiting.index);
    }
}
