//! Injected faults (tests of the supervisor and of backpressure only).

use std::time::Duration;

use super::{Command, WRITES, over_redis};
use crate::backend::redis::{Conn, RedisDirect};
use crate::backend::rocksdb::RocksStore;
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// Panics inside the backend call.
pub(crate) struct Panic;

impl Command for Panic {
    type Answer = ();

    fn verb(&self) -> &'static str {
        "injected panic"
    }

    fn subject(&self) -> Subject {
        Subject::None
    }

    fn disabled(&self) -> Result<()> {
        Ok(())
    }

    fn on_rocks(&self, _store: &RocksStore) -> Result<()> {
        panic!("injected panic in the RocksDB backend")
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<()> {
        let kind = direct.target().kind();
        over_redis(self, direct, conn, deadline, WRITES, |_| async move {
            panic!("injected panic in the {kind} backend")
        })
        .await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}

/// Holds a backend worker (or the call's task) for this long.
pub(crate) struct Stall(pub Duration);

impl Command for Stall {
    type Answer = ();

    fn verb(&self) -> &'static str {
        "injected stall"
    }

    fn subject(&self) -> Subject {
        Subject::None
    }

    fn disabled(&self) -> Result<()> {
        Ok(())
    }

    fn on_rocks(&self, _store: &RocksStore) -> Result<()> {
        std::thread::sleep(self.0);
        Ok(())
    }

    async fn on_redis(&self, direct: &RedisDirect, conn: Conn, deadline: Deadline) -> Result<()> {
        over_redis(self, direct, conn, deadline, WRITES, |_| async {
            tokio::time::sleep(self.0).await;
            Ok(())
        })
        .await
    }

    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}
