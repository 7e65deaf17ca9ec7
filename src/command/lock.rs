//! `lock` and `unlock`: the short cross-process lock of a `get_or_set` load.

use std::sync::Arc;

use super::{Command, WRITES, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// `SET key token NX PX ms`: whether this caller took the lock. RocksDB,
/// held by one process (its LOCK file keeps the others out), always grants it.
pub(crate) struct Lock {
    pub key: Arc<str>,
    pub token: Arc<str>,
    pub ms: u64,
}

impl Command for Lock {
    type Answer = bool;

    fn verb(&self) -> &'static str {
        "get_or_set lock"
    }

    fn subject(&self) -> Subject {
        Subject::Key(self.key.clone())
    }

    fn disabled(&self) -> Result<bool> {
        Ok(true)
    }

    fn on_rocks(&self, _store: &RocksStore) -> Result<bool> {
        Ok(true)
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<bool> {
        over_redis(self, direct, conn, deadline, WRITES, |c| {
            commands::lock(c, &self.key, &self.token, self.ms)
        })
        .await
    }

    // The lock's key is not a cached value: the tier never holds it.
    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}

/// Deletes `key` if it still holds `token` (a lock that expired and was
/// taken by another process is left to it).
pub(crate) struct Unlock {
    pub key: Arc<str>,
    pub token: Arc<str>,
}

impl Command for Unlock {
    type Answer = ();

    fn verb(&self) -> &'static str {
        "get_or_set unlock"
    }

    fn subject(&self) -> Subject {
        Subject::Key(self.key.clone())
    }

    fn disabled(&self) -> Result<()> {
        Ok(())
    }

    fn on_rocks(&self, _store: &RocksStore) -> Result<()> {
        Ok(())
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<()> {
        over_redis(self, direct, conn, deadline, WRITES, |c| {
            commands::unlock(c, &self.key, &self.token)
        })
        .await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}
