//! `delete_prefix` and `clear`: removes every name that starts with a prefix.

use std::sync::Arc;

use super::{Command, WRITES, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// Every key that starts with `prefix` (`""`: every key this keystore can
/// address): `SCAN MATCH` + `UNLINK` a batch at a time (on every master of
/// a cluster), one range deletion on RocksDB. Answers how many were removed.
pub(crate) struct DeletePrefix {
    pub prefix: Arc<str>,
}

impl Command for DeletePrefix {
    type Answer = u64;

    fn verb(&self) -> &'static str {
        if self.prefix.is_empty() {
            "clear"
        } else {
            "delete_prefix"
        }
    }

    fn subject(&self) -> Subject {
        if self.prefix.is_empty() {
            Subject::None
        } else {
            Subject::Prefix(self.prefix.clone())
        }
    }

    fn disabled(&self) -> Result<u64> {
        Ok(0)
    }

    fn on_rocks(&self, store: &RocksStore) -> Result<u64> {
        store.delete_prefix(&self.prefix)
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<u64> {
        over_redis(self, direct, conn, deadline, WRITES, |c| {
            commands::delete_prefix(c, &self.prefix)
        })
        .await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        Some(Touch::Prefix(self.prefix.clone()))
    }
}
