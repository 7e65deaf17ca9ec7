//! Opening the store: its options and compaction filter, the move of an
//! older database's expiry index to its own database, full compactions, and
//! open errors that say what to do.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, ColumnFamilyDescriptor, CompactOptions, DB,
    DEFAULT_COLUMN_FAMILY_NAME, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions,
};

use super::index::{INDEX_DIR, INDEX_PREFIX, parse_index_key};
use super::sweep::SweepCursor;
use super::{RocksStore, Writes};
use crate::backend::rocksdb::foreground::Foreground;
use crate::backend::rocksdb::group::WriteGroup;
use crate::backend::rocksdb::pending::PendingIndex;
use crate::backend::rocksdb::stripes::Stripes;
use crate::clock::Clock;
use crate::config::RocksDbConfig;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format;

/// Name of the compaction filter that drops expired envelopes (RocksDB
/// records it in the `OPTIONS` file).
const EXPIRED_FILTER: &str = "objdatakey.expired_envelopes";
/// Longest a file of the default column family goes without passing through
/// the compaction filter (RocksDB's `periodic_compaction_seconds`).
pub(super) const PERIODIC_COMPACTION: Duration = Duration::from_secs(24 * 3600);
/// Time (by the store's clock) between two full compactions started by sweeps.
pub(super) const FULL_COMPACTION_EVERY: Duration = Duration::from_secs(24 * 3600);
/// Index entries moved per write batch when migrating an old database.
const MIGRATE_BATCH: usize = 10_000;

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
                ErrorKind::Storage,
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
    pub(super) fn compact_if_due(&self, now: f64) -> bool {
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

/// Turns an open failure into an error that says what to do; a held lock gets
/// its own kind and names the lock file.
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
            ErrorKind::Storage,
            format!("cannot open RocksDB database at {}", path.display()),
        )
        .with_source(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(e.kind(), ErrorKind::Storage);
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
}
