//! `get_or_set`: a read, and on a miss one load per name at a time
//! (single flight, [`flight`]), stored through the same request path; with
//! eager refresh a hit near its expiry reloads in the background, and with
//! `keystore.get_or_set_lock_ms` a load on a server first takes a
//! cross-process lock ([`lock`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::decode::decode;
use super::{Keystore, flight, lock};
use crate::command::{Found, Read, ReadEntry};
use crate::config::BackendKind;
use crate::engine;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format::Json;
use crate::metrics::{Op, Outcome, TierCount};
use crate::tier;
use crate::ttl::Ttl;

impl Keystore {
    /// [`Keystore::get_or_set`]'s work.
    pub(super) async fn get_or_load<T, F, Fut, E>(
        &self,
        name: &str,
        ttl: Ttl,
        loader: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let eager = self.inner.config.tier.eager_refresh;
        self.recorded(Op::GetOrSet, async {
            // A name the load could not be stored under: refused before
            // the loader runs.
            self.name_fits(name)?;
            let decoder = |json: Json<'_>| decode(name, json);
            let found = if eager > 0.0 {
                let now = self.inner.clock.now_unix();
                let read = ReadEntry {
                    key: name,
                    now,
                    decode: decoder,
                };
                self.engine().call(read).await?
            } else {
                let read = Read {
                    key: name,
                    decode: decoder,
                };
                let value = self.engine().call(read).await?;
                value.map(|value| Found {
                    value,
                    expires_at: None,
                })
            };
            if let Some(found) = found {
                let value = found.value;
                if let (Some(expires_at), Some(secs)) = (found.expires_at, self.resolve_ttl(ttl))
                    && tier::is_due(self.inner.clock.now_unix(), expires_at, secs, eager)
                    && let flight::Joined::Leader(_, takeoff) =
                        self.inner.flights.join_or_start(name)
                {
                    // Eager refresh: this caller has its value; the reload
                    // runs detached, once per name at a time (the flight).
                    if let Some(r) = self.engine().recorder() {
                        r.tier(TierCount::Refresh, 1);
                    }
                    self.take_off(name, ttl, loader(), takeoff, false);
                }
                return Ok((value, Outcome::Hit));
            }
            let flight = match self.inner.flights.join_or_start(name) {
                flight::Joined::Follower(flight) => flight,
                flight::Joined::Leader(flight, takeoff) => {
                    self.take_off(name, ttl, loader(), takeoff, true);
                    flight
                }
            };
            let deadline = Instant::now() + self.inner.config.engine.request_timeout;
            let json = tokio::select! {
                biased;
                landed = flight => landed?,
                _ = engine::timer::sleep_until(deadline) => {
                    return Err(KeystoreError::new(
                        ErrorKind::Timeout,
                        format!(
                            "get_or_set of key {name:?} on {}: the loader did not finish within \
                             {} ms (keystore.request_timeout_ms); it goes on, and stores its value",
                            self.backend(),
                            self.inner.config.engine.request_timeout.as_millis()
                        ),
                    ));
                }
            };
            Ok((decode(name, Json::Text(&json))?, Outcome::Miss))
        })
        .await
    }

    /// Starts a flight's work in a task of its own: detached, so a leader
    /// that stops waiting cancels nothing.
    fn take_off<T, E>(
        &self,
        name: &str,
        ttl: Ttl,
        load: impl Future<Output = std::result::Result<T, E>> + Send + 'static,
        takeoff: flight::Takeoff,
        look_first: bool,
    ) where
        T: Serialize + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let keystore = self.clone();
        let name: Arc<str> = name.into();
        drop(engine::background::spawn(async move {
            let stored = keystore.load_and_store(&name, ttl, load, look_first).await;
            takeoff.land(stored);
        }));
    }

    /// A flight's work: looks once more (unless it is a refresh), then (with
    /// `keystore.get_or_set_lock_ms` on a server) takes the cross-process
    /// load lock or waits for the value another process loads under it
    /// (see [`lock`]), and loads.
    async fn load_and_store<T, E>(
        &self,
        name: &str,
        ttl: Ttl,
        load: impl Future<Output = std::result::Result<T, E>>,
        look_first: bool,
    ) -> Result<Arc<str>>
    where
        T: Serialize,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Another flight of this name may have stored the value between this
        // caller's miss and the start of this flight: then no load at all.
        if look_first && let Some(json) = self.get_json(name).await? {
            return Ok(Arc::from(json));
        }
        let engine = self.engine();
        let Some(hold) = self.lock_hold() else {
            return self.load_now(name, ttl, load).await;
        };
        let patience = self.inner.config.engine.request_timeout;
        let held = match lock::take_or_wait(engine, name, hold, patience).await? {
            lock::Locked::Loaded(json) => return Ok(json),
            lock::Locked::Held(held) => held,
        };
        // The previous holder may have stored it just before this one took over.
        let stored = match self.get_json(name).await {
            Ok(Some(json)) if look_first => Ok(Arc::from(json)),
            Ok(_) => self.load_now(name, ttl, load).await,
            Err(e) => Err(e),
        };
        held.release(engine).await;
        stored
    }

    /// How long a `get_or_set` load holds its cross-process lock; `None`
    /// when off (the default) or on RocksDB.
    fn lock_hold(&self) -> Option<Duration> {
        match self.backend() {
            BackendKind::RocksDb => None,
            _ => self.inner.config.engine.get_or_set_lock,
        }
    }

    /// Runs the loader (catching a panic), stores its value and answers the
    /// stored JSON text.
    async fn load_now<T, E>(
        &self,
        name: &str,
        ttl: Ttl,
        load: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<Arc<str>>
    where
        T: Serialize,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let value = match std::panic::AssertUnwindSafe(load).catch_unwind().await {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => return Err(loader_failed(name, e)),
            Err(payload) => {
                return Err(KeystoreError::new(
                    ErrorKind::Loader,
                    format!(
                        "get_or_set of key {name:?}: the loader panicked ({}); nothing was stored",
                        crate::backend::panic_text(payload.as_ref())
                    ),
                ));
            }
        };
        let json = self.encode(name, &value)?;
        let raw = serde_json::value::RawValue::from_string(json).map_err(|e| {
            KeystoreError::new(
                ErrorKind::Serialization,
                format!("get_or_set of key {name:?}: the loaded value is not JSON"),
            )
            .with_source(e)
        })?;
        self.set_cache(name, &raw, ttl).await?;
        Ok(Arc::from(raw.get()))
    }
}

/// The error every waiter of a failed loader gets.
fn loader_failed(
    name: &str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> KeystoreError {
    KeystoreError::new(
        ErrorKind::Loader,
        format!("get_or_set of key {name:?}: the loader failed; nothing was stored"),
    )
    .with_source(e)
}
