//! `ttl`: the remaining lifetime of one name.

use std::sync::Arc;

use super::{Command, READS, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};
use crate::ttl::Ttl;

/// `TTL key`: `None` when missing or expired.
pub(crate) struct TtlOf {
    pub key: Arc<str>,
}

impl Command for TtlOf {
    type Answer = Option<Ttl>;

    fn verb(&self) -> &'static str {
        "ttl"
    }

    fn subject(&self) -> Subject {
        Subject::Key(self.key.clone())
    }

    fn disabled(&self) -> Result<Option<Ttl>> {
        Ok(None)
    }

    fn on_rocks(&self, store: &RocksStore) -> Result<Option<Ttl>> {
        store.ttl(&self.key)
    }

    async fn on_redis(
        &self,
        direct: &RedisDirect,
        conn: Conn,
        deadline: Deadline,
    ) -> Result<Option<Ttl>> {
        over_redis(self, direct, conn, deadline, READS, |c| {
            commands::ttl(c, &self.key)
        })
        .await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}
