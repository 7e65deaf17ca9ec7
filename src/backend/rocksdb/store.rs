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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, ColumnFamilyDescriptor, CompactOptions, DB,
    DEFAULT_COLUMN_FAMILY_NAME, Direction, IteratorMode, Options, ReadOptions, ReadTier,
    WriteBatch, WriteOptions,
};

use super::foreground::Foreground;
use super::group::{Entry, Member, WriteGroup};
use super::pending::PendingIndex;
use super::stripes::{Stripes, Wait};
use crate::backend::Stored;
use crate::backend::ValueTexts;
use crate::clock::Clock;
use crate::config::RocksDbConfig;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format::{self, Json};
use crate::ttl::Ttl;

/// Prefix of expiry index keys: `0xFF` cannot occur in UTF-8 names. Index
/// entries written by earlier versions sit under it in the default column
/// family; that is how they are found and moved.
const INDEX_PREFIX: [u8; 2] = [0xFF, b'x'];
/// Subdirectory of the database directory holding the expiry index database.
pub(crate) const INDEX_DIR: &str = "objdatakey-expiry";
/// Name of the compaction filter that drops expired envelopes (RocksDB
/// records it in the `OPTIONS` file).
const EXPIRED_FILTER: &str = "objdatakey.expired_envelopes";
/// Longest a file of the default column family goes without passing through
/// the compaction filter (RocksDB's `periodic_compaction_seconds`).
pub(crate) const PERIODIC_COMPACTION: Duration = Duration::from_secs(24 * 3600);
/// Time (by the store's clock) between two full compactions started by sweeps.
pub(crate) const FULL_COMPACTION_EVERY: Duration = Duration::from_secs(24 * 3600);
/// Index entries moved per write batch when migrating an old database.
const MIGRATE_BATCH: usize = 10_000;

thread_local! {
    /// Read options that answer from memory only (memtables, block cache).
    /// Built once per thread: creating RocksDB read options allocates a C++
    /// object, a noticeable share of a warm read.
    static MEMORY_ONLY: ReadOptions = {
        let mut ro = ReadOptions::default();
        ro.set_read_tier(ReadTier::BlockCache);
        ro
    };
    /// The text of the last value read from memory on this thread, kept
    /// for the next read's (see [`RocksStore::get_in_memory`]). Taken while
    /// in use: a read nested in another's decoding gets a new buffer.
    static TEXT: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Largest [`TEXT`] buffer a thread keeps (a larger value's text is freed
/// after its read): a thread's memory is not held by one outsized value.
const TEXT_KEPT: usize = 64 * 1024;

/// An open RocksDB database plus what the engine needs around it.
pub(crate) struct RocksStore {
    /// The values (what Python reads).
    db: DB,
    /// The expiry index, in [`INDEX_DIR`].
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

/// How a SET on the caller's thread started (see [`RocksStore::set_or_join`]).
pub(crate) enum SetStarted {
    /// Written alone, or failed.
    Written(Result<()>),
    /// Waiting in a group.
    Joined(Member),
}

/// RocksDB's answer to a `no_slowdown` write it would have delayed or stopped.
fn would_stall(e: &rocksdb::Error) -> bool {
    e.kind() == rocksdb::ErrorKind::Incomplete
}

/// Why a batch read failed.
enum ManyFailed<'k> {
    /// RocksDB could not read `key`.
    Read(&'k str, rocksdb::Error),
    /// A value not in the stored format, named in the error.
    Corrupt(KeystoreError),
}

/// The last index entry a sweep batch took, and whether its sweep goes on.
#[derive(Debug, Default)]
struct SweepCursor {
    last: Option<(Vec<u8>, u64)>,
    /// The last batch said `more`: the next one continues right after `last`.
    /// Otherwise the next sweep starts at the beginning of `last`'s second,
    /// since an entry written since then may sort before `last` in that second.
    open: bool,
}

/// What one sweep batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SweepOutcome {
    /// Expired values deleted (by this batch, or by the compaction filter
    /// since the previous sweep, reported with a sweep's last batch). The
    /// filter's part is an upper bound: a compaction that did not include a
    /// sweep's deletion of a value sees, drops and counts the value's older
    /// version again.
    pub removed: u64,
    /// Index entries looked at (removed values plus stale entries).
    pub scanned: u64,
    /// More expired entries remain after this batch.
    pub more: bool,
    /// Foreground calls used the store since the previous batch (or, for
    /// a sweep's first batch, since the one before it).
    pub contended: bool,
}

impl RocksStore {
    /// Opens (or creates) the database. The receiver disconnects when the store is dropped.
    pub(crate) fn open(
        cfg: &RocksDbConfig,
        clock: Clock,
    ) -> Result<(Self, crossbeam_channel::Receiver<()>)> {
        let path = cfg.path.clone();
        if cfg.create_if_missing {
            std::fs::create_dir_all(&path).map_err(|e| {
                KeystoreError::new(
                    ErrorKind::Io,
                    format!(
                        "cannot create RocksDB directory {} (keystore.rocksdb.path)",
                        path.display()
                    ),
                )
                .with_source(e)
            })?;
        } else if !path.join("CURRENT").exists() {
            return Err(KeystoreError::new(
                ErrorKind::NotFound,
                format!(
                    "no RocksDB database at {} and keystore.rocksdb.create_if_missing is false; \
                     fix keystore.rocksdb.path or set create_if_missing: true",
                    path.display()
                ),
            ));
        }
        // Files written before with a newer format than configured: rewrite
        // them once opened, or Python keeps failing on them.
        let rewrite_from = written_format_version(&path).filter(|&v| v > cfg.format_version);
        let mut table = BlockBasedOptions::default();
        table.set_format_version(cfg.format_version);
        let cf_opts = || {
            let mut o = Options::default();
            // Explicit: RocksDB 11's default is LZ4, which this build lacks.
            o.set_compression_type(rocksdb::DBCompressionType::Snappy);
            o.set_block_based_table_factory(&table);
            o
        };
        let mut opts = cf_opts();
        opts.create_if_missing(cfg.create_if_missing);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(
            std::thread::available_parallelism()
                .map(|n| n.get() as i32)
                .unwrap_or(2),
        );
        let filter_dropped = Arc::new(AtomicU64::new(0));
        let mut values_opts = cf_opts();
        values_opts.set_periodic_compaction_seconds(PERIODIC_COMPACTION.as_secs());
        {
            let clock = clock.clone();
            let dropped = filter_dropped.clone();
            values_opts.set_compaction_filter(EXPIRED_FILTER, move |_level, _key, value| {
                match format::decode(value) {
                    Ok(e) if e.is_expired(clock.now_unix().as_secs_f64()) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        Decision::Remove
                    }
                    // Live, never-expire (-1), or not an envelope: not ours to judge.
                    _ => Decision::Keep,
                }
            });
        }
        let mut cfs = vec![ColumnFamilyDescriptor::new(
            DEFAULT_COLUMN_FAMILY_NAME,
            values_opts,
        )];
        // RocksDB opens a database only with all its column families listed:
        // open any other program's with plain options and leave them alone.
        if path.join("CURRENT").exists() {
            let existing = DB::list_cf(&opts, &path).map_err(|e| open_error(&path, e))?;
            for name in existing {
                if name != DEFAULT_COLUMN_FAMILY_NAME {
                    cfs.push(ColumnFamilyDescriptor::new(name, cf_opts()));
                }
            }
        }
        let db = DB::open_cf_descriptors(&opts, &path, cfs).map_err(|e| open_error(&path, e))?;
        // The values' lock is held: nobody else has the index open either.
        let index_path = path.join(INDEX_DIR);
        let mut index_opts = cf_opts();
        index_opts.create_if_missing(true);
        let index = DB::open(&index_opts, &index_path).map_err(|e| open_error(&index_path, e))?;
        let mut values = WriteOptions::default();
        values.set_sync(cfg.sync_writes);
        let waiting = Writes {
            values,
            index: WriteOptions::default(),
        };
        let (tx, rx) = crossbeam_channel::bounded(0);
        let no_wait = (!cfg.sync_writes).then(|| {
            let no_slowdown = || {
                let mut o = WriteOptions::default();
                o.set_no_slowdown(true);
                o
            };
            Writes {
                values: no_slowdown(),
                index: no_slowdown(),
            }
        });
        let store = RocksStore {
            db,
            index,
            pending: PendingIndex::default(),
            path,
            compacted_at: Mutex::new(clock.now_unix().as_secs_f64()),
            clock,
            waiting,
            no_wait,
            stripes: Stripes::new(),
            group: WriteGroup::default(),
            cursor: Mutex::new(SweepCursor::default()),
            filter_dropped,
            foreground: Foreground::default(),
            _closed: tx,
        };
        let moved = store.migrate_index()?;
        if moved > 0 {
            tracing::info!(
                "moved {moved} expiry index entries of {} from the default column family to {INDEX_DIR}/",
                store.path.display()
            );
        }
        if let Some(old) = rewrite_from {
            tracing::info!(
                "rewriting {} from SST format_version {old} to {} (keystore.rocksdb.format_version)",
                store.path.display(),
                cfg.format_version
            );
            store.compact_all();
        }
        Ok((store, rx))
    }

    /// Moves index entries an earlier version wrote into the default column
    /// family to the index database, then compacts their old range so the
    /// default keyspace holds values only. Answers how many were moved.
    fn migrate_index(&self) -> Result<u64> {
        let fail = |e: rocksdb::Error| {
            KeystoreError::new(
                ErrorKind::Backend,
                format!(
                    "moving the expiry index of {} to {INDEX_DIR}/ failed; \
                     the next open retries it",
                    self.path.display()
                ),
            )
            .with_source(e)
        };
        let upper = [0xFF, b'x' + 1];
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(upper.to_vec());
        // One pass: the iterator reads a snapshot, so the deletes written
        // meanwhile do not disturb it.
        let iter = self
            .db
            .iterator_opt(IteratorMode::From(&INDEX_PREFIX, Direction::Forward), ro);
        let mut moved = 0u64;
        let (mut puts, mut deletes) = (WriteBatch::default(), WriteBatch::default());
        let flush = |puts: &mut WriteBatch, deletes: &mut WriteBatch| -> Result<()> {
            // The copy first: a crash in between leaves both, and the next
            // open moves them again.
            self.index.write(std::mem::take(puts)).map_err(fail)?;
            self.db.write(std::mem::take(deletes)).map_err(fail)
        };
        for item in iter {
            let (k, v) = item.map_err(fail)?;
            // Only what this engine wrote: `0xFF 'x'`, an expiry, an empty value.
            if !v.is_empty() || parse_index_key(&k).is_none() {
                continue;
            }
            puts.put(&k, []);
            deletes.delete(&k);
            moved += 1;
            if puts.len() >= MIGRATE_BATCH {
                flush(&mut puts, &mut deletes)?;
            }
        }
        if !puts.is_empty() {
            flush(&mut puts, &mut deletes)?;
        }
        if moved > 0 {
            // Drop the tombstones, which Python's iteration would step over.
            self.db
                .compact_range(Some(&INDEX_PREFIX[..]), Some(&upper[..]));
        }
        Ok(moved)
    }

    /// Compacts every column family (and the index) down to its last
    /// level, so each value passes the compaction filter and every file is
    /// rewritten with the configured format. Blocks until done.
    fn compact_all(&self) {
        let mut co = CompactOptions::default();
        co.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        let names = DB::list_cf(&Options::default(), &self.path).unwrap_or_default();
        for name in names {
            if let Some(cf) = self.db.cf_handle(&name) {
                self.db
                    .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &co);
            }
        }
        self.index
            .compact_range_opt(None::<&[u8]>, None::<&[u8]>, &co);
    }

    /// Runs [`compact_all`](Self::compact_all) when the last full compaction
    /// is [`FULL_COMPACTION_EVERY`] old; answers whether it did.
    fn compact_if_due(&self, now: f64) -> bool {
        let mut at = self.compacted_at.lock();
        if now < *at {
            // The clock went back (manual clocks do): count from here.
            *at = now;
            return false;
        }
        if now - *at < FULL_COMPACTION_EVERY.as_secs_f64() {
            return false;
        }
        *at = now;
        drop(at);
        self.compact_all();
        true
    }

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
            ErrorKind::Backend,
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

    /// The JSON text stored under `key`, or `None` when missing or expired.
    pub(crate) fn get(&self, key: &str) -> Result<Option<String>> {
        let Some(bytes) = self.stored(key)? else {
            return Ok(None);
        };
        self.live_value(key, &bytes)
    }

    /// [`get`](Self::get), answered from memory only (memtables and block
    /// cache: `ReadTier::BlockCache` never reads a file), the text lent to
    /// `read` (which decodes it) rather than returned: a plain string's
    /// value is lent as it stands in RocksDB's buffer, any other text is
    /// built in a buffer this thread keeps, so a warm read allocates no
    /// text. `None` when the answer would need disk I/O: the caller then
    /// queues the read on the worker pool. Safe to call on an async thread:
    /// it never blocks on I/O.
    pub(crate) fn get_in_memory<R>(
        &self,
        key: &str,
        read: impl FnOnce(Json<'_>) -> R,
    ) -> Option<Result<Option<R>>> {
        let found = MEMORY_ONLY.with(|ro| self.db.get_pinned_opt(key.as_bytes(), ro));
        match found {
            Ok(None) => Some(Ok(None)),
            Ok(Some(bytes)) => Some(self.read_live_value(key, &bytes, read)),
            // `Incomplete`: not in memory. Any other error: let the pool
            // read it the normal way and report it with full context.
            Err(_) => None,
        }
    }

    /// [`live_value`](Self::live_value), handed to `read`: a plain string's
    /// value as it stands in `bytes` (see [`format::plain_string`]), any
    /// other text built in this thread's [`TEXT`] buffer.
    fn read_live_value<R>(
        &self,
        key: &str,
        bytes: &[u8],
        read: impl FnOnce(Json<'_>) -> R,
    ) -> Result<Option<R>> {
        if let Some((value, expires_at)) = format::plain_string(bytes) {
            return Ok((!self.expired(expires_at)).then(|| read(Json::PlainString(value))));
        }
        let entry = format::decode_in(bytes, TEXT.take()).map_err(|why| self.corrupt(key, &why))?;
        let answer = (!self.expired(entry.expires_at)).then(|| read(Json::Text(&entry.data)));
        let buffer = entry.data.into_bytes();
        if buffer.capacity() <= TEXT_KEPT {
            TEXT.set(buffer);
        }
        Ok(answer)
    }

    /// The data of a stored envelope, or `None` when it has expired.
    fn live_value(&self, key: &str, bytes: &[u8]) -> Result<Option<String>> {
        let entry = format::decode(bytes).map_err(|why| self.corrupt(key, &why))?;
        if self.expired(entry.expires_at) {
            return Ok(None);
        }
        Ok(Some(entry.data))
    }

    /// The JSON text of each of `keys` (in their order), `None` for those
    /// missing or expired: one `MultiGet` (see [`read_many`](Self::read_many)).
    pub(crate) fn get_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<ValueTexts> {
        self.read_many(keys, &ReadOptions::default())
            .map_err(|failed| match failed {
                ManyFailed::Read(key, e) => self.db_error("get_many", key, e),
                ManyFailed::Corrupt(e) => e,
            })
    }

    /// [`get_many`](Self::get_many) from memory only (see
    /// [`get_in_memory`](Self::get_in_memory)); `None` when any key needs a
    /// file read.
    ///
    /// One `get` per key, not a `MultiGet`: RocksDB's batched `MultiGet`
    /// ignores `ReadTier::BlockCache` for data blocks (it reads the blocks
    /// the cache lacks from the files, on this caller's thread, and with
    /// no-I/O set does not insert them into the cache, so every later
    /// batch reads them again). A single `get` answers `Incomplete`
    /// instead, and the batch then goes to the pool, whose `MultiGet` reads
    /// and caches the blocks.
    pub(crate) fn get_many_in_memory<K: AsRef<str>>(
        &self,
        keys: &[K],
    ) -> Option<Result<ValueTexts>> {
        let mut found = Vec::with_capacity(keys.len());
        MEMORY_ONLY.with(|ro| {
            for key in keys {
                // `Incomplete`: not in memory. Any other error: the pool
                // reads it the normal way and reports it with full context.
                let read = self.db.get_pinned_opt(key.as_ref().as_bytes(), ro).ok()?;
                found.push((found.len(), read));
            }
            Some(())
        })?;
        Some(
            self.texts(keys, found)
                .map_err(|(key, why)| self.corrupt(key, &why)),
        )
    }

    /// The values of `keys` read with `ro`, in one `MultiGet`. The keys are
    /// borrowed and sorted here (cheaper than RocksDB's comparator sort;
    /// skipped when already in order). Every read is checked before any
    /// value is decoded.
    fn read_many<'k, K: AsRef<str>>(
        &self,
        keys: &'k [K],
        ro: &ReadOptions,
    ) -> std::result::Result<ValueTexts, ManyFailed<'k>> {
        let name = |i: usize| keys[i].as_ref();
        let mut order: Vec<usize> = (0..keys.len()).collect();
        if !keys.is_sorted_by(|a, b| a.as_ref() <= b.as_ref()) {
            order.sort_unstable_by(|&a, &b| name(a).cmp(name(b)));
        }
        let cf = self
            .db
            .cf_handle(DEFAULT_COLUMN_FAMILY_NAME)
            .expect("the default column family always exists");
        // `str` order is byte order: the default (bytewise) comparator's.
        let found = self.db.batched_multi_get_cf_opt(
            cf,
            order.iter().map(|&i| name(i).as_bytes()),
            true,
            ro,
        );
        let mut read = Vec::with_capacity(found.len());
        for (&i, r) in order.iter().zip(found) {
            read.push((i, r.map_err(|e| ManyFailed::Read(name(i), e))?));
        }
        self.texts(keys, read)
            .map_err(|(key, why)| ManyFailed::Corrupt(self.corrupt(key, &why)))
    }

    /// The live values among `found` (`(index into keys, stored bytes)`),
    /// decoded into one buffer: the clock is read once, and no value
    /// allocates. The error names the first key whose value is not in the
    /// stored format, and why.
    fn texts<'k, K: AsRef<str>, B: AsRef<[u8]>>(
        &self,
        keys: &'k [K],
        found: Vec<(usize, Option<B>)>,
    ) -> std::result::Result<ValueTexts, (&'k str, String)> {
        let total = found
            .iter()
            .map(|(_, b)| b.as_ref().map_or(0, |b| b.as_ref().len()))
            .sum();
        let now = self.now();
        let mut buffer = Vec::with_capacity(total);
        let mut spans = vec![None; keys.len()];
        for (i, bytes) in found {
            let (Some(bytes), Some(span)) = (bytes, spans.get_mut(i)) else {
                continue;
            };
            let start = buffer.len();
            match format::decode_into(bytes.as_ref(), &mut buffer) {
                Ok(expires_at) if format::is_expired(expires_at, now) => buffer.truncate(start),
                Ok(_) => *span = Some((start, buffer.len())),
                Err(why) => return Err((keys[i].as_ref(), why)),
            }
        }
        ValueTexts::from_parts(buffer, spans).ok_or_else(|| {
            (
                keys.first().map_or("", |k| k.as_ref()),
                "internal error: the decoded texts are not UTF-8".to_owned(),
            )
        })
    }

    /// Stores every `(key, json)` of `entries` for `ttl`: one write batch for
    /// the values and one for their index entries (index first, as in
    /// [`set`](Self::set)), under the stripes of all the keys.
    pub(crate) fn set_many(&self, entries: &[(Arc<str>, String)], ttl: Option<u64>) -> Result<()> {
        self.set_many_with(entries, ttl, Wait::Yes)
            .unwrap_or_else(|| Err(self.refused("set_many")))
    }

    /// [`set_many`](Self::set_many) on the caller's thread when it can be
    /// done without waiting (see [`try_set`](Self::try_set)); `None` hands it
    /// to the pool.
    pub(crate) fn try_set_many(
        &self,
        entries: &[(Arc<str>, String)],
        ttl: Option<u64>,
    ) -> Option<Result<()>> {
        self.set_many_with(entries, ttl, Wait::No)
    }

    fn set_many_with(
        &self,
        entries: &[(Arc<str>, String)],
        ttl: Option<u64>,
        wait: Wait,
    ) -> Option<Result<()>> {
        let opts = self.writes(wait)?;
        let Some((first, _)) = entries.first() else {
            return Some(Ok(()));
        };
        let expires_at = format::expires_at(self.now(), ttl);
        let mut values = WriteBatch::default();
        for (key, json) in entries {
            values.put(key.as_bytes(), format::encode(json, expires_at));
        }
        let _shared = self
            .stripes
            .shared(entries.iter().map(|(k, _)| k.as_bytes()), wait)?;
        match self.db.write_opt(values, &opts.values) {
            Ok(()) => {
                if expires_at >= 0 {
                    let keys = entries
                        .iter()
                        .map(|(k, _)| index_key(expires_at as u64, k.as_bytes()));
                    self.index_later(keys, opts);
                }
                Some(Ok(()))
            }
            Err(e) if would_stall(&e) => None,
            Err(e) => Some(Err(self.db_error("set_many write", first, e))),
        }
    }

    /// Queues index entries of values just written; writes the waiting
    /// ones when they are due (see [`PendingIndex`]). Never fails the write
    /// whose entries these are: an index write that fails or would stall
    /// leaves its entries waiting for the next try (at the latest the next
    /// sweep's, which waits and reports a failure).
    fn index_later(&self, keys: impl IntoIterator<Item = Vec<u8>>, opts: &Writes) {
        if let Some(due) = self.pending.add(keys) {
            // A failure is logged and its entries wait (see above).
            let _ = self.write_index(due, &opts.index);
        }
    }

    /// Writes index entries taken from [`PendingIndex`] as one batch; on
    /// failure they wait again, and the error is returned.
    fn write_index(
        &self,
        keys: Vec<Vec<u8>>,
        opts: &WriteOptions,
    ) -> std::result::Result<(), rocksdb::Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for k in &keys {
            batch.put(k, []);
        }
        self.index.write_opt(batch, opts).inspect_err(|e| {
            let given_up = self.pending.put_back(keys);
            if !would_stall(e) {
                tracing::warn!(
                    "RocksDB expiry index write in {} failed (the entries wait for the next \
                     try): {e}",
                    self.path.join(INDEX_DIR).display()
                );
            }
            if given_up > 0 {
                tracing::warn!(
                    "{given_up} expiry index entries in {} given up after failed writes; \
                     the compaction filter removes their values once expired",
                    self.path.join(INDEX_DIR).display()
                );
            }
        })
    }

    /// Deletes `keys`; answers how many held a live value (a key named twice
    /// counts once).
    pub(crate) fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        self.delete_many_with(keys, Wait::Yes)
            .unwrap_or_else(|| Err(self.refused("delete")))
    }

    /// [`delete_many`](Self::delete_many) on the caller's thread when it can
    /// be done without waiting; `None` hands it to the pool: as for
    /// [`try_set`](Self::try_set), and also when telling whether a key held a
    /// live value needs a file read (memory answers only).
    pub(crate) fn try_delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Option<Result<u64>> {
        self.delete_many_with(keys, Wait::No)
    }

    fn delete_many_with<K: AsRef<str>>(&self, keys: &[K], wait: Wait) -> Option<Result<u64>> {
        let opts = self.writes(wait)?;
        let mut unique: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        unique.sort_unstable();
        unique.dedup();
        let Some(first) = unique.first().copied() else {
            return Some(Ok(0));
        };
        let _exclusive = self
            .stripes
            .exclusive(unique.iter().map(|k| k.as_bytes()), wait)?;
        let cf = self
            .db
            .cf_handle(DEFAULT_COLUMN_FAMILY_NAME)
            .expect("the default column family always exists");
        let read = |ro: &ReadOptions| {
            self.db
                .batched_multi_get_cf_opt(cf, unique.iter().map(|k| k.as_bytes()), true, ro)
        };
        let found = match wait {
            Wait::Yes => read(&ReadOptions::default()),
            Wait::No => MEMORY_ONLY.with(read),
        };
        let now = self.now();
        let mut existed = 0;
        let mut batch = WriteBatch::default();
        for (key, read) in unique.iter().zip(found) {
            let stored = match read {
                Ok(stored) => stored,
                // Not in memory: the pool reads it from the files.
                Err(e) if wait == Wait::No && e.kind() == rocksdb::ErrorKind::Incomplete => {
                    return None;
                }
                Err(e) => return Some(Err(self.db_error("get", key, e))),
            };
            if let Some(bytes) = stored
                // A value in a foreign format is still a value: deleting it is how to fix it.
                && format::decode(&bytes).map_or(true, |e| !e.is_expired(now))
            {
                existed += 1;
            }
            batch.delete(key.as_bytes());
        }
        match self.db.write_opt(batch, &opts.values) {
            Ok(()) => Some(Ok(existed)),
            Err(e) if would_stall(&e) => None,
            Err(e) => Some(Err(self.db_error("delete", first, e))),
        }
    }

    /// Makes RocksDB stop every write (`on`), as it does when level 0 has
    /// too many files, or lets them go again (tests of the in-place write's
    /// fallback only). Stopping flushes the memtable into one level-0 file
    /// and lowers the stop trigger to one file, with no compaction to clear
    /// it; a blocking write then waits and a `no_slowdown` write answers
    /// `Incomplete` until the defaults are back.
    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn inject_write_stall(&self, on: bool) -> Result<()> {
        let fail = |e| {
            KeystoreError::new(
                ErrorKind::Backend,
                format!(
                    "injecting a write stall into {} failed",
                    self.path.display()
                ),
            )
            .with_source(e)
        };
        if on {
            // A flush that would itself stop writes waits for compaction:
            // flush before lowering the triggers. (The marker makes the
            // memtable non-empty; it is deleted when the stall ends.)
            self.db
                .put_opt(b"objdatakey-stall", b"", &self.waiting.values)
                .map_err(fail)?;
            self.db.flush().map_err(fail)?;
            self.db
                .set_options(&[
                    ("level0_file_num_compaction_trigger", "1000"),
                    ("level0_slowdown_writes_trigger", "1"),
                    ("level0_stop_writes_trigger", "1"),
                ])
                .map_err(fail)?;
        } else {
            self.db
                .set_options(&[
                    ("level0_stop_writes_trigger", "36"),
                    ("level0_slowdown_writes_trigger", "20"),
                    ("level0_file_num_compaction_trigger", "4"),
                ])
                .map_err(fail)?;
            self.db.delete(b"objdatakey-stall").map_err(fail)?;
        }
        Ok(())
    }

    /// RocksDB's own count of write calls (write batches) and of keys
    /// written to the values since the database was opened (tests of the
    /// group commit only: fewer calls than keys means SETs went as groups).
    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn writes_and_keys(&self) -> Result<(u64, u64)> {
        let stats = self
            .db
            .property_value("rocksdb.dbstats")
            .map_err(|e| self.db_error("stats read", "", e))?
            .unwrap_or_default();
        parse_writes_and_keys(&stats).ok_or_else(|| {
            KeystoreError::new(
                ErrorKind::Backend,
                format!("no `Cumulative writes` line in RocksDB's dbstats: {stats}"),
            )
        })
    }

    /// The write options for `wait`; `None` when writes may not be done
    /// without waiting (`sync_writes`).
    fn writes(&self, wait: Wait) -> Option<&Writes> {
        match wait {
            Wait::Yes => Some(&self.waiting),
            Wait::No => self.no_wait.as_ref(),
        }
    }

    /// A waiting write that answered "would wait": never happens (only
    /// `no_slowdown` writes get `Incomplete`, and waiting locks always
    /// lock), but it is an error, not a panic, if RocksDB ever says so.
    fn refused(&self, what: &str) -> KeystoreError {
        KeystoreError::new(
            ErrorKind::Backend,
            format!(
                "RocksDB {what} in {} was refused as a write stall although it was allowed \
                 to wait; retry the call, and report it if it persists",
                self.path.display()
            ),
        )
    }

    /// Deletes every key that starts with `prefix` (`""`: every key, and the
    /// whole expiry index) with one range deletion; answers how many live
    /// values were removed. Their index entries stay until the sweep meets
    /// them (it drops entries whose value is gone): the index is ordered by
    /// expiry, not by name, so it has no range to delete by prefix.
    pub(crate) fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let fail = |e| {
            KeystoreError::new(
                ErrorKind::Backend,
                format!(
                    "RocksDB delete of the keys starting with {prefix:?} in {} failed",
                    self.path.display()
                ),
            )
            .with_source(e)
        };
        let from = prefix.as_bytes();
        let mut ro = ReadOptions::default();
        let upper = successor(from);
        if let Some(u) = &upper {
            ro.set_iterate_upper_bound(u.clone());
        }
        let now = self.now();
        let (mut live, mut last) = (0u64, None::<Box<[u8]>>);
        for item in self
            .db
            .iterator_opt(IteratorMode::From(from, Direction::Forward), ro)
        {
            let (k, v) = item.map_err(fail)?;
            if format::decode(&v).map_or(true, |e| !e.is_expired(now)) {
                live += 1;
            }
            last = Some(k);
        }
        let Some(last) = last else {
            return Ok(0);
        };
        // Up to the prefix's successor, or (no successor: the empty prefix)
        // just past the last key seen; a key written after the scan and
        // sorting past it is a write that came after the clear.
        let to = upper.unwrap_or_else(|| {
            let mut t = last.to_vec();
            t.push(0);
            t
        });
        let mut batch = WriteBatch::default();
        batch.delete_range(from, &to[..]);
        self.db
            .write_opt(batch, &self.waiting.values)
            .map_err(fail)?;
        if prefix.is_empty() {
            let mut index = WriteBatch::default();
            index.delete_range(&INDEX_PREFIX[..], &[0xFF, b'x' + 1][..]);
            self.index.write(index).map_err(fail)?;
        }
        Ok(live)
    }

    /// The remaining lifetime of `key`: `None` when missing or expired,
    /// [`Ttl::Never`] for a value without expiry, else the whole seconds
    /// left, rounded down but at least 1 while the value lives. (Expiry is
    /// stored rounded up to a whole second, so right after a write with
    /// `EX n` this answers `n`, as Redis does.)
    /// The JSON text stored under `key` and its remaining lifetime (`None`:
    /// never expires); `None` when missing or expired.
    pub(crate) fn entry(&self, key: &str) -> Result<Option<Stored>> {
        let Some(bytes) = self.stored(key)? else {
            return Ok(None);
        };
        self.live_entry(key, &bytes)
    }

    /// [`entry`](Self::entry) from memory only (see
    /// [`get_in_memory`](Self::get_in_memory)).
    pub(crate) fn entry_in_memory(&self, key: &str) -> Option<Result<Option<Stored>>> {
        match MEMORY_ONLY.with(|ro| self.db.get_pinned_opt(key.as_bytes(), ro)) {
            Ok(None) => Some(Ok(None)),
            Ok(Some(bytes)) => Some(self.live_entry(key, &bytes)),
            Err(_) => None,
        }
    }

    /// A stored envelope's data and remaining lifetime, or `None` when it
    /// has expired.
    fn live_entry(&self, key: &str, bytes: &[u8]) -> Result<Option<Stored>> {
        let entry = format::decode(bytes).map_err(|why| self.corrupt(key, &why))?;
        let now = self.now();
        if entry.is_expired(now) {
            return Ok(None);
        }
        let left = (entry.expires_at >= 0.0)
            .then(|| Duration::from_secs_f64((entry.expires_at - now).clamp(0.0, 1e12)));
        Ok(Some((entry.data, left)))
    }

    pub(crate) fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        let Some(bytes) = self.stored(key)? else {
            return Ok(None);
        };
        let entry = format::decode(&bytes).map_err(|why| self.corrupt(key, &why))?;
        let now = self.now();
        Ok(if entry.expires_at < 0.0 {
            Some(Ttl::Never)
        } else if entry.is_expired(now) {
            None
        } else {
            Some(Ttl::Seconds(
                ((entry.expires_at - now).floor() as u64).max(1),
            ))
        })
    }

    /// Stores `json` under `key`; `ttl` in seconds, `None` for never. Waits
    /// for its stripe and through RocksDB's write stalls: a pool worker's call.
    pub(crate) fn set(&self, key: &str, json: &str, ttl: Option<u64>) -> Result<()> {
        let _shared = self.stripes.shared_one(key.as_bytes(), Wait::Yes);
        self.put_entry(key, json, ttl, &self.waiting)
            .map_err(|e| self.db_error("write", key, e))
    }

    /// [`set`](Self::set) on the caller's thread when it can be done without
    /// waiting; `None` hands it to the pool: writes are fsynced
    /// (`sync_writes`), a sweep or delete holds the key's stripe, or RocksDB
    /// answered `Incomplete` (it would delay or stop the write: too many
    /// level-0 files, memtables waiting for a flush, pending compaction).
    ///
    /// A refused write wrote nothing (its index entry is queued only after
    /// the value went in); the pool's write then does it all.
    pub(crate) fn try_set(&self, key: &str, json: &str, ttl: Option<u64>) -> Option<Result<()>> {
        let opts = self.no_wait.as_ref()?;
        let _shared = self.stripes.shared_one(key.as_bytes(), Wait::No)?;
        match self.put_entry(key, json, ttl, opts) {
            Ok(()) => Some(Ok(())),
            Err(e) if would_stall(&e) => None,
            Err(e) => Some(Err(self.db_error("write", key, e))),
        }
    }

    /// [`try_set`](Self::try_set) for a caller on an async thread, in a
    /// group with the SETs of concurrent callers (see
    /// [`group`](super::group)): written now when no other in-place write is
    /// under way, else joined to the waiting group, to be answered by
    /// [`Member::answer`] with [`write_group`](Self::write_group). `None`
    /// hands the SET to the pool, as `try_set` does.
    pub(crate) fn set_or_join(
        &self,
        key: &Arc<str>,
        json: &str,
        ttl: Option<u64>,
    ) -> Option<SetStarted> {
        self.no_wait.as_ref()?;
        let entry = self.group.enter(|| {
            let expires_at = format::expires_at(self.now(), ttl);
            (key.clone(), format::encode(json, expires_at), expires_at)
        });
        match entry {
            Entry::Alone(_writing) => self.try_set(key, json, ttl).map(SetStarted::Written),
            Entry::Joined(member) => Some(SetStarted::Joined(member)),
        }
    }

    /// Writes the waiting group of SETs, if any, as one `no_slowdown` batch
    /// under the stripes of its keys, and answers each member (see
    /// [`group`](super::group) for what each is told).
    pub(crate) fn write_group(&self) {
        // Only SETs that may be written without waiting join (`set_or_join`).
        let Some(opts) = self.no_wait.as_ref() else {
            return;
        };
        let Some((mut taken, _writing)) = self.group.take() else {
            return;
        };
        taken.retain(|q| !q.abandoned());
        // In the order they joined: two SETs of one key keep their order.
        // (Sorting the keys first is no faster.)
        let (_shared, free) = self
            .stripes
            .shared_where_free(taken.iter().map(|q| q.key.as_bytes()));
        let (members, busy): (Vec<_>, Vec<_>) = taken
            .into_iter()
            .partition(|q| self.stripes.has(&free, q.key.as_bytes()));
        busy.into_iter().for_each(|q| q.answer(None));
        let mut batch = WriteBatch::default();
        for q in &members {
            batch.put(q.key.as_bytes(), &q.value);
        }
        match self.db.write_opt(batch, &opts.values) {
            Ok(()) => {
                let indexed = members.iter().filter(|q| q.expires_at >= 0);
                self.index_later(
                    indexed.map(|q| index_key(q.expires_at as u64, q.key.as_bytes())),
                    opts,
                );
                members.into_iter().for_each(|q| q.answer(Some(Ok(()))));
            }
            Err(e) if would_stall(&e) => members.into_iter().for_each(|q| q.answer(None)),
            Err(e) => members.into_iter().for_each(|q| {
                let failed = self.db_error("write", &q.key, e.clone());
                q.answer(Some(Err(failed)));
            }),
        }
    }

    /// The value, written with `opts`, then its index entry (with a TTL)
    /// queued (the caller holds the key's stripe); only the value's write
    /// can fail.
    fn put_entry(
        &self,
        key: &str,
        json: &str,
        ttl: Option<u64>,
        opts: &Writes,
    ) -> std::result::Result<(), rocksdb::Error> {
        let expires_at = format::expires_at(self.now(), ttl);
        let value = format::encode(json, expires_at);
        self.db.put_opt(key.as_bytes(), &value, &opts.values)?;
        // Never fsynced, and written a batch at a time: the compaction
        // filter is its backstop (see the module docs).
        if expires_at >= 0 {
            self.index_later([index_key(expires_at as u64, key.as_bytes())], opts);
        }
        Ok(())
    }

    /// Deletes `key`; answers whether a live (unexpired) value was there.
    pub(crate) fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key])? > 0)
    }

    /// [`delete`](Self::delete) on the caller's thread when it can be done
    /// without waiting (see [`try_delete_many`](Self::try_delete_many)).
    pub(crate) fn try_delete(&self, key: &str) -> Option<Result<bool>> {
        Some(self.try_delete_many(&[key])?.map(|n| n > 0))
    }

    /// Health check: the database answers a read.
    pub(crate) fn ping(&self) -> Result<()> {
        self.db.get_pinned(INDEX_PREFIX).map(|_| ()).map_err(|e| {
            KeystoreError::new(
                ErrorKind::Backend,
                format!(
                    "RocksDB database at {} is not readable",
                    self.path.display()
                ),
            )
            .with_source(e)
        })
    }

    /// Removes up to `limit` expired entries, in expiry order.
    pub(crate) fn sweep(&self, limit: usize) -> Result<SweepOutcome> {
        // Every entry of a value written before the sweep is in the index.
        self.write_index(self.pending.take(), &self.waiting.index)
            .map_err(|e| self.sweep_error(e))?;
        let now = self.now();
        let mut candidates: Vec<(Box<[u8]>, u64)> = Vec::new();
        let mut more = false;
        let mut cursor = self.cursor.lock();
        let start: Vec<u8> = match &cursor.last {
            // The clock went back (manual clocks do): start over.
            Some((_, exp)) if (*exp as f64) > now => INDEX_PREFIX.to_vec(),
            Some((key, _)) if cursor.open => {
                // Just after `key`: the smallest key greater than it.
                let mut k = key.clone();
                k.push(0);
                k
            }
            Some((_, exp)) => index_key(*exp, b""),
            None => INDEX_PREFIX.to_vec(),
        };
        // Entries expiring later than now are never taken: bound the iterator
        // there so it does not even step onto them.
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(index_key((now.floor() as u64).saturating_add(1), b""));
        let iter = self
            .index
            .iterator_opt(IteratorMode::From(&start, Direction::Forward), ro);
        for item in iter {
            let (k, _) = item.map_err(|e| self.sweep_error(e))?;
            let Some((exp, _)) = parse_index_key(&k) else {
                break; // past the index prefix
            };
            if !format::is_expired(exp as f64, now) {
                break;
            }
            if candidates.len() == limit {
                more = true;
                break;
            }
            candidates.push((k, exp));
        }
        let mut out = SweepOutcome {
            more,
            scanned: candidates.len() as u64,
            ..SweepOutcome::default()
        };
        if let Some((k, exp)) = candidates.last() {
            cursor.last = Some((k.to_vec(), *exp));
        }
        cursor.open = more;
        drop(cursor);
        if !candidates.is_empty() {
            self.delete_expired(&candidates, now, &mut out)?;
        }
        if !more {
            // The index is done: what it cannot name (entries written without
            // an index entry) is the compaction filter's, reported here.
            self.compact_if_due(now);
            out.removed += self.filter_dropped.swap(0, Ordering::Relaxed);
        }
        // Taken last, so calls made while this batch ran count too.
        out.contended = self.foreground.take();
        Ok(out)
    }

    /// Notes a foreground call (anything but a sweep): the janitor rests
    /// between sweep batches only while callers use the store.
    #[inline]
    pub(crate) fn note_foreground(&self) {
        self.foreground.note();
    }

    /// Deletes the values of `candidates` (index entries that have expired)
    /// that still carry that expiry, and the index entries themselves.
    fn delete_expired(
        &self,
        candidates: &[(Box<[u8]>, u64)],
        now: f64,
        out: &mut SweepOutcome,
    ) -> Result<()> {
        // Lock every stripe the batch touches, then check and delete.
        let _exclusive = self.stripes.exclusive(
            candidates
                .iter()
                .filter_map(|(k, _)| parse_index_key(k).map(|(_, key)| key)),
            Wait::Yes,
        );
        let (mut values, mut index) = (WriteBatch::default(), WriteBatch::default());
        for (idx, exp) in candidates {
            let Some((_, key)) = parse_index_key(idx) else {
                continue;
            };
            if let Some(bytes) = self.db.get_pinned(key).map_err(|e| self.sweep_error(e))? {
                // Delete the value only if it is still the one this entry indexes.
                if let Ok(entry) = format::decode(&bytes)
                    && entry.expires_at >= 0.0
                    && entry.expires_at as u64 == *exp
                    && entry.is_expired(now)
                {
                    values.delete(key);
                    out.removed += 1;
                }
            }
            index.delete(idx);
        }
        // Values first: a crash in between leaves index entries to sweep again.
        self.db.write(values).map_err(|e| self.sweep_error(e))?;
        self.index.write(index).map_err(|e| self.sweep_error(e))
    }

    fn sweep_error(&self, e: rocksdb::Error) -> KeystoreError {
        KeystoreError::new(
            ErrorKind::Backend,
            format!("RocksDB expiry sweep in {} failed", self.path.display()),
        )
        .with_source(e)
    }
}

impl Drop for RocksStore {
    /// Writes the index entries still waiting, so a closed database has
    /// every one (the databases close after this, with the fields).
    fn drop(&mut self) {
        let _ = self.write_index(self.pending.take(), &self.waiting.index);
    }
}

/// The write calls and keys of the `Cumulative writes: 12 writes, 3K keys,
/// …` line of RocksDB's `rocksdb.dbstats` (counts of 10 000 and more come
/// rounded down with a K, M or G).
#[cfg(any(test, feature = "fault-injection"))]
fn parse_writes_and_keys(stats: &str) -> Option<(u64, u64)> {
    let line = stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("Cumulative writes: "))?;
    let count = |field: &str, unit: &str| -> Option<u64> {
        let n = field.trim().strip_suffix(unit)?.trim();
        let (digits, scale) = match n.as_bytes().last()? {
            b'K' => (&n[..n.len() - 1], 1_000),
            b'M' => (&n[..n.len() - 1], 1_000_000),
            b'G' => (&n[..n.len() - 1], 1_000_000_000),
            _ => (n, 1),
        };
        Some(digits.parse::<u64>().ok()? * scale)
    };
    let mut fields = line.split(',');
    Some((
        count(fields.next()?, "writes")?,
        count(fields.next()?, "keys")?,
    ))
}

/// The smallest byte string greater than every string that starts with
/// `prefix`; `None` when there is none (`prefix` empty or all `0xFF`).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let end = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut s = prefix[..=end].to_vec();
    s[end] += 1;
    Some(s)
}

fn index_key(expires_at: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(INDEX_PREFIX.len() + 8 + key.len());
    k.extend_from_slice(&INDEX_PREFIX);
    k.extend_from_slice(&expires_at.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn parse_index_key(k: &[u8]) -> Option<(u64, &[u8])> {
    let rest = k.strip_prefix(&INDEX_PREFIX[..])?;
    let (exp, key) = rest.split_at_checked(8)?;
    Some((u64::from_be_bytes(exp.try_into().ok()?), key))
}

/// The highest SST `format_version` the database's newest `OPTIONS` file
/// records (what the last opener wrote with); `None` for a new database or
/// an unreadable file.
fn written_format_version(path: &Path) -> Option<i32> {
    let newest = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let n: u64 = name.strip_prefix("OPTIONS-")?.parse().ok()?;
            Some((n, name))
        })
        .max()?;
    let text = std::fs::read_to_string(path.join(newest.1)).ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("format_version=")?.parse().ok())
        .max()
}

/// Turns an open failure into an error that says what to do; a held lock gets
/// its own kind and names the lock file.
/// Why RocksDB refused to open a database, read from its error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenFailure {
    /// This process already holds the LOCK file (another handle).
    LockedHere,
    /// Another process holds the LOCK file.
    LockedElsewhere,
    /// Anything else (corruption, permissions, a missing directory...).
    Other,
}

/// Classifies RocksDB's open error text. Only a failure to take the `LOCK`
/// file counts as locked: RocksDB words it `lock hold by current process,
/// ...: <path>/LOCK: No locks available` (this process) and `IO error: While
/// lock file: <path>/LOCK: Resource temporarily unavailable` (another one;
/// on Windows `Failed to create lock file: <path>/LOCK`). Texts that merely
/// contain "lock" (`block checksum mismatch`) are other failures.
fn classify_open_error(text: &str) -> OpenFailure {
    // The path RocksDB names after `marker`, ending in the LOCK file.
    let names_lock_file = |marker: &str| {
        text.find(marker).is_some_and(|at| {
            let rest = &text[at + marker.len()..];
            let file = rest.split(": ").next().unwrap_or(rest).trim_end();
            file == "LOCK" || file.ends_with("/LOCK") || file.ends_with("\\LOCK")
        })
    };
    if text.contains("lock hold by current process") {
        OpenFailure::LockedHere
    } else if names_lock_file("While lock file: ")
        || names_lock_file("Failed to create lock file: ")
    {
        OpenFailure::LockedElsewhere
    } else {
        OpenFailure::Other
    }
}

fn open_error(path: &Path, e: rocksdb::Error) -> KeystoreError {
    open_error_text(path, &e.into_string())
}

fn open_error_text(path: &Path, text: &str) -> KeystoreError {
    let lock = path.join("LOCK");
    match classify_open_error(text) {
        OpenFailure::LockedHere => KeystoreError::new(
            ErrorKind::Locked,
            format!(
                "RocksDB database at {} is locked ({}): this process already has it open \
                 (another Keystore handle); share that handle instead of opening it twice",
                path.display(),
                lock.display()
            ),
        ),
        OpenFailure::LockedElsewhere => KeystoreError::new(
            ErrorKind::Locked,
            format!(
                "RocksDB database at {} is locked ({}): another process has the database open; \
                 stop that process or point keystore.rocksdb.path elsewhere",
                path.display(),
                lock.display()
            ),
        )
        .with_source(text),
        OpenFailure::Other => KeystoreError::new(
            ErrorKind::Backend,
            format!("cannot open RocksDB database at {}", path.display()),
        )
        .with_source(text),
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod group_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sweep_batch_reports_whether_callers_used_the_store_since_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::default().rocksdb;
        cfg.path = dir.path().to_path_buf();
        let clock = Clock::manual();
        let (store, _closed) = RocksStore::open(&cfg, clock.clone()).expect("open");
        for i in 0..200 {
            store
                .set(&format!("k{i}"), "1", Some(1))
                .expect("set with a TTL");
        }
        clock.advance(Duration::from_secs(5));
        // Nothing noted the store's use (the engine and the pool do that).
        let first = store.sweep(64).expect("sweep");
        assert!(first.more && !first.contended);
        store.note_foreground();
        store.note_foreground();
        let second = store.sweep(64).expect("sweep");
        assert!(
            second.more && second.contended,
            "two calls since the last batch"
        );
        let third = store.sweep(64).expect("sweep");
        assert!(!third.contended, "the second batch took them");
        assert_eq!(first.removed + second.removed + third.removed, 192);
    }

    #[test]
    fn a_prefix_successor_bounds_exactly_the_keys_with_the_prefix() {
        assert_eq!(successor(b"user:"), Some(b"user;".to_vec()));
        assert_eq!(successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff"), None);
        assert_eq!(successor(b""), None);
        let s = successor("ü".as_bytes()).unwrap();
        assert!("ü".as_bytes() < &s[..] && "üz".as_bytes() < &s[..] && "ý".as_bytes() >= &s[..]);
    }

    #[test]
    fn only_a_failure_to_take_the_lock_file_is_reported_as_locked() {
        let held_elsewhere =
            "IO error: While lock file: /data/db/LOCK: Resource temporarily unavailable";
        let held_here = "IO error: lock hold by current process, acquire time 1700000000 \
                         acquiring thread 140: /data/db/LOCK: No locks available";
        assert_eq!(
            classify_open_error(held_elsewhere),
            OpenFailure::LockedElsewhere
        );
        assert_eq!(
            classify_open_error("IO error: Failed to create lock file: C:\\db\\LOCK: denied"),
            OpenFailure::LockedElsewhere
        );
        assert_eq!(classify_open_error(held_here), OpenFailure::LockedHere);
        for other in [
            "Corruption: block checksum mismatch: stored = 1, computed = 2 in /data/db/000012.sst",
            "Corruption: Bad table magic number: blocks of a locked region",
            "IO error: No such file or directory: While opening a file for sequentially reading: /data/db/CURRENT",
            "Invalid argument: Column family not found: LOCKED",
            "IO error: While lock file: /data/db/LOCKBOX: Permission denied",
            "IO error: While open a file for random read: /data/db/LOCK.old: Permission denied",
        ] {
            assert_eq!(classify_open_error(other), OpenFailure::Other, "{other}");
        }

        let path = Path::new("/data/db");
        let e = open_error_text(path, held_elsewhere);
        assert_eq!(e.kind(), ErrorKind::Locked);
        assert!(
            e.to_string()
                .contains("another process has the database open"),
            "{e}"
        );
        let e = open_error_text(path, "Corruption: block checksum mismatch: in 000012.sst");
        assert_eq!(e.kind(), ErrorKind::Backend);
        let text = e.to_string();
        assert!(
            !text.contains("another process") && !text.contains("locked"),
            "{text}"
        );
        assert!(
            text.contains("block checksum mismatch") && text.contains("/data/db"),
            "{text}"
        );
    }

    #[test]
    fn index_keys_sort_by_expiry_and_parse_back() {
        let a = index_key(5, b"zzz");
        let b = index_key(6, b"aaa");
        assert!(a < b);
        assert_eq!(parse_index_key(&a), Some((5, &b"zzz"[..])));
        assert_eq!(parse_index_key(b"\xffx\x00"), None);
        assert_eq!(parse_index_key(b"plain"), None);
        // Index keys sort after any UTF-8 name.
        assert!(index_key(0, b"") > "\u{10FFFF}".as_bytes().to_vec());
    }
}
