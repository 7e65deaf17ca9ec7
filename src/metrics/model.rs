//! What the engine counts: the [`Op`] labels, how one operation ended
//! ([`Outcome`]), the [`Event`]s that are not plain successes, and the one
//! place an event is taken apart ([`Event::tally`]) for the two sinks that
//! keep totals: [`Aggregate`](super::stats::Aggregate) (behind
//! [`Stats`](super::Stats)) and the Prometheus handles
//! ([`EngineMetrics`](super::handles::EngineMetrics)).

use std::time::Duration;

use crate::error::ErrorKind;

/// The operations the engine counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `get_cache`.
    Get,
    /// `set_cache`.
    Set,
    /// `delete`.
    Delete,
    /// `has_keystore` / `ping`.
    Ping,
    /// `get_many`.
    GetMany,
    /// `set_many`.
    SetMany,
    /// `delete_many`.
    DeleteMany,
    /// `delete_prefix`.
    DeletePrefix,
    /// `clear`.
    Clear,
    /// `ttl`.
    Ttl,
    /// `get_or_set`: a hit when the value was cached, a miss when it was loaded.
    GetOrSet,
}

impl Op {
    /// How many ops there are.
    pub const COUNT: usize = 11;

    /// Every op, in label order.
    pub const ALL: [Op; Op::COUNT] = [
        Op::Get,
        Op::Set,
        Op::Delete,
        Op::Ping,
        Op::GetMany,
        Op::SetMany,
        Op::DeleteMany,
        Op::DeletePrefix,
        Op::Clear,
        Op::Ttl,
        Op::GetOrSet,
    ];

    /// The `op` label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::Ping => "ping",
            Op::GetMany => "get_many",
            Op::SetMany => "set_many",
            Op::DeleteMany => "delete_many",
            Op::DeletePrefix => "delete_prefix",
            Op::Clear => "clear",
            Op::Ttl => "ttl",
            Op::GetOrSet => "get_or_set",
        }
    }

    /// Whether the op's successes are hits and misses (else just `ok`).
    #[must_use]
    pub fn has_hits(self) -> bool {
        matches!(self, Op::Get | Op::GetOrSet)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What the in-process tier counts (on the hot path, in the striped
/// counters, like successful operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TierCount {
    /// A read answered from the tier.
    Hit,
    /// A read the tier could not answer (it went to the backend).
    Miss,
    /// An entry pushed out by the byte bound.
    Eviction,
    /// Names (or a prefix, or a clear) published on the backplane.
    InvalidationSent,
    /// Invalidations received from other instances and applied.
    InvalidationReceived,
    /// A stale copy served because the backend failed (fail-safe).
    StaleServed,
    /// A background reload started by eager refresh.
    Refresh,
}

impl TierCount {
    pub(crate) const COUNT: usize = 7;
    pub(crate) const ALL: [TierCount; TierCount::COUNT] = [
        TierCount::Hit,
        TierCount::Miss,
        TierCount::Eviction,
        TierCount::InvalidationSent,
        TierCount::InvalidationReceived,
        TierCount::StaleServed,
        TierCount::Refresh,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// How one operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A get that found a live value.
    Hit,
    /// A get that found nothing (or an expired value).
    Miss,
    /// Any other op that succeeded.
    Ok,
    /// Failed.
    Error(ErrorKind),
}

/// One thing that happened, as the metrics actor receives it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    /// An operation that failed; successes are counted in [`OpCounters`].
    Failed {
        op: Op,
        kind: ErrorKind,
        latency: Duration,
    },
    Sweep {
        removed: u64,
        scanned: u64,
        duration: Duration,
    },
    /// A janitor sweep failed (it is retried at the next interval).
    SweepFailed,
    Restart,
    /// The backend became reachable/open (`true`) or lost (`false`).
    BackendUp(bool),
    /// The backplane subscription was made (`true`) or lost (`false`).
    BackplaneUp(bool),
}
