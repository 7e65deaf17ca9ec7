//! The tier step of the request path: a read of values
//! ([`TierRead`]) with the in-process tier on answers from the tier's
//! fresh copies, asks the backend for the names it lacks, and fills the
//! tier with what the backend found; when the backend fails, it answers
//! the tier's stale copies (`keystore.fail_safe`). Writes tell the tier
//! what they changed in `request.rs` (each command's `touch`).

use std::sync::Arc;

use super::Live;
use super::in_place::share_the_thread;
use crate::backend::{Subject, Text};
use crate::command::{Entries, Remembered, TierRead};
use crate::error::Result;
use crate::tier::{Ticket, Tier};

impl Live {
    /// `read` through `tier` (see the module docs).
    pub(super) async fn read_through<R: TierRead>(
        &self,
        tier: &Tier,
        read: R,
    ) -> Result<R::Answer> {
        let count = read.count();
        let mut found: Vec<Option<Remembered>> = Vec::with_capacity(count);
        let mut missing = Vec::new();
        for i in 0..count {
            match tier.get(read.name(i)) {
                Some(copy) => found.push(Some(Remembered {
                    text: Text::Shared(copy.json.clone()),
                    expires_at: Some(copy.expires_at),
                })),
                None => {
                    found.push(None);
                    missing.push(i);
                }
            }
        }
        if missing.is_empty() {
            // Answered from memory without meeting a tokio resource, like
            // a read answered in place.
            share_the_thread().await;
            return read.answer(found);
        }
        let keys: Vec<Arc<str>> = missing.iter().map(|&i| Arc::from(read.name(i))).collect();
        let tickets: Vec<Ticket> = keys.iter().map(|k| tier.ticket(k)).collect();
        let now = tier.now();
        match self.run(Entries { keys: keys.clone() }).await {
            Ok(entries) => {
                for (((i, key), ticket), entry) in
                    missing.into_iter().zip(&keys).zip(tickets).zip(entries)
                {
                    if let Some((json, left)) = entry {
                        tier.fill(key, &json, left, ticket);
                        found[i] = Some(Remembered {
                            text: Text::Owned(json),
                            expires_at: Some(left.map(|l| now + l)),
                        });
                    }
                }
            }
            // The backend's failure, not the caller's or the data's: the
            // stale copies answer when every missing name has one.
            Err(e) if e.is_backend_failure() => {
                let Some(stale) = tier.stale_copies(&keys) else {
                    return Err(e);
                };
                tracing::debug!(
                    "serving stale copies for {}: {e}",
                    Subject::keys(&keys).describe("get")
                );
                for (i, json) in missing.into_iter().zip(stale) {
                    found[i] = Some(Remembered {
                        text: Text::Shared(json),
                        expires_at: None,
                    });
                }
            }
            Err(e) => return Err(e),
        }
        read.answer(found)
    }
}
