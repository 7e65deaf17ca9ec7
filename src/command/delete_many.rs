//! `delete_many`: removes many names in one round trip.

use std::sync::Arc;

use super::{Command, InPlace, WRITES, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// `UNLINK key…` (per hash slot), one write batch on RocksDB: how many
/// live values were removed.
pub(crate) struct DeleteMany {
    pub keys: Vec<Arc<str>>,
}

impl Command for DeleteMany {
    type Answer = u64;

    fn verb(&self) -> &'static str {
        "delete_many"
    }

    fn subject(&self) -> Subject {
        Subject::keys(&self.keys)
    }

    fn disabled(&self) -> Result<u64> {
        Ok(0)
    }

    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<u64> {
        InPlace::answered(store.try_delete_many(&self.keys))
    }

    fn on_rocks(&self, store: &RocksStore) -> Result<u64> {
        store.delete_many(&self.keys)
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<u64> {
        let target = direct.target();
        over_redis(self, direct, conn, deadline, WRITES, |c| {
            commands::delete_many(target, c, &self.keys, deadline)
        })
        .await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        Some(Touch::Forget(self.keys.clone()))
    }
}
