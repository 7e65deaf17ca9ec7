//! `set`: stores one JSON text under a name for a TTL.

use std::sync::Arc;

use super::{Command, InPlace};
use crate::backend::redis::{Conn, RedisDirect};
use crate::backend::rocksdb::{RocksStore, SetStarted};
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// `SET key json [EX ttl]`.
pub(crate) struct Set {
    pub key: Arc<str>,
    pub json: String,
    /// Seconds, already resolved and raised to the backend's floor; `None`:
    /// never expire.
    pub ttl: Option<u64>,
}

impl Command for Set {
    type Answer = ();

    fn verb(&self) -> &'static str {
        "set"
    }

    fn subject(&self) -> Subject {
        Subject::Key(self.key.clone())
    }

    fn disabled(&self) -> Result<()> {
        Ok(())
    }

    /// Written with `no_slowdown` at once, or joined to a group of
    /// concurrent SETs written as one batch.
    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<()> {
        match store.set_or_join(&self.key, &self.json, self.ttl) {
            Some(SetStarted::Written(answer)) => InPlace::Answered(answer),
            Some(SetStarted::Joined(member)) => InPlace::Joined {
                store: store.clone(),
                member,
                done: || (),
            },
            None => InPlace::Elsewhere,
        }
    }

    fn on_rocks(&self, store: &RocksStore) -> Result<()> {
        store.set(&self.key, &self.json, self.ttl)
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<()> {
        direct
            .set(conn, &self.key, &self.json, self.ttl, deadline, || {
                self.describe()
            })
            .await
    }

    fn touch(&self, tier: &Tier) -> Option<Touch> {
        Some(Touch::Wrote {
            entries: vec![(self.key.clone(), self.json.clone(), tier.ticket(&self.key))],
            ttl: self.ttl,
        })
    }
}
