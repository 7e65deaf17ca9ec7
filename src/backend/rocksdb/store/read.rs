//! Reads: one key or many, from memory only on the caller's thread or from
//! the files on a pool worker, never answering an expired value.

use std::time::Duration;

use rocksdb::{DEFAULT_COLUMN_FAMILY_NAME, ReadOptions};

use super::index::INDEX_PREFIX;
use super::{MEMORY_ONLY, RocksStore};
use crate::backend::{Stored, ValueTexts};
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format::{self, Json};
use crate::ttl::Ttl;

thread_local! {
    /// The text of the last value read from memory on this thread, kept
    /// for the next read's (see [`RocksStore::get_in_memory`]). Taken while
    /// in use: a read nested in another's decoding gets a new buffer.
    static TEXT: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Largest [`TEXT`] buffer a thread keeps (a larger value's text is freed
/// after its read): a thread's memory is not held by one outsized value.
const TEXT_KEPT: usize = 64 * 1024;

/// Why a batch read failed.
enum ManyFailed<'k> {
    /// RocksDB could not read `key`.
    Read(&'k str, rocksdb::Error),
    /// A value not in the stored format, named in the error.
    Corrupt(KeystoreError),
}

impl RocksStore {
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

    /// The remaining lifetime of `key`: `None` when missing or expired,
    /// [`Ttl::Never`] for a value without expiry, else the whole seconds
    /// left, rounded down but at least 1 while the value lives. (Expiry is
    /// stored rounded up to a whole second, so right after a write with
    /// `EX n` this answers `n`, as Redis does.)
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

    /// Health check: the database answers a read.
    pub(crate) fn ping(&self) -> Result<()> {
        self.db.get_pinned(INDEX_PREFIX).map(|_| ()).map_err(|e| {
            KeystoreError::new(
                ErrorKind::Storage,
                format!(
                    "RocksDB database at {} is not readable",
                    self.path.display()
                ),
            )
            .with_source(e)
        })
    }
}
