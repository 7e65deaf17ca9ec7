//! [`Touch`]: what a write changes in the tier, taken from its command
//! before it is sent, and applied when its answer comes back.

use std::sync::Arc;

use super::message::Scope;
use super::{Ticket, Tier};

/// What a write changes in the tier (each command says which, in
/// `command/`).
pub(crate) enum Touch {
    /// `set`, `set_many`: the values written, each with the ticket taken
    /// before the write went out.
    Wrote {
        entries: Vec<(Arc<str>, String, Ticket)>,
        ttl: Option<u64>,
    },
    /// `delete`, `delete_many`.
    Forget(Vec<Arc<str>>),
    /// `delete_prefix` (`""`: clear).
    Prefix(Arc<str>),
}

impl Touch {
    /// Applies the write to `tier` (`ok`: the backend acknowledged it; else
    /// its effect is unknown and the copies are dropped). Answers what the
    /// other instances must drop, when the write succeeded.
    pub(crate) fn apply(self, tier: &Tier, ok: bool) -> Option<Scope> {
        let scope = match self {
            Touch::Wrote { entries, ttl } => {
                for (key, json, ticket) in &entries {
                    if ok {
                        tier.wrote(key, json, ttl, *ticket);
                    } else {
                        tier.forget(&[key]);
                    }
                }
                Scope::Names(entries.into_iter().map(|(k, _, _)| k.to_string()).collect())
            }
            Touch::Forget(keys) => {
                tier.forget(&keys);
                Scope::Names(keys.iter().map(|k| k.to_string()).collect())
            }
            Touch::Prefix(prefix) => {
                tier.forget_prefix(&prefix);
                if prefix.is_empty() {
                    Scope::Clear
                } else {
                    Scope::Prefix(prefix.to_string())
                }
            }
        };
        ok.then_some(scope)
    }
}
