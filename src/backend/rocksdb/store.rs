//! The embedded RocksDB store: the stored envelope, per-entry expiry and the
//! expiry index the janitor sweeps.
//!
//! # Expiry index
//! Next to each value written with a TTL, the same atomic `WriteBatch` writes an
//! empty index entry `0xFF 'x' <expires_at: u64 big-endian> <key>`. UTF-8 never
//! contains the byte `0xFF`, so index keys can never collide with a name, and they
//! sort after every name (a Python iterator sees the names first). A sweep seeks to
//! the index prefix and walks it in expiry order until the first entry that has not
//! expired: its cost grows with the number of expired entries, not with the total.
//!
//! Overwrites and deletes leave their old index entry behind (no read before a
//! write); the sweep checks each entry against the current value and drops stale
//! ones. Values written by other programs without an index entry are never
//! returned once expired, but only a rewrite or delete removes them from disk.
//!
//! # Concurrency
//! Reads take no lock. A write and a sweep of the same key are serialised by one
//! of [`STRIPES`] mutexes (chosen by key hash), so a sweep can never delete a value
//! that was rewritten after the sweep read it.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, MutexGuard};
use rocksdb::{DB, Direction, IteratorMode, Options, ReadOptions, ReadTier, WriteBatch};

use crate::clock::Clock;
use crate::config::RocksDbConfig;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format;

/// Number of write-lock stripes: enough that unrelated writes rarely share one.
const STRIPES: usize = 64;
/// Prefix of expiry index keys: `0xFF` cannot occur in UTF-8 names.
const INDEX_PREFIX: [u8; 2] = [0xFF, b'x'];

/// An open RocksDB database plus what the engine needs around it.
pub(crate) struct RocksStore {
    db: DB,
    /// As configured (possibly relative), for messages.
    path: PathBuf,
    clock: Clock,
    /// Serialises writes and sweeps per key stripe (see the module docs).
    stripes: Box<[Mutex<()>]>,
    hasher: std::hash::RandomState,
    /// Where the next sweep batch starts. Deleted index entries stay in the
    /// database as tombstones until compaction; starting every batch at the
    /// front of the index would step over all of them again, making a large
    /// sweep quadratic. Only sweeps (one at a time, from the janitor) use it.
    cursor: Mutex<SweepCursor>,
    /// Dropped with the store: its receiver learns the database is closed, so
    /// shutdown can wait until the lock file is released.
    _closed: crossbeam_channel::Sender<()>,
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
    /// Expired values deleted.
    pub removed: u64,
    /// Index entries looked at (removed values plus stale entries).
    pub scanned: u64,
    /// More expired entries remain after this batch.
    pub more: bool,
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
        let mut opts = Options::default();
        opts.create_if_missing(cfg.create_if_missing);
        opts.set_compression_type(rocksdb::DBCompressionType::Snappy);
        opts.increase_parallelism(
            std::thread::available_parallelism()
                .map(|n| n.get() as i32)
                .unwrap_or(2),
        );
        let db = DB::open(&opts, &path).map_err(|e| open_error(&path, e))?;
        let (tx, rx) = crossbeam_channel::bounded(0);
        let stripes = (0..STRIPES).map(|_| Mutex::new(())).collect();
        Ok((
            RocksStore {
                db,
                path,
                clock,
                stripes,
                hasher: std::hash::RandomState::new(),
                cursor: Mutex::new(SweepCursor::default()),
                _closed: tx,
            },
            rx,
        ))
    }

    /// The database directory as configured.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn now(&self) -> f64 {
        self.clock.now_unix().as_secs_f64()
    }

    fn stripe(&self, key: &[u8]) -> usize {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        (h.finish() as usize) % STRIPES
    }

    fn lock(&self, key: &[u8]) -> MutexGuard<'_, ()> {
        self.stripes[self.stripe(key)].lock()
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

    /// The JSON text stored under `key`, or `None` when missing or expired.
    pub(crate) fn get(&self, key: &str) -> Result<Option<String>> {
        let Some(bytes) = self
            .db
            .get_pinned(key.as_bytes())
            .map_err(|e| self.db_error("get", key, e))?
        else {
            return Ok(None);
        };
        self.live_value(key, &bytes)
    }

    /// [`get`](Self::get), answered from memory only (memtables and block
    /// cache: `ReadTier::BlockCache` never reads a file). `None` when the
    /// answer would need disk I/O: the caller then queues the read on the
    /// worker pool. Safe to call on an async thread: it never blocks on I/O.
    pub(crate) fn get_in_memory(&self, key: &str) -> Option<Result<Option<String>>> {
        thread_local! {
            // Built once per thread: creating RocksDB read options allocates
            // a C++ object, a noticeable share of a warm read.
            static MEMORY_ONLY: ReadOptions = {
                let mut ro = ReadOptions::default();
                ro.set_read_tier(ReadTier::BlockCache);
                ro
            };
        }
        let read = MEMORY_ONLY.with(|ro| self.db.get_pinned_opt(key.as_bytes(), ro));
        match read {
            Ok(None) => Some(Ok(None)),
            Ok(Some(bytes)) => Some(self.live_value(key, &bytes)),
            // `Incomplete`: not in memory. Any other error: let the pool
            // read it the normal way and report it with full context.
            Err(_) => None,
        }
    }

    /// The data of a stored envelope, or `None` when it has expired.
    fn live_value(&self, key: &str, bytes: &[u8]) -> Result<Option<String>> {
        let entry = format::decode(bytes).map_err(|why| self.corrupt(key, &why))?;
        if entry.is_expired(self.now()) {
            return Ok(None);
        }
        Ok(Some(entry.data))
    }

    /// Stores `json` under `key`; `ttl` in seconds, `None` for never.
    pub(crate) fn set(&self, key: &str, json: &str, ttl: Option<u64>) -> Result<()> {
        let expires_at = format::expires_at(self.now(), ttl);
        let value = format::encode(json, expires_at);
        let mut batch = WriteBatch::default();
        batch.put(key.as_bytes(), &value);
        if expires_at >= 0 {
            batch.put(index_key(expires_at as u64, key.as_bytes()), []);
        }
        let _guard = self.lock(key.as_bytes());
        self.db
            .write(batch)
            .map_err(|e| self.db_error("write", key, e))
    }

    /// Deletes `key`; answers whether a live (unexpired) value was there.
    pub(crate) fn delete(&self, key: &str) -> Result<bool> {
        let _guard = self.lock(key.as_bytes());
        let existed = match self
            .db
            .get_pinned(key.as_bytes())
            .map_err(|e| self.db_error("get", key, e))?
        {
            None => false,
            // A value in a foreign format is still a value: deleting it is how to fix it.
            Some(bytes) => format::decode(&bytes).map_or(true, |e| !e.is_expired(self.now())),
        };
        self.db
            .delete(key.as_bytes())
            .map_err(|e| self.db_error("delete", key, e))?;
        Ok(existed)
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
            .db
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
        if candidates.is_empty() {
            return Ok(out);
        }
        // Lock every stripe the batch touches, in stripe order (sets hold at most
        // one stripe, so this order cannot deadlock), then check and delete.
        let mut stripes: Vec<usize> = candidates
            .iter()
            .filter_map(|(k, _)| parse_index_key(k).map(|(_, key)| self.stripe(key)))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<_> = stripes.iter().map(|&s| self.stripes[s].lock()).collect();
        let mut batch = WriteBatch::default();
        for (idx, exp) in &candidates {
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
                    batch.delete(key);
                    out.removed += 1;
                }
            }
            batch.delete(idx);
        }
        self.db.write(batch).map_err(|e| self.sweep_error(e))?;
        Ok(out)
    }

    fn sweep_error(&self, e: rocksdb::Error) -> KeystoreError {
        KeystoreError::new(
            ErrorKind::Backend,
            format!("RocksDB expiry sweep in {} failed", self.path.display()),
        )
        .with_source(e)
    }
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

/// Turns an open failure into an error that says what to do; a held lock gets
/// its own kind and names the lock file.
fn open_error(path: &Path, e: rocksdb::Error) -> KeystoreError {
    let text = e.to_string();
    let lock = path.join("LOCK");
    if text.contains("lock hold by current process") {
        KeystoreError::new(
            ErrorKind::Locked,
            format!(
                "RocksDB database at {} is locked ({}): this process already has it open \
                 (another Keystore handle); share that handle instead of opening it twice",
                path.display(),
                lock.display()
            ),
        )
    } else if text.contains("LOCK") || text.to_ascii_lowercase().contains("lock") {
        KeystoreError::new(
            ErrorKind::Locked,
            format!(
                "RocksDB database at {} is locked ({}): another process has the database open; \
                 stop that process or point keystore.rocksdb.path elsewhere",
                path.display(),
                lock.display()
            ),
        )
        .with_source(text)
    } else {
        KeystoreError::new(
            ErrorKind::Backend,
            format!("cannot open RocksDB database at {}", path.display()),
        )
        .with_source(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
