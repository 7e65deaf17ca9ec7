//! [`Keystore`]: the cloneable handle callers use; [`BlockingKeystore`], its
//! synchronous face; and [`KeystoreBuilder`], how one is made.
//!
//! This file is the facade: each public operation names its command (see
//! `command/`) and how the command's answer becomes the caller's. What
//! every operation shares is `Keystore::run`, at its end: the command is
//! built, run through `Engine::call` (the one request path: no-op engine,
//! tier, in place, admission, route, deadline), its answer finished, the
//! outcome recorded.
//! [`get_or_set`] adds single flight, eager refresh and the cross-process
//! load lock on top of those reads and writes.
//!
//! Adding an operation means a command in `command/` (the compiler then
//! asks for each backend's step) and a method here that calls
//! [`Keystore::run`] with it.

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::Clock;
use crate::command::{
    Call, Delete, DeleteMany, DeletePrefix, Ping, Read, ReadMany, Set, SetMany, TtlOf,
};
use crate::config::{BackendKind, Config};
use crate::engine::Engine;
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format::Json;
use crate::metrics::{MetricsRegistry, MetricsServer, Op, Outcome, Stats};
use crate::ttl::Ttl;
use decode::decode;

mod blocking;
mod builder;
mod decode;
mod depth;
mod flight;
mod get_or_set;
mod lock;

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
    /// The no-op engine when `keystore.enabled` is false.
    engine: Engine,
    /// The registry this keystore records into (see [`Keystore::render_metrics`]).
    registry: MetricsRegistry,
    /// The `/metrics` listener this keystore keeps alive (`metrics.listen`).
    server: Option<MetricsServer>,
    /// `get_or_set` loads under way (see [`flight`]).
    flights: Arc<flight::Flights>,
    /// The time source of TTLs (tier lifetimes and eager refresh use it too).
    clock: Clock,
}

impl Keystore {
    fn engine(&self) -> &Engine {
        &self.inner.engine
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
        self.engine().live().is_some()
    }

    /// Stores `value` as JSON under `name` for `ttl`.
    ///
    /// On Redis and Dragonfly a TTL below 5 seconds is raised to 5. A value
    /// nested more than 127 levels deep is refused
    /// ([`ErrorKind::Serialization`]): serde_json could not read it back.
    pub async fn set_cache<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        ttl: Ttl,
    ) -> Result<()> {
        let set = || {
            Ok(Set {
                key: name.into(),
                json: self.encode(name, value)?,
                ttl: self.resolve_ttl(ttl),
            })
        };
        self.run(Op::Set, set, Ok).await
    }

    /// The value stored under `name`, decoded as `T`; `None` when missing or expired.
    ///
    /// A value that is not valid JSON for `T` is an error for that key
    /// ([`ErrorKind::Serialization`]), and so is a RocksDB value not in the
    /// stored format ([`ErrorKind::CorruptValue`]).
    pub async fn get_cache<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let read = || {
            Ok(Read {
                key: name,
                decode: |json: Json<'_>| decode(name, json),
            })
        };
        self.run(Op::Get, read, Ok).await
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
        let delete = || Ok(Delete { key: name.into() });
        self.run(Op::Delete, delete, Ok).await
    }

    /// The values of `names`, in their order, each decoded as `T`; `None`
    /// for a name missing or expired. One round trip: MGET on Redis and
    /// Dragonfly (one per hash slot, concurrently, on a cluster), one
    /// `MultiGet` on RocksDB (answered from memory when it can be, before
    /// any name is copied).
    pub async fn get_many<T: DeserializeOwned, S: AsRef<str>>(
        &self,
        names: &[S],
    ) -> Result<Vec<Option<T>>> {
        let read = || Ok(ReadMany { keys: names });
        self.run(Op::GetMany, read, |texts| {
            if texts.len() != names.len() {
                return Err(KeystoreError::new(
                    ErrorKind::Protocol,
                    format!(
                        "get_many of {} keys on {}: the backend answered {} values",
                        names.len(),
                        self.backend(),
                        texts.len()
                    ),
                ));
            }
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    texts
                        .get(i)
                        .map(|j| decode(name.as_ref(), Json::Text(j)))
                        .transpose()
                })
                .collect()
        })
        .await
    }

    /// Stores every `(name, value)` of `entries` for `ttl`, in one round
    /// trip (on Redis an `MSET`, or with a TTL one script call of `SET … EX`
    /// per key, a pipeline where the server refuses `EVAL`; per hash slot on
    /// a cluster; one write batch on RocksDB). A name given twice keeps its last value.
    pub async fn set_many<T: Serialize, S: AsRef<str>>(
        &self,
        entries: &[(S, T)],
        ttl: Ttl,
    ) -> Result<()> {
        let set = || {
            let entries = entries
                .iter()
                .map(|(name, value)| {
                    let name = name.as_ref();
                    Ok((Arc::from(name), self.encode(name, value)?))
                })
                .collect::<Result<_>>()?;
            Ok(SetMany {
                entries,
                ttl: self.resolve_ttl(ttl),
            })
        };
        self.run(Op::SetMany, set, Ok).await
    }

    /// Deletes `names`; answers how many held a live value.
    pub async fn delete_many<S: AsRef<str>>(&self, names: &[S]) -> Result<u64> {
        let delete = || {
            Ok(DeleteMany {
                keys: names.iter().map(|n| Arc::from(n.as_ref())).collect(),
            })
        };
        self.run(Op::DeleteMany, delete, Ok).await
    }

    /// Deletes every name that starts with `prefix`; answers how many were
    /// removed. Redis and Dragonfly: `SCAN MATCH prefix*` (glob characters
    /// in the prefix are escaped) with `UNLINK`, a batch at a time, on every
    /// master of a cluster; other callers wait at most one batch. RocksDB:
    /// one range deletion.
    ///
    /// An empty prefix is refused: that is [`clear`](Self::clear).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let delete = || {
            if prefix.is_empty() {
                return Err(KeystoreError::new(
                    ErrorKind::Usage,
                    "delete_prefix(\"\") would delete every key; call clear() if that is meant",
                ));
            }
            Ok(DeletePrefix {
                prefix: prefix.into(),
            })
        };
        self.run(Op::DeletePrefix, delete, Ok).await
    }

    /// Deletes every key this keystore can address; answers how many.
    ///
    /// **Blast radius**: on Redis and Dragonfly that is every key of the
    /// database the connection uses (on a cluster, of every master),
    /// including keys other programs wrote there, since the stored format
    /// has no namespace of its own. On RocksDB it is the whole database.
    /// Nothing calls it implicitly; the CLI's `clear` asks for `--yes`.
    pub async fn clear(&self) -> Result<u64> {
        let clear = || Ok(DeletePrefix { prefix: "".into() });
        self.run(Op::Clear, clear, Ok).await
    }

    /// The remaining lifetime of `name`: [`Ttl::Seconds`] (whole seconds,
    /// rounded up on RocksDB, as the server counts on Redis), [`Ttl::Never`],
    /// or `None` when it is missing or expired.
    pub async fn ttl(&self, name: &str) -> Result<Option<Ttl>> {
        let ttl = || Ok(TtlOf { key: name.into() });
        self.run(Op::Ttl, ttl, Ok).await
    }

    /// The value cached under `name`, or, when there is none, the value
    /// `loader` produces, stored for `ttl` and returned.
    ///
    /// **Single flight**: concurrent callers in this process that miss the
    /// same name run `loader` once; the others wait for its value. The
    /// loader runs in a task of its own, so a caller that stops waiting (its
    /// future dropped, or its request timeout) does not cancel it for the
    /// others, and its value is still stored. A loader error reaches every
    /// waiter as an [`ErrorKind::Loader`] error whose
    /// [`source`](std::error::Error::source) is the loader's error itself
    /// (downcast it to the loader's type; a `String` or `&str` error is its
    /// text), and stores nothing; a loader that panics does the same; neither poisons
    /// the name: the next call runs the loader again. Each caller waits at
    /// most the request timeout.
    ///
    /// **Across processes** (off by default): with
    /// `keystore.get_or_set_lock_ms` set, on Redis and Dragonfly a load
    /// first takes `SET <name>:lock <token> NX PX <ms>`; processes that find
    /// it taken re-read the name until its value is stored, or the lock is
    /// gone (released by a failed load, or expired with a holder that died)
    /// and one of them takes it.
    ///
    /// Counted as `get_or_set`: a hit when the value was cached, a miss when
    /// it was loaded (or the caller waited for a load).
    pub async fn get_or_set<T, F, Fut, E>(&self, name: &str, ttl: Ttl, loader: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        self.get_or_load(name, ttl, loader).await
    }

    /// Health check with the reason: PING on Redis/Dragonfly, a read on RocksDB.
    pub async fn ping(&self) -> Result<()> {
        self.run(Op::Ping, || Ok(Ping), Ok).await
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
        self.engine().purge_expired().await
    }

    /// Counts of hits, misses, latency and errors since the keystore started.
    pub async fn stats(&self) -> Stats {
        self.engine().stats().await
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
        self.engine().flush_metrics().await;
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
        if !self.is_enabled() {
            return;
        }
        self.engine().begin_stop();
        // Joining the engine thread and waiting for the database blocks: do it
        // on a plain thread so no executor thread is held up.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("objdatakey-shutdown".into())
            .spawn(move || {
                me.engine().wait_stopped();
                // Before answering: the caller's own handle must be the last
                // one, so what the keystore holds (its `/metrics` listener)
                // is gone when `shutdown()` returns.
                drop(me);
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
        self.inject(crate::command::fault::Panic).await
    }

    /// Holds one backend worker busy for `d` (tests of backpressure only).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub async fn inject_backend_stall(&self, d: std::time::Duration) -> Result<()> {
        self.inject(crate::command::fault::Stall(d)).await
    }

    /// Makes RocksDB stop every write (`true`) or lets them go again
    /// (tests of the in-place write's fallback to the pool only).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_write_stall(&self, on: bool) -> Result<()> {
        match self.engine().live() {
            Some(engine) => engine.inject_write_stall(on),
            None => Ok(()),
        }
    }

    /// RocksDB's own count of write calls (batches) and of keys written to
    /// the values since the database was opened (tests of the group commit
    /// of concurrent SETs only).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn rocksdb_writes_and_keys(&self) -> Result<(u64, u64)> {
        match self.engine().live() {
            Some(engine) => engine.rocksdb_writes_and_keys(),
            None => Ok((0, 0)),
        }
    }

    /// Runs an injected fault through the engine, unrecorded.
    #[cfg(feature = "fault-injection")]
    async fn inject<C: crate::command::Command<Answer = ()>>(&self, command: C) -> Result<()> {
        self.engine().call(command).await
    }

    /// The synchronous face of this keystore, for code outside any async runtime.
    #[must_use]
    pub fn blocking(&self) -> BlockingKeystore {
        BlockingKeystore::new(self.clone())
    }
}

/// What an operation's answer says for the metrics.
trait Recorded {
    /// The outcome of `op` that answered this.
    fn outcome(&self, _op: Op) -> Outcome {
        Outcome::Ok
    }
}

impl<T> Recorded for Option<T> {
    fn outcome(&self, op: Op) -> Outcome {
        match (op.has_hits(), self.is_some()) {
            (false, _) => Outcome::Ok,
            (true, true) => Outcome::Hit,
            (true, false) => Outcome::Miss,
        }
    }
}

impl Recorded for () {}
impl Recorded for bool {}
impl Recorded for u64 {}
impl<T> Recorded for Vec<T> {}

impl Keystore {
    /// One operation: `build` makes its call (the value's JSON, the TTL
    /// resolved), the engine runs it, `finish` turns the answer into the
    /// caller's, and the outcome is recorded as `op`.
    ///
    /// A combinator, not an `async fn`, like [`recorded`](Self::recorded):
    /// the operation's future is the recorded one itself, not one more
    /// state machine around it.
    fn run<'a, K: Call + 'a, O: Recorded + 'a>(
        &'a self,
        op: Op,
        build: impl FnOnce() -> Result<K> + 'a,
        finish: impl FnOnce(K::Answer) -> Result<O> + 'a,
    ) -> impl Future<Output = Result<O>> + 'a {
        self.recorded(op, async move {
            let answer = finish(self.engine().call(build()?).await?)?;
            let outcome = answer.outcome(op);
            Ok((answer, outcome))
        })
    }

    /// Runs `work` and records its outcome and latency as `op`, timed from
    /// now. A combinator, not an `async fn`: an `async fn` would hold `work`
    /// (every operation's whole state) twice, and every call copies it.
    fn recorded<'e, O>(
        &'e self,
        op: Op,
        work: impl Future<Output = Result<(O, Outcome)>> + 'e,
    ) -> impl Future<Output = Result<O>> + 'e {
        let started = Instant::now();
        work.map(move |result| {
            if let Some(recorder) = self.engine().recorder() {
                let outcome = match &result {
                    Ok((_, outcome)) => *outcome,
                    Err(e) => Outcome::Error(e.kind()),
                };
                recorder.op(op, outcome, started.elapsed());
            }
            result.map(|(answer, _)| answer)
        })
    }

    /// Seconds to store for, `None` for never: `ttl` against the default
    /// TTL, raised to the backend's minimum.
    fn resolve_ttl(&self, ttl: Ttl) -> Option<u64> {
        let config = &self.inner.config;
        ttl.resolve(config.default_ttl)
            .map(|t| t.max(config.backend.min_ttl()))
    }
}

impl Keystore {
    /// `value` as the JSON text to store under `name`, or an error naming
    /// `name`: a name or text larger than the keystore takes
    /// (`keystore.max_key_bytes`, `keystore.max_value_bytes`), or a value
    /// nested deeper than serde_json reads back (see [`depth`]: serializing
    /// it would otherwise recurse until the stack overflows).
    fn encode<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<String> {
        self.name_fits(name)?;
        let json = serde_json::to_string(&depth::Limited::new(value)).map_err(|e| {
            KeystoreError::new(
                ErrorKind::Serialization,
                format!("cannot encode the value for key {name:?} as JSON"),
            )
            .with_source(e)
        })?;
        let max = self.inner.config.engine.max_value_bytes;
        if json.len() > max {
            return Err(KeystoreError::new(
                ErrorKind::TooLarge,
                format!(
                    "the value for key {:?} is {} bytes of JSON, more than \
                     keystore.max_value_bytes ({max}); nothing was sent to {}. Store \
                     less under one name, or raise the limit",
                    shown(name),
                    json.len(),
                    self.backend()
                ),
            ));
        }
        Ok(json)
    }

    /// Refuses a name longer than `keystore.max_key_bytes`, before a write
    /// under it.
    fn name_fits(&self, name: &str) -> Result<()> {
        let max = self.inner.config.engine.max_key_bytes;
        if name.len() <= max {
            return Ok(());
        }
        Err(KeystoreError::new(
            ErrorKind::TooLarge,
            format!(
                "key {:?} is {} bytes long, more than keystore.max_key_bytes ({max}); \
                 nothing was sent to {}. Use a shorter name (a hash of a long one), or \
                 raise the limit",
                shown(name),
                name.len(),
                self.backend()
            ),
        ))
    }
}

/// `name` for a message: its first 64 characters, and `…` when there are more.
fn shown(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_owned(),
    }
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("backend", &self.backend())
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}
