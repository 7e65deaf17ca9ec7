//! Faults and counters for tests: a write stall injected into RocksDB, and
//! RocksDB's own count of write calls and keys written.

use super::RocksStore;
use crate::error::{ErrorKind, KeystoreError, Result};

impl RocksStore {
    /// Makes RocksDB stop every write (`on`), as it does when level 0 has
    /// too many files, or lets them go again (tests of the in-place write's
    /// fallback only). Stopping flushes the memtable into one level-0 file
    /// and lowers the stop trigger to one file, with no compaction to clear
    /// it; a blocking write then waits and a `no_slowdown` write answers
    /// `Incomplete` until the defaults are back.
    pub(crate) fn inject_write_stall(&self, on: bool) -> Result<()> {
        let fail = |e| {
            KeystoreError::new(
                ErrorKind::Storage,
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
    pub(crate) fn writes_and_keys(&self) -> Result<(u64, u64)> {
        let stats = self
            .db
            .property_value("rocksdb.dbstats")
            .map_err(|e| self.db_error("stats read", "", e))?
            .unwrap_or_default();
        parse_writes_and_keys(&stats).ok_or_else(|| {
            KeystoreError::new(
                ErrorKind::Storage,
                format!("no `Cumulative writes` line in RocksDB's dbstats: {stats}"),
            )
        })
    }
}

/// The write calls and keys of the `Cumulative writes: 12 writes, 3K keys,
/// …` line of RocksDB's `rocksdb.dbstats` (counts of 10 000 and more come
/// rounded down with a K, M or G).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_counts_are_read_from_rocksdb_stats() {
        let text = "** DB Stats **\nUptime(secs): 0.0 total, 0.0 interval\n\
                    Cumulative writes: 1234 writes, 5678 keys, 1000 commit groups, 1.2 writes per \
                    commit group, ingest: 0.00 GB, 0.00 MB/s\n";
        assert_eq!(parse_writes_and_keys(text), Some((1234, 5678)));
        let big = "Cumulative writes: 1234K writes, 5M keys, 1 commit groups";
        assert_eq!(parse_writes_and_keys(big), Some((1_234_000, 5_000_000)));
        assert_eq!(parse_writes_and_keys("no stats"), None);
    }
}
