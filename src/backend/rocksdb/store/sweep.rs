//! The janitor's sweep: expired values deleted in expiry order, a batch at a
//! time, with what each batch did and where the next one starts.

use std::sync::atomic::Ordering;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use super::RocksStore;
use super::index::{INDEX_PREFIX, index_key, parse_index_key};
use crate::backend::rocksdb::stripes::Wait;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format;

/// The last index entry a sweep batch took, and whether its sweep goes on.
#[derive(Debug, Default)]
pub(super) struct SweepCursor {
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
            ErrorKind::Storage,
            format!("RocksDB expiry sweep in {} failed", self.path.display()),
        )
        .with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::Clock;

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
}
