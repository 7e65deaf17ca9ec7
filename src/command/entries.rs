//! `entries`: values with their remaining lifetimes, what the in-process
//! tier and eager refresh read.

use std::sync::Arc;

use super::{Command, InPlace, READS, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Stored, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// Each key's value and remaining lifetime, in the order asked: a `GET` +
/// `PTTL` pipeline per hash slot on Redis, the envelope's `expires_at` on
/// RocksDB.
pub(crate) struct Entries {
    pub keys: Vec<Arc<str>>,
}

impl Command for Entries {
    type Answer = Vec<Option<Stored>>;

    fn verb(&self) -> &'static str {
        "get"
    }

    fn subject(&self) -> Subject {
        Subject::keys(&self.keys)
    }

    fn disabled(&self) -> Result<Vec<Option<Stored>>> {
        Ok(self.keys.iter().map(|_| None).collect())
    }

    /// One name: from memory when it holds it.
    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<Vec<Option<Stored>>> {
        match &self.keys[..] {
            [key] => InPlace::answered(store.entry_in_memory(key).map(|e| e.map(|e| vec![e]))),
            _ => InPlace::Elsewhere,
        }
    }

    fn on_rocks(&self, store: &RocksStore) -> Result<Vec<Option<Stored>>> {
        self.keys.iter().map(|k| store.entry(k)).collect()
    }

    async fn on_redis(
        &self,
        direct: &RedisDirect,
        conn: Conn,
        deadline: Deadline,
    ) -> Result<Vec<Option<Stored>>> {
        let target = direct.target();
        over_redis(self, direct, conn, deadline, READS, |c| {
            commands::entries(target, c, &self.keys, deadline)
        })
        .await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}
