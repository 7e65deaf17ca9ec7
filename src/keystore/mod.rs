//! [`Keystore`]: the cloneable handle callers use; [`BlockingKeystore`], its
//! synchronous face; and [`KeystoreBuilder`], how one is made.
//!
//! # The request path
//! Every operation is a [`Command`] that goes through [`Keystore::run`] once:
//! 1. **resolve**: the name and the value's JSON become a command, the TTL is
//!    resolved against the default and raised to the backend's floor; with
//!    `keystore.enabled: false` the command's no-op answer is given here;
//! 2. **admit, route, wait**: [`Engine::call`](crate::engine::Engine) (see
//!    `engine::request`): the in-flight permit and deadline, then the memory
//!    shortcut, the Redis direct path or the backend actor;
//! 3. **finish**: the reply becomes the typed answer (a decoded value, a
//!    count, a flag);
//! 4. **record**: one outcome (hit, miss, ok or the error's kind) and the
//!    latency, counted for the operation's `op` label.
//!
//! Adding an operation means a [`Command`] variant, its backend handling and
//! a method here that calls `run` with its finish step.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{Command, Reply};
use crate::config::{BackendKind, Config, Overrides};
use crate::engine::Engine;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::metrics::{MetricsRegistry, MetricsServer, Op, Outcome, Stats};
use crate::ttl::Ttl;

mod blocking;
mod builder;

pub use blocking::BlockingKeystore;
pub use builder::KeystoreBuilder;

/// A handle to a keystore: one cache API over Redis, Dragonfly or RocksDB.
///
/// Cheap to clone (an `Arc`), `Send + Sync`; every clone talks to the same
/// engine. The engine stops when the last clone is dropped or
/// [`shutdown`](Self::shutdown) is awaited. Values are stored as JSON
/// (see the crate docs for the exact formats).
///
/// ```
/// # fn main() -> objdatakey::Result<()> {
/// use objdatakey::{Config, Keystore, Ttl};
/// # let dir = tempfile::tempdir().unwrap();
/// let mut config = Config::default();
/// config.backend = objdatakey::BackendKind::RocksDb;
/// config.rocksdb.path = dir.path().join("db");
/// let keystore = Keystore::builder().config(config).build()?;
/// let sync = keystore.blocking();
/// sync.set_cache("greeting", &"hello", Ttl::Seconds(60))?;
/// assert_eq!(sync.get_cache::<String>("greeting")?.as_deref(), Some("hello"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Keystore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// `None` when `keystore.enabled` is false: every call is then a no-op.
    engine: Option<Engine>,
    /// The registry this keystore records into (see [`Keystore::render_metrics`]).
    registry: MetricsRegistry,
    /// The `/metrics` listener this keystore keeps alive (`metrics.listen`).
    server: Option<MetricsServer>,
}

/// What an operation's answer says for the metrics.
trait Recorded {
    fn outcome(&self) -> Outcome;
}

impl<T> Recorded for Option<T> {
    fn outcome(&self) -> Outcome {
        if self.is_some() {
            Outcome::Hit
        } else {
            Outcome::Miss
        }
    }
}

macro_rules! recorded_as_ok {
    ($($t:ty),*) => {$(
        impl Recorded for $t {
            fn outcome(&self) -> Outcome {
                Outcome::Ok
            }
        }
    )*};
}
recorded_as_ok!((), bool, u64);

impl Keystore {
    /// A builder, to choose the config, clock and limits explicitly.
    pub fn builder() -> KeystoreBuilder {
        KeystoreBuilder::default()
    }

    /// Connects as `config.yaml` says (found through `OBJDATAKEY_CONFIG` or
    /// `./config.yaml`; see [`Config::load`]).
    pub fn connect() -> Result<Keystore> {
        Keystore::builder().build()
    }

    /// Connects with `config`.
    pub fn from_config(config: Config) -> Result<Keystore> {
        Keystore::builder().config(config).build()
    }

    /// Connects as the config file says, with explicit backend, address or
    /// credentials overriding it.
    pub fn connect_keystore(overrides: Overrides) -> Result<Keystore> {
        Keystore::builder().overrides(overrides).build()
    }

    /// Connects to Redis at `ip:port` (the original module's `connect_redis`).
    #[deprecated(
        note = "use `Keystore::connect_keystore(Overrides::new().backend(BackendKind::Redis).ip(..).port(..))`"
    )]
    pub fn connect_redis(
        ip: &str,
        port: u16,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<Keystore> {
        let mut o = Overrides::new()
            .backend(BackendKind::Redis)
            .ip(ip)
            .port(port);
        if let Some(u) = user {
            o = o.user(u);
        }
        if let Some(p) = password {
            o = o.password(p);
        }
        Keystore::connect_keystore(o)
    }

    fn assemble(
        config: Config,
        engine: Option<Engine>,
        registry: MetricsRegistry,
        server: Option<MetricsServer>,
    ) -> Keystore {
        Keystore {
            inner: Arc::new(Inner {
                config,
                engine,
                registry,
                server,
            }),
        }
    }

    fn engine(&self) -> Option<&Engine> {
        self.inner.engine.as_ref()
    }

    /// The active backend (the original module's `KeystoreType`).
    #[must_use]
    pub fn backend(&self) -> BackendKind {
        self.inner.config.backend
    }

    /// The configuration this keystore was built from.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// `false` when `keystore.enabled: false` made every call a no-op.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.inner.engine.is_some()
    }

    /// The one request path (see the module docs): `resolve` builds the
    /// command, the engine runs it, `finish` turns its reply into the answer,
    /// and the outcome is recorded as `op`. With the keystore disabled,
    /// `finish` gets the command's no-op reply instead.
    async fn run<O: Recorded>(
        &self,
        op: Op,
        resolve: impl FnOnce() -> Result<Command>,
        finish: impl FnOnce(Reply) -> Result<O>,
    ) -> Result<O> {
        let Some(engine) = self.engine() else {
            return finish(disabled_reply(op)?);
        };
        let started = Instant::now();
        let result = match resolve() {
            Ok(command) => match engine.call(command).await {
                Ok(reply) => finish(reply),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Some(recorder) = engine.recorder() {
            let outcome = match &result {
                Ok(answer) => answer.outcome(),
                Err(e) => Outcome::Error(e.kind()),
            };
            recorder.op(op, outcome, started.elapsed());
        }
        result
    }

    /// Stores `value` as JSON under `name` for `ttl`.
    ///
    /// On Redis and Dragonfly a TTL below 5 seconds is raised to 5.
    pub async fn set_cache<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        ttl: Ttl,
    ) -> Result<()> {
        let resolve = || {
            let json = serde_json::to_string(value).map_err(|e| {
                KeystoreError::new(
                    ErrorKind::Serialization,
                    format!("cannot encode the value for key {name:?} as JSON"),
                )
                .with_source(e)
            })?;
            Ok(Command::Set {
                key: name.into(),
                json,
                ttl: self.resolve_ttl(ttl),
            })
        };
        self.run(Op::Set, resolve, done).await
    }

    /// Seconds to store for, `None` for never: `ttl` against the default
    /// TTL, raised to the backend's minimum.
    fn resolve_ttl(&self, ttl: Ttl) -> Option<u64> {
        let config = &self.inner.config;
        ttl.resolve(config.default_ttl)
            .map(|t| t.max(config.backend.min_ttl()))
    }

    /// The value stored under `name`, decoded as `T`; `None` when missing or expired.
    ///
    /// A value that is not valid JSON for `T` is an error for that key
    /// ([`ErrorKind::Serialization`]), and so is a RocksDB value not in the
    /// stored format ([`ErrorKind::CorruptValue`]).
    pub async fn get_cache<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let get = || Ok(Command::Get { key: name.into() });
        self.run(Op::Get, get, |reply| match reply {
            Reply::Value(Some(json)) => serde_json::from_str::<T>(&json).map(Some).map_err(|e| {
                KeystoreError::new(
                    ErrorKind::Serialization,
                    format!(
                        "the value of key {name:?} is not a valid {}",
                        std::any::type_name::<T>()
                    ),
                )
                .with_source(e)
            }),
            Reply::Value(None) => Ok(None),
            other => Err(unexpected(other)),
        })
        .await
    }

    /// The raw JSON text stored under `name`, without decoding it.
    pub async fn get_json(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .get_cache::<Box<serde_json::value::RawValue>>(name)
            .await?
            .map(|raw| raw.get().to_owned()))
    }

    /// Deletes `name`; answers whether a live value was there.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        let delete = || Ok(Command::Delete { key: name.into() });
        self.run(Op::Delete, delete, |reply| match reply {
            Reply::Deleted(b) => Ok(b),
            other => Err(unexpected(other)),
        })
        .await
    }

    /// Health check with the reason: PING on Redis/Dragonfly, a read on RocksDB.
    pub async fn ping(&self) -> Result<()> {
        self.run(Op::Ping, || Ok(Command::Ping), done).await
    }

    /// Whether the backend answers (see [`ping`](Self::ping) for the reason when not).
    pub async fn has_keystore(&self) -> bool {
        self.ping().await.is_ok()
    }

    /// The original module's name for [`has_keystore`](Self::has_keystore).
    #[deprecated(note = "use `has_keystore`")]
    pub async fn has_redis(&self) -> bool {
        self.has_keystore().await
    }

    /// Removes expired entries now (RocksDB; servers expire keys themselves and
    /// answer 0). Answers the number removed.
    pub async fn purge_expired(&self) -> Result<u64> {
        match self.engine() {
            Some(engine) => engine.purge_expired().await,
            None => Ok(0),
        }
    }

    /// Counts of hits, misses, latency and errors since the keystore started.
    pub async fn stats(&self) -> Stats {
        match self.engine() {
            Some(engine) => engine.stats().await,
            None => Stats::empty(self.backend()),
        }
    }

    /// The Prometheus text exposition of the registry this keystore records
    /// into: serve it on your own `/metrics` route (see the
    /// `actix_web_metrics` example). By default that registry is
    /// [`MetricsRegistry::global`], shared by every keystore of the process,
    /// so one route shows them all, told apart by the `backend` label.
    ///
    /// It shows what the metrics actor has applied, at most about 100 ms
    /// behind the calls; await [`flush_metrics`](Self::flush_metrics) first
    /// to include every call made so far.
    #[must_use]
    pub fn render_metrics(&self) -> String {
        self.inner.registry.render()
    }

    /// Waits until the metrics actor has applied every event recorded so far
    /// (to [`stats`](Self::stats) and to the Prometheus registry).
    pub async fn flush_metrics(&self) {
        if let Some(engine) = self.engine() {
            engine.flush_metrics().await;
        }
    }

    /// The registry this keystore records into.
    #[must_use]
    pub fn metrics_registry(&self) -> &MetricsRegistry {
        &self.inner.registry
    }

    /// Where this keystore's `/metrics` listener listens (`metrics.listen`,
    /// with the real port when the config said port 0), or `None`.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.server.as_ref().map(MetricsServer::local_addr)
    }

    /// Stops the engine for every clone of this handle and waits until the
    /// backend is closed (for RocksDB: the database lock is released). Calls
    /// through other clones answer [`ErrorKind::Shutdown`] afterwards.
    pub async fn shutdown(self) {
        let Some(engine) = self.engine() else {
            return;
        };
        engine.begin_stop();
        // Joining the engine thread and waiting for the database blocks: do it
        // on a plain thread so no executor thread is held up.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("objdatakey-shutdown".into())
            .spawn(move || {
                if let Some(e) = me.engine() {
                    e.wait_stopped();
                }
                let _ = tx.send(());
            });
        if spawned.is_ok() {
            let _ = rx.await;
        }
    }

    /// Makes the backend panic inside a call (tests of the supervisor only).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub async fn inject_backend_panic(&self) -> Result<()> {
        self.inject(Command::Panic).await
    }

    /// Holds one backend worker busy for `d` (tests of backpressure only).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub async fn inject_backend_stall(&self, d: std::time::Duration) -> Result<()> {
        self.inject(Command::Stall(d)).await
    }

    /// Runs an injected fault through the engine, unrecorded.
    #[cfg(feature = "fault-injection")]
    async fn inject(&self, command: Command) -> Result<()> {
        match self.engine() {
            Some(engine) => engine.call(command).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// The synchronous face of this keystore, for code outside any async runtime.
    #[must_use]
    pub fn blocking(&self) -> BlockingKeystore {
        BlockingKeystore::new(self.clone())
    }
}

/// What an operation answers when the keystore is disabled.
fn disabled_reply(op: Op) -> Result<Reply> {
    match op {
        Op::Get => Ok(Reply::Value(None)),
        Op::Set => Ok(Reply::Done),
        Op::Delete => Ok(Reply::Deleted(false)),
        Op::Ping => Err(KeystoreError::new(
            ErrorKind::Config,
            "the keystore is disabled (keystore.enabled: false)",
        )),
    }
}

/// The finish step of operations answered by `Done`.
fn done(reply: Reply) -> Result<()> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: Reply) -> KeystoreError {
    KeystoreError::new(
        ErrorKind::Backend,
        format!("internal error: unexpected backend answer {reply:?}"),
    )
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("backend", &self.backend())
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}
