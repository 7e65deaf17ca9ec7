//! `sweep`: one batch of the janitor's removal of expired entries.

use super::Command;
use crate::backend::redis::{Conn, RedisDirect};
use crate::backend::rocksdb::RocksStore;
use crate::backend::rocksdb::SweepOutcome;
use crate::backend::{Deadline, Subject};
use crate::error::Result;
use crate::tier::{Tier, Touch};

/// Removes up to `limit` expired entries (RocksDB; servers expire keys
/// themselves, so elsewhere it removes nothing).
pub(crate) struct Sweep {
    pub limit: usize,
}

impl Command for Sweep {
    type Answer = SweepOutcome;

    fn verb(&self) -> &'static str {
        "expiry sweep"
    }

    fn subject(&self) -> Subject {
        Subject::None
    }

    fn foreground(&self) -> bool {
        false
    }

    fn disabled(&self) -> Result<SweepOutcome> {
        Ok(SweepOutcome::default())
    }

    fn on_rocks(&self, store: &RocksStore) -> Result<SweepOutcome> {
        store.sweep(self.limit)
    }

    async fn on_redis(&self, _: &RedisDirect, _: Conn, _: Deadline) -> Result<SweepOutcome> {
        Ok(SweepOutcome::default())
    }

    // An expired entry is gone from the tier's point of view already: a
    // copy never outlives the value's own expiry.
    fn touch(&self, _tier: &Tier) -> Option<Touch> {
        None
    }
}
