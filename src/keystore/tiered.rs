//! The in-process tier on the request path: reads of one name go through it
//! ([`Keystore::read_one`]), and every write tells it what changed and
//! publishes that on the backplane ([`Touch`]). With the tier off these
//! are the plain reads and writes of the request path, unchanged.

use std::sync::Arc;
use std::time::Duration;

use super::{Keystore, unexpected};
use crate::backend::{Command, Reply, Stored};
use crate::engine::{Engine, in_place};
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format::Json;
use crate::tier::message::Scope;
use crate::tier::{Copy, Ticket, Tier};

/// The JSON text a batch read found: the tier's copy (held, not copied),
/// or the backend's own.
pub(super) enum Text {
    Copy(Arc<Copy>),
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

/// Whether a failure is the backend's (the fail-safe may answer it), not
/// the caller's or the data's.
fn backend_failed(e: &KeystoreError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Backend | ErrorKind::Busy
    )
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
        engine: &Engine,
        name: &str,
        need_expiry: bool,
        decode: impl Fn(Json<'_>) -> Result<T>,
    ) -> Result<Option<Found<T>>> {
        let Some(tier) = engine.tier() else {
            if need_expiry {
                let now = self.inner.clock.now_unix();
                return match self.entry(engine, name).await? {
                    Some((json, left)) => Ok(Some(Found {
                        value: decode(Json::Text(&json))?,
                        expires_at: Some(left.map(|l| now + l)),
                    })),
                    None => Ok(None),
                };
            }
            let value = match engine.read_from_memory(name, &decode) {
                Some(answer) => {
                    in_place::share_the_thread().await;
                    answer?.transpose()?
                }
                None => match engine.call(Command::Get { key: name.into() }).await? {
                    Reply::Value(json) => json.map(|j| decode(Json::Text(&j))).transpose()?,
                    other => return Err(unexpected(other)),
                },
            };
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
        match self.entry(engine, name).await {
            Ok(Some((json, left))) => {
                tier.fill(name, &json, left, ticket);
                Ok(Some(Found {
                    value: decode(Json::Text(&json))?,
                    expires_at: Some(left.map(|l| now + l)),
                }))
            }
            Ok(None) => Ok(None),
            Err(e) if backend_failed(&e) => match tier.stale(name) {
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
    async fn entry(&self, engine: &Engine, name: &str) -> Result<Option<Stored>> {
        let keys = vec![Arc::from(name)];
        match engine.call(Command::Entries { keys }).await? {
            Reply::Entries(mut found) if found.len() == 1 => Ok(found.pop().flatten()),
            other => Err(unexpected(other)),
        }
    }

    /// `get_many` through the tier: the fresh copies from it, the rest in
    /// one backend call that also fills it.
    pub(super) async fn read_many(
        &self,
        engine: &Engine,
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
        let found = match engine.call(Command::Entries { keys }).await? {
            Reply::Entries(found) if found.len() == missing.len() => found,
            other => return Err(unexpected(other)),
        };
        for ((i, ticket), entry) in missing.into_iter().zip(tickets).zip(found) {
            if let Some((json, left)) = entry {
                tier.fill(&names[i], &json, left, ticket);
                out[i] = Some(Text::Owned(json));
            }
        }
        Ok(out)
    }

    /// After a write: tells the tier what changed (`ok`: the backend
    /// acknowledged it; else its effect is unknown and the copies are
    /// dropped), then publishes the invalidation on the backplane. A failed
    /// publish is logged, not returned: the write itself succeeded, and the
    /// other instances' copies expire within `keystore.l1.ttl_max`.
    pub(super) async fn touched(&self, engine: &Engine, tier: &Tier, touch: Touch, ok: bool) {
        let scope = match touch {
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
        if !ok {
            return;
        }
        if let Some(publish) = tier.publish(scope)
            && let Err(e) = engine.call(publish).await
        {
            tracing::warn!(
                "the write succeeded, but its invalidation was not published: {e}; \
                 other instances may serve their copies for up to keystore.l1.ttl_max"
            );
        }
    }
}

/// What a write changes in the tier, taken from its command before it is sent.
pub(super) enum Touch {
    /// `Set`, `SetMany`: the values written, each with the ticket taken
    /// before the write went out.
    Wrote {
        entries: Vec<(Arc<str>, String, Ticket)>,
        ttl: Option<u64>,
    },
    /// `Delete`, `DeleteMany`.
    Forget(Vec<Arc<str>>),
    /// `DeletePrefix` (`""`: clear).
    Prefix(Arc<str>),
}

impl Touch {
    /// What `command` will change, if it writes.
    pub(super) fn of(tier: &Tier, command: &Command) -> Option<Touch> {
        Some(match command {
            Command::Set { key, json, ttl } => Touch::Wrote {
                entries: vec![(key.clone(), json.clone(), tier.ticket(key))],
                ttl: *ttl,
            },
            Command::SetMany { entries, ttl } => Touch::Wrote {
                entries: entries
                    .iter()
                    .map(|(k, json)| (k.clone(), json.clone(), tier.ticket(k)))
                    .collect(),
                ttl: *ttl,
            },
            Command::Delete { key } => Touch::Forget(vec![key.clone()]),
            Command::DeleteMany { keys } => Touch::Forget(keys.clone()),
            Command::DeletePrefix { prefix } => Touch::Prefix(prefix.clone()),
            _ => return None,
        })
    }
}
