//! `get_many`: the JSON texts of many names in one round trip. [`ReadMany`]
//! asks RocksDB's memory before it copies a single name.

use std::sync::Arc;

use super::{Call, Command, InPlace, READS, Remembered, TierRead, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject, ValueTexts};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// `MGET key…` (one per hash slot on a cluster), one `MultiGet` on RocksDB:
/// each name's text, in the order asked.
pub(crate) struct GetMany {
    pub keys: Vec<Arc<str>>,
}

impl Command for GetMany {
    type Answer = ValueTexts;

    fn verb(&self) -> &'static str {
        "get_many"
    }

    fn subject(&self) -> Subject {
        Subject::keys(&self.keys)
    }

    fn disabled(&self) -> Result<ValueTexts> {
        Ok(ValueTexts::missing(self.keys.len()))
    }

    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<ValueTexts> {
        InPlace::answered(store.get_many_in_memory(&self.keys))
    }

    fn on_rocks(&self, store: &RocksStore) -> Result<ValueTexts> {
        store.get_many(&self.keys)
    }

    async fn on_redis(
        &self,
        direct: &RedisDirect,
        conn: Conn,
        deadline: Deadline,
    ) -> Result<ValueTexts> {
        let target = direct.target();
        let texts = over_redis(self, direct, conn, deadline, READS, |c| {
            commands::get_many(target, c, &self.keys, deadline)
        })
        .await?;
        Ok(ValueTexts::each(texts))
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}

/// A batch read of `keys` that memory may answer without copying a name;
/// else a [`GetMany`] is sent.
pub(crate) struct ReadMany<'a, K> {
    pub keys: &'a [K],
}

impl<K: AsRef<str>> Call for ReadMany<'_, K> {
    type Answer = ValueTexts;
    type Command = GetMany;
    type Tiered = Self;

    fn through_tier(self) -> std::result::Result<Self, Self> {
        Ok(self)
    }

    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<ValueTexts> {
        InPlace::answered(store.get_many_in_memory(self.keys))
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }

    fn into_command(self) -> (GetMany, impl FnOnce(ValueTexts) -> Result<ValueTexts>) {
        let keys = self.keys.iter().map(|k| Arc::from(k.as_ref())).collect();
        (GetMany { keys }, Ok)
    }
}

impl<K: AsRef<str>> TierRead for ReadMany<'_, K> {
    type Answer = ValueTexts;

    fn count(&self) -> usize {
        self.keys.len()
    }

    fn name(&self, i: usize) -> &str {
        self.keys[i].as_ref()
    }

    fn answer(self, found: Vec<Option<Remembered>>) -> Result<ValueTexts> {
        Ok(ValueTexts::texts(
            found.into_iter().map(|f| f.map(|f| f.text)).collect(),
        ))
    }
}
