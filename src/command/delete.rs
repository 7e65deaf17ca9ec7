//! `delete`: removes one name.

use std::sync::Arc;

use super::{Command, InPlace, WRITES, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// `DEL key`: whether a live value was there.
pub(crate) struct Delete {
    pub key: Arc<str>,
}

impl Command for Delete {
    type Answer = bool;

    fn verb(&self) -> &'static str {
        "delete"
    }

    fn subject(&self) -> Subject {
        Subject::Key(self.key.clone())
    }

    fn disabled(&self) -> Result<bool> {
        Ok(false)
    }

    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<bool> {
        InPlace::answered(store.try_delete(&self.key))
    }

    fn on_rocks(&self, store: &RocksStore) -> Result<bool> {
        store.delete(&self.key)
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<bool> {
        over_redis(self, direct, conn, deadline, WRITES, |c| {
            commands::delete(c, &self.key)
        })
        .await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        Some(Touch::Forget(vec![self.key.clone()]))
    }
}
