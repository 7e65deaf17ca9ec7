//! The in-process tier on reads: reads of one name ([`Keystore::read_one`])
//! and batches ([`Keystore::read_many`]) answer from its fresh copies and
//! fill it from the backend; a failed backend read may answer its stale
//! copy (`keystore.fail_safe`). Writes tell it what they changed in the
//! engine (`Engine::call`, each command's `touch`).

use std::sync::Arc;
use std::time::Duration;

use super::Keystore;
use crate::backend::Stored;
use crate::command::{Entries, Read};
use crate::engine::in_place;
use crate::error::Result;
use crate::format::Json;
use crate::tier::{Cached, Ticket, Tier};

/// The JSON text a batch read found: the tier's copy (held, not copied),
/// or the backend's own.
pub(super) enum Text {
    Copy(Arc<Cached>),
    Owned(String),
}

impl Text {
    pub(super) fn as_str(&self) -> &str {
        match self {
            Text::Copy(c) => &c.json,
            Text::Owned(s) => s,
        }
    }
}

/// What a read of one name found.
pub(super) struct Found<T> {
    /// The value, decoded from the text found.
    pub value: T,
    /// When the backend's value expires, on the keystore's clock: `Some`
    /// when the read learned it (a tier copy, or a read that asked),
    /// holding `None` for never.
    pub expires_at: Option<Option<Duration>>,
}

impl Keystore {
    /// Reads `name`: from the tier when it holds a fresh copy; else from the
    /// backend (RocksDB's memory read first), filling the tier; when the
    /// backend fails, the tier's stale copy within `keystore.fail_safe.max_age`.
    /// `need_expiry` asks the backend for the remaining TTL too (eager refresh).
    /// `decode` makes the value of the text found, wherever that is (a warm
    /// RocksDB read's text is only lent).
    pub(super) async fn read_one<T>(
        &self,
        name: &str,
        need_expiry: bool,
        decode: impl Fn(Json<'_>) -> Result<T>,
    ) -> Result<Option<Found<T>>> {
        let Some(tier) = self.engine().tier() else {
            if need_expiry {
                let now = self.inner.clock.now_unix();
                return match self.entry(name).await? {
                    Some((json, left)) => Ok(Some(Found {
                        value: decode(Json::Text(&json))?,
                        expires_at: Some(left.map(|l| now + l)),
                    })),
                    None => Ok(None),
                };
            }
            let read = Read { key: name, decode };
            let value = self.engine().call(read).await?;
            return Ok(value.map(|value| Found {
                value,
                expires_at: None,
            }));
        };
        if let Some(copy) = tier.get(name) {
            in_place::share_the_thread().await;
            return Ok(Some(Found {
                value: decode(Json::Text(&copy.json))?,
                expires_at: Some(copy.expires_at),
            }));
        }
        let ticket = tier.ticket(name);
        let now = self.inner.clock.now_unix();
        match self.entry(name).await {
            Ok(Some((json, left))) => {
                tier.fill(name, &json, left, ticket);
                Ok(Some(Found {
                    value: decode(Json::Text(&json))?,
                    expires_at: Some(left.map(|l| now + l)),
                }))
            }
            Ok(None) => Ok(None),
            // The backend's failure, not the caller's or the data's.
            Err(e) if e.is_backend_failure() => match tier.stale(name) {
                Some(json) => {
                    tracing::debug!("serving a stale copy of {name:?}: {e}");
                    Ok(Some(Found {
                        value: decode(Json::Text(&json))?,
                        expires_at: None,
                    }))
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The value of `name` and its remaining lifetime, from the backend.
    async fn entry(&self, name: &str) -> Result<Option<Stored>> {
        let keys = vec![Arc::from(name)];
        let mut found = self.engine().call(Entries { keys }).await?;
        Ok(found.pop().flatten())
    }

    /// `get_many` through the tier: the fresh copies from it, the rest in
    /// one backend call that also fills it.
    pub(super) async fn read_many(
        &self,
        tier: &Tier,
        names: &[Arc<str>],
    ) -> Result<Vec<Option<Text>>> {
        let mut out: Vec<Option<Text>> = Vec::with_capacity(names.len());
        let mut missing = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match tier.get(name) {
                Some(copy) => out.push(Some(Text::Copy(copy))),
                None => {
                    out.push(None);
                    missing.push(i);
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let tickets: Vec<Ticket> = missing.iter().map(|&i| tier.ticket(&names[i])).collect();
        let keys = missing.iter().map(|&i| names[i].clone()).collect();
        let found = self.engine().call(Entries { keys }).await?;
        for ((i, ticket), entry) in missing.into_iter().zip(tickets).zip(found) {
            if let Some((json, left)) = entry {
                tier.fill(&names[i], &json, left, ticket);
                out[i] = Some(Text::Owned(json));
            }
        }
        Ok(out)
    }
}
