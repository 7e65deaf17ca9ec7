//! Deleting every key that starts with a prefix, with one range deletion.

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};

use super::RocksStore;
use super::index::INDEX_PREFIX;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format;

impl RocksStore {
    /// Deletes every key that starts with `prefix` (`""`: every key, and the
    /// whole expiry index) with one range deletion; answers how many live
    /// values were removed. Their index entries stay until the sweep meets
    /// them (it drops entries whose value is gone): the index is ordered by
    /// expiry, not by name, so it has no range to delete by prefix.
    pub(crate) fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let fail = |e| {
            KeystoreError::new(
                ErrorKind::Storage,
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
}

/// The smallest byte string greater than every string that starts with
/// `prefix`; `None` when there is none (`prefix` empty or all `0xFF`).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let end = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut s = prefix[..=end].to_vec();
    s[end] += 1;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_successor_bounds_exactly_the_keys_with_the_prefix() {
        assert_eq!(successor(b"user:"), Some(b"user;".to_vec()));
        assert_eq!(successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff"), None);
        assert_eq!(successor(b""), None);
        let s = successor("ü".as_bytes()).unwrap();
        assert!("ü".as_bytes() < &s[..] && "üz".as_bytes() < &s[..] && "ý".as_bytes() >= &s[..]);
    }
}
