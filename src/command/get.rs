//! `get`: the JSON text stored under one name. [`Read`] is the form a
//! caller that decodes the value uses: memory lends it the text where it
//! stands, and only a read memory cannot answer builds a [`Get`].

use std::sync::Arc;

use super::{Call, Command, InPlace, Remembered, TierRead};
use crate::backend::redis::{Conn, RedisDirect};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::format::Json;
use crate::tier::{Tier, Touch};

/// `GET key`: the stored JSON text, `None` when missing or expired.
pub(crate) struct Get {
    pub key: Arc<str>,
}

impl Command for Get {
    type Answer = Option<String>;

    fn verb(&self) -> &'static str {
        "get"
    }

    fn subject(&self) -> Subject {
        Subject::Key(self.key.clone())
    }

    fn disabled(&self) -> Result<Option<String>> {
        Ok(None)
    }

    // No in-place step: a read that memory may answer is a `Read`, which
    // asks memory before it copies the key into a `Get`.

    fn on_rocks(&self, store: &RocksStore) -> Result<Option<String>> {
        store.get(&self.key)
    }

    async fn on_redis(
        &self,
        direct: &RedisDirect,
        conn: Conn,
        deadline: Deadline,
    ) -> Result<Option<String>> {
        direct
            .get(conn, &self.key, deadline, || self.describe())
            .await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}

/// A read of `key` decoded by `decode`: on RocksDB memory's text is handed
/// to `decode` where it stands (nothing copied, no command built); else a
/// [`Get`] is sent and its text decoded.
pub(crate) struct Read<'a, D> {
    pub key: &'a str,
    pub decode: D,
}

impl<T, D: Fn(Json<'_>) -> Result<T>> Call for Read<'_, D> {
    type Answer = Option<T>;
    type Command = Get;
    type Tiered = Self;

    fn through_tier(self) -> std::result::Result<Self, Self> {
        Ok(self)
    }

    fn in_place(&self, store: &Arc<RocksStore>) -> InPlace<Option<T>> {
        let read = store
            .get_in_memory(self.key, &self.decode)
            .map(|found| found?.transpose());
        InPlace::answered(read)
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }

    fn into_command(self) -> (Get, impl FnOnce(Option<String>) -> Result<Option<T>>) {
        let get = Get {
            key: self.key.into(),
        };
        let decode = self.decode;
        (get, move |text: Option<String>| {
            text.map(|t| decode(Json::Text(&t))).transpose()
        })
    }
}

impl<T, D: Fn(Json<'_>) -> Result<T>> TierRead for Read<'_, D> {
    type Answer = Option<T>;

    fn count(&self) -> usize {
        1
    }

    fn name(&self, _i: usize) -> &str {
        self.key
    }

    fn answer(self, found: Vec<Option<Remembered>>) -> Result<Option<T>> {
        let found = found.into_iter().next().flatten();
        found
            .map(|f| (self.decode)(Json::Text(f.text.as_str())))
            .transpose()
    }
}
