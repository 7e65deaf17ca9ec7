//! `publish`: the in-process tier's invalidations, sent to the other
//! instances over pub/sub.

use std::sync::Arc;

use super::{Command, READS, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// `PUBLISH channel message` (Redis-protocol backends; an embedded
/// database has one process, so nothing to tell).
pub(crate) struct Publish {
    pub channel: Arc<str>,
    pub message: String,
}

impl Command for Publish {
    type Answer = ();

    fn verb(&self) -> &'static str {
        "publish"
    }

    fn subject(&self) -> Subject {
        Subject::None
    }

    fn disabled(&self) -> Result<()> {
        Ok(())
    }

    fn on_rocks(&self, _store: &RocksStore) -> Result<()> {
        Ok(())
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<()> {
        // An invalidation sent twice drops the same copies twice: retry-safe.
        over_redis(self, direct, conn, deadline, READS, |c| {
            commands::publish(c, &self.channel, &self.message)
        })
        .await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}
