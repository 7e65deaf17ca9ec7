//! `set_many`: stores many JSON texts for one TTL in one round trip.

use std::sync::Arc;

use super::{Command, InPlace, WRITES, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// `MSET`, or with a TTL a script call of `SET … EX` per key (a pipeline
/// where scripts are refused), per hash slot; one write batch on RocksDB.
pub(crate) struct SetMany {
    pub entries: Vec<(Arc<str>, String)>,
    /// As for `Set`.
    pub ttl: Option<u64>,
}

impl Command for SetMany {
    type Answer = ();

    fn verb(&self) -> &'static str {
        "set_many"
    }

    fn subject(&self) -> Subject {
        Subject::keys(self.entries.iter().map(|(k, _)| k))
    }

    fn disabled(&self) -> Result<()> {
        Ok(())
    }

    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<()> {
        InPlace::answered(store.try_set_many(&self.entries, self.ttl))
    }

    fn on_rocks(&self, store: &RocksStore) -> Result<()> {
        store.set_many(&self.entries, self.ttl)
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<()> {
        let target = direct.target();
        over_redis(self, direct, conn, deadline, WRITES, |c| {
            commands::set_many(target, c, &self.entries, self.ttl, deadline)
        })
        .await
    }

    fn touch(&self, tier: &Tier) -> Option<Touch> {
        let entries = self.entries.iter();
        Some(Touch::Wrote {
            entries: entries
                .map(|(k, json)| (k.clone(), json.clone(), tier.ticket(k)))
                .collect(),
            ttl: self.ttl,
        })
    }
}
