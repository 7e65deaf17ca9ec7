//! `entries`: values with their remaining lifetimes, what the in-process
//! tier and eager refresh read. [`ReadEntry`] is the form a caller that
//! decodes the value uses.

use std::sync::Arc;
use std::time::Duration;

use super::{Call, Command, InPlace, READS, Remembered, TierRead, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Stored, Subject};
use crate::error::Result;
use crate::format::Json;
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

/// What a read of one name and its lifetime found.
pub(crate) struct Found<T> {
    /// The value, decoded from the text found.
    pub value: T,
    /// When the backend's value expires, on the keystore's clock (inner
    /// `None`: never); `None` when unknown (a stale copy of the tier).
    pub expires_at: Option<Option<Duration>>,
}

/// A read of `key` with its remaining lifetime (what eager refresh
/// measures), decoded by `decode`: RocksDB's memory first, else an
/// [`Entries`] of the one name.
pub(crate) struct ReadEntry<'a, D> {
    pub key: &'a str,
    /// Now on the keystore's clock, which turns a lifetime into an expiry.
    pub now: Duration,
    pub decode: D,
}

impl<T, D: Fn(Json<'_>) -> Result<T>> ReadEntry<'_, D> {
    fn found(&self, entry: Option<Stored>) -> Result<Option<Found<T>>> {
        entry
            .map(|(json, left)| {
                Ok(Found {
                    value: (self.decode)(Json::Text(&json))?,
                    expires_at: Some(left.map(|l| self.now + l)),
                })
            })
            .transpose()
    }
}

impl<T, D: Fn(Json<'_>) -> Result<T>> Call for ReadEntry<'_, D> {
    type Answer = Option<Found<T>>;
    type Command = Entries;
    type Tiered = Self;

    fn through_tier(self) -> std::result::Result<Self, Self> {
        Ok(self)
    }

    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<Option<Found<T>>> {
        let read = store
            .entry_in_memory(self.key)
            .map(|entry| self.found(entry?));
        InPlace::answered(read)
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }

    fn into_command(
        self,
    ) -> (
        Entries,
        impl FnOnce(Vec<Option<Stored>>) -> Result<Option<Found<T>>>,
    ) {
        let entries = Entries {
            keys: vec![Arc::from(self.key)],
        };
        (entries, move |mut found: Vec<Option<Stored>>| {
            self.found(found.pop().flatten())
        })
    }
}

impl<T, D: Fn(Json<'_>) -> Result<T>> TierRead for ReadEntry<'_, D> {
    type Answer = Option<Found<T>>;

    fn count(&self) -> usize {
        1
    }

    fn name(&self, _i: usize) -> &str {
        self.key
    }

    fn answer(self, found: Vec<Option<Remembered>>) -> Result<Option<Found<T>>> {
        let found = found.into_iter().next().flatten();
        found
            .map(|f| {
                Ok(Found {
                    value: (self.decode)(Json::Text(f.text.as_str()))?,
                    expires_at: f.expires_at,
                })
            })
            .transpose()
    }
}
