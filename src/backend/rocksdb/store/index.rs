//! The expiry index's keys (`0xFF 'x' <expires_at> <key>`) and their
//! writes: queued with their values, written a batch at a time.

use rocksdb::{WriteBatch, WriteOptions};

use super::{RocksStore, Writes, would_stall};

/// Prefix of expiry index keys: `0xFF` cannot occur in UTF-8 names. Index
/// entries written by earlier versions sit under it in the default column
/// family; that is how they are found and moved.
pub(super) const INDEX_PREFIX: [u8; 2] = [0xFF, b'x'];
/// Subdirectory of the database directory holding the expiry index database.
pub(super) const INDEX_DIR: &str = "objdatakey-expiry";

impl RocksStore {
    /// Queues index entries of values just written; writes the waiting
    /// ones when they are due (see [`PendingIndex`](super::PendingIndex)).
    /// Never fails the write whose entries these are: an index write that
    /// fails or would stall leaves its entries waiting for the next try (at
    /// the latest the next sweep's, which waits and reports a failure).
    pub(super) fn index_later(&self, keys: impl IntoIterator<Item = Vec<u8>>, opts: &Writes) {
        if let Some(due) = self.pending.add(keys) {
            // A failure is logged and its entries wait (see above).
            let _ = self.write_index(due, &opts.index);
        }
    }

    /// Writes index entries taken from [`PendingIndex`](super::PendingIndex)
    /// as one batch; on failure they wait again, and the error is returned.
    pub(super) fn write_index(
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
}

pub(super) fn index_key(expires_at: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(INDEX_PREFIX.len() + 8 + key.len());
    k.extend_from_slice(&INDEX_PREFIX);
    k.extend_from_slice(&expires_at.to_be_bytes());
    k.extend_from_slice(key);
    k
}

pub(super) fn parse_index_key(k: &[u8]) -> Option<(u64, &[u8])> {
    let rest = k.strip_prefix(&INDEX_PREFIX[..])?;
    let (exp, key) = rest.split_at_checked(8)?;
    Some((u64::from_be_bytes(exp.try_into().ok()?), key))
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
