//! `ping`: whether the backend answers.

use super::{Command, READS, over_redis};
use crate::backend::redis::{Conn, RedisDirect, commands};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject};
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::tier::{Tier, Touch};

/// `PING` on a server, a read on RocksDB.
pub(crate) struct Ping;

impl Command for Ping {
    type Answer = ();

    fn verb(&self) -> &'static str {
        "ping"
    }

    fn subject(&self) -> Subject {
        Subject::None
    }

    fn disabled(&self) -> Result<()> {
        Err(KeystoreError::new(
            ErrorKind::Config,
            "the keystore is disabled (keystore.enabled: false)",
        ))
    }

    fn on_rocks(&self, store: &RocksStore) -> Result<()> {
        store.ping()
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<()> {
        over_redis(self, direct, conn, deadline, READS, commands::ping).await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}
