//! Writes: SETs and DELETEs of one key or many, waiting on a pool worker or
//! in place on the caller's thread, and SETs written as a group.

use std::sync::Arc;

use rocksdb::{DEFAULT_COLUMN_FAMILY_NAME, ReadOptions, WriteBatch};

use super::index::index_key;
use super::{MEMORY_ONLY, RocksStore, Writes, would_stall};
use crate::backend::rocksdb::group::{Entry, Member};
use crate::backend::rocksdb::stripes::Wait;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format;

/// How a SET on the caller's thread started (see [`RocksStore::set_or_join`]).
pub(crate) enum SetStarted {
    /// Written alone, or failed.
    Written(Result<()>),
    /// Waiting in a group.
    Joined(Member),
}

impl RocksStore {
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
    /// [`group`](super::super::group)): written now when no other in-place
    /// write is under way, else joined to the waiting group, to be answered
    /// by [`Member::answer`] with [`write_group`](Self::write_group). `None`
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
    /// [`group`](super::super::group) for what each is told).
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
            ErrorKind::Storage,
            format!(
                "RocksDB {what} in {} was refused as a write stall although it was allowed \
                 to wait; retry the call, and report it if it persists",
                self.path.display()
            ),
        )
    }
}
