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
//! 3. **tier**: with `keystore.l1` on, a write updates or drops the
//!    in-process copies and publishes the names on the backplane
//!    ([`tiered`]);
//! 4. **finish**: the reply becomes the typed answer (a decoded value, a
//!    count, a flag);
//! 5. **record**: one outcome (hit, miss, ok or the error's kind) and the
//!    latency, counted for the operation's `op` label.
//!
//! Reads of one name (`get_cache`, `get_or_set`) take the same steps
//! through [`Keystore::read_one`]: the tier's fresh copy, else RocksDB's
//! memory read, else the engine call (filling the tier), else, when the
//! backend failed, the tier's stale copy (`keystore.fail_safe`).
//!
//! Adding an operation means a [`Command`] variant, its backend handling and
//! a method here that calls `run` with its finish step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{Command, Reply};
use crate::clock::Clock;
use crate::config::{BackendKind, Config, Overrides};
use crate::engine::{self, Engine, in_place};
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::format::Json;
use crate::metrics::{MetricsRegistry, MetricsServer, Op, Outcome, Stats, TierCount};
use crate::tier;
use crate::ttl::Ttl;
use decode::decode;
use tiered::Touch;

mod blocking;
mod builder;
mod decode;
mod depth;
mod flight;
mod lock;
mod tiered;

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
    /// `get_or_set` loads under way (see [`flight`]).
    flights: Arc<flight::Flights>,
    /// The time source of TTLs (tier lifetimes and eager refresh use it too).
    clock: Clock,
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
        clock: Clock,
    ) -> Keystore {
        Keystore {
            inner: Arc::new(Inner {
                config,
                engine,
                registry,
                server,
                flights: Arc::default(),
                clock,
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
    /// command, the engine runs it, the tier learns what a write changed,
    /// `finish` turns the reply into the answer, and the outcome is recorded
    /// as `op`. With the keystore disabled the answer is `disabled()`, and
    /// nothing runs.
    async fn run<O: Recorded>(
        &self,
        op: Op,
        disabled: impl FnOnce() -> Result<O>,
        resolve: impl FnOnce() -> Result<Command>,
        finish: impl FnOnce(Reply) -> Result<O>,
    ) -> Result<O> {
        self.run_reading(op, |_| None, disabled, resolve, finish)
            .await
    }

    /// [`run`](Self::run) for a read that memory may answer before the
    /// command is even built (`memory`: no allocation on a warm RocksDB
    /// read; `None` builds and sends the command).
    async fn run_reading<O: Recorded>(
        &self,
        op: Op,
        memory: impl FnOnce(&Engine) -> Option<Result<Reply>>,
        disabled: impl FnOnce() -> Result<O>,
        resolve: impl FnOnce() -> Result<Command>,
        finish: impl FnOnce(Reply) -> Result<O>,
    ) -> Result<O> {
        let Some(engine) = self.engine() else {
            return disabled();
        };
        self.recorded(engine, op, async {
            let reply = match memory(engine) {
                Some(answer) => {
                    in_place::share_the_thread().await;
                    answer?
                }
                None => {
                    let command = resolve()?;
                    let touch = engine
                        .tier()
                        .and_then(|t| Some((t, Touch::of(t, &command)?)));
                    let reply = engine.call(command).await;
                    if let Some((tier, touch)) = touch {
                        self.touched(engine, tier, touch, reply.is_ok()).await;
                    }
                    reply?
                }
            };
            let answer = finish(reply)?;
            let outcome = answer.outcome(op);
            Ok((answer, outcome))
        })
        .await
    }

    /// Runs `work` and records its outcome and latency as `op`, timed from
    /// now. A combinator, not an `async fn`: an `async fn` would hold `work`
    /// (every operation's whole state) twice, and every call copies it.
    fn recorded<'e, O>(
        &self,
        engine: &'e Engine,
        op: Op,
        work: impl Future<Output = Result<(O, Outcome)>> + 'e,
    ) -> impl Future<Output = Result<O>> + 'e {
        let started = Instant::now();
        work.map(move |result| {
            if let Some(recorder) = engine.recorder() {
                let outcome = match &result {
                    Ok((_, outcome)) => *outcome,
                    Err(e) => Outcome::Error(e.kind()),
                };
                recorder.op(op, outcome, started.elapsed());
            }
            result.map(|(answer, _)| answer)
        })
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
        let resolve = || {
            Ok(Command::Set {
                key: name.into(),
                json: encode(name, value)?,
                ttl: self.resolve_ttl(ttl),
            })
        };
        self.run(Op::Set, || Ok(()), resolve, done).await
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
        let Some(engine) = self.engine() else {
            return Ok(None);
        };
        self.recorded(engine, Op::Get, async {
            let found = self.read_one(engine, name, false, |json| decode(name, json));
            let value = found.await?.map(|f| f.value);
            let outcome = value.outcome(Op::Get);
            Ok((value, outcome))
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
        self.run(
            Op::Delete,
            || Ok(false),
            delete,
            |reply| match reply {
                Reply::Deleted(b) => Ok(b),
                other => Err(unexpected(other)),
            },
        )
        .await
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
        if let Some(engine) = self.engine()
            && let Some(tier) = engine.tier()
        {
            return self
                .recorded(engine, Op::GetMany, async {
                    let keys: Vec<Arc<str>> = names.iter().map(|n| Arc::from(n.as_ref())).collect();
                    let texts = self.read_many(engine, tier, &keys).await?;
                    let values = keys
                        .iter()
                        .zip(texts)
                        .map(|(name, t)| {
                            t.map(|t| decode(name, Json::Text(t.as_str()))).transpose()
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok((values, Outcome::Ok))
                })
                .await;
        }
        let get = || {
            Ok(Command::GetMany {
                keys: names.iter().map(|n| Arc::from(n.as_ref())).collect(),
            })
        };
        self.run_reading(
            Op::GetMany,
            |engine| engine.read_many_from_memory(names),
            || Ok(names.iter().map(|_| None).collect()),
            get,
            |reply| match reply {
                Reply::Values(values) if values.len() == names.len() => names
                    .iter()
                    .zip(values)
                    .map(|(name, json)| {
                        json.map(|j| decode(name.as_ref(), Json::Text(&j)))
                            .transpose()
                    })
                    .collect(),
                Reply::Texts(texts) if texts.len() == names.len() => names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        texts
                            .get(i)
                            .map(|j| decode(name.as_ref(), Json::Text(j)))
                            .transpose()
                    })
                    .collect(),
                other => Err(unexpected(other)),
            },
        )
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
        let resolve = || {
            let entries = entries
                .iter()
                .map(|(name, value)| {
                    let name = name.as_ref();
                    Ok((Arc::from(name), encode(name, value)?))
                })
                .collect::<Result<_>>()?;
            Ok(Command::SetMany {
                entries,
                ttl: self.resolve_ttl(ttl),
            })
        };
        self.run(Op::SetMany, || Ok(()), resolve, done).await
    }

    /// Deletes `names`; answers how many held a live value.
    pub async fn delete_many<S: AsRef<str>>(&self, names: &[S]) -> Result<u64> {
        let delete = || {
            Ok(Command::DeleteMany {
                keys: names.iter().map(|n| Arc::from(n.as_ref())).collect(),
            })
        };
        self.run(Op::DeleteMany, || Ok(0), delete, count).await
    }

    /// Deletes every name that starts with `prefix`; answers how many were
    /// removed. Redis and Dragonfly: `SCAN MATCH prefix*` (glob characters
    /// in the prefix are escaped) with `UNLINK`, a batch at a time, on every
    /// master of a cluster; other callers wait at most one batch. RocksDB:
    /// one range deletion.
    ///
    /// An empty prefix is refused: that is [`clear`](Self::clear).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let resolve = || {
            if prefix.is_empty() {
                return Err(KeystoreError::new(
                    ErrorKind::Usage,
                    "delete_prefix(\"\") would delete every key; call clear() if that is meant",
                ));
            }
            Ok(Command::DeletePrefix {
                prefix: prefix.into(),
            })
        };
        self.run(Op::DeletePrefix, || Ok(0), resolve, count).await
    }

    /// Deletes every key this keystore can address; answers how many.
    ///
    /// **Blast radius**: on Redis and Dragonfly that is every key of the
    /// database the connection uses (on a cluster, of every master),
    /// including keys other programs wrote there, since the stored format
    /// has no namespace of its own. On RocksDB it is the whole database.
    /// Nothing calls it implicitly; the CLI's `clear` asks for `--yes`.
    pub async fn clear(&self) -> Result<u64> {
        let resolve = || Ok(Command::DeletePrefix { prefix: "".into() });
        self.run(Op::Clear, || Ok(0), resolve, count).await
    }

    /// The remaining lifetime of `name`: [`Ttl::Seconds`] (whole seconds,
    /// rounded up on RocksDB, as the server counts on Redis), [`Ttl::Never`],
    /// or `None` when it is missing or expired.
    pub async fn ttl(&self, name: &str) -> Result<Option<Ttl>> {
        let ttl = || Ok(Command::Ttl { key: name.into() });
        self.run(
            Op::Ttl,
            || Ok(None),
            ttl,
            |reply| match reply {
                Reply::Remaining(left) => Ok(left),
                other => Err(unexpected(other)),
            },
        )
        .await
    }

    /// The value cached under `name`, or, when there is none, the value
    /// `loader` produces, stored for `ttl` and returned.
    ///
    /// **Single flight**: concurrent callers in this process that miss the
    /// same name run `loader` once; the others wait for its value. The
    /// loader runs in a task of its own, so a caller that stops waiting (its
    /// future dropped, or its request timeout) does not cancel it for the
    /// others, and its value is still stored. A loader error reaches every
    /// waiter as an [`ErrorKind::Loader`] error (its text in the source) and
    /// stores nothing; a loader that panics does the same; neither poisons
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
        E: std::fmt::Display + Send + 'static,
    {
        let Some(engine) = self.engine() else {
            return loader().await.map_err(|e| loader_failed(name, &e));
        };
        let eager = self.inner.config.tier.eager_refresh;
        self.recorded(engine, Op::GetOrSet, async {
            let found = self.read_one(engine, name, eager > 0.0, |json| decode(name, json));
            if let Some(found) = found.await? {
                let value = found.value;
                if let (Some(expires_at), Some(secs)) = (found.expires_at, self.resolve_ttl(ttl))
                    && tier::is_due(self.inner.clock.now_unix(), expires_at, secs, eager)
                    && let flight::Joined::Leader(_, takeoff) =
                        self.inner.flights.join_or_start(name)
                {
                    // Eager refresh: this caller has its value; the reload
                    // runs detached, once per name at a time (the flight).
                    if let Some(r) = engine.recorder() {
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
        E: std::fmt::Display + Send + 'static,
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
        E: std::fmt::Display,
    {
        // Another flight of this name may have stored the value between this
        // caller's miss and the start of this flight: then no load at all.
        if look_first && let Some(json) = self.get_json(name).await? {
            return Ok(Arc::from(json));
        }
        let (Some(hold), Some(engine)) = (self.lock_hold(), self.engine()) else {
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
        E: std::fmt::Display,
    {
        let value = match std::panic::AssertUnwindSafe(load).catch_unwind().await {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => return Err(loader_failed(name, &e)),
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
        let json = encode(name, &value)?;
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

    /// Health check with the reason: PING on Redis/Dragonfly, a read on RocksDB.
    pub async fn ping(&self) -> Result<()> {
        let disabled = || {
            Err(KeystoreError::new(
                ErrorKind::Config,
                "the keystore is disabled (keystore.enabled: false)",
            ))
        };
        self.run(Op::Ping, disabled, || Ok(Command::Ping), done)
            .await
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
        self.inject(Command::Panic).await
    }

    /// Holds one backend worker busy for `d` (tests of backpressure only).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub async fn inject_backend_stall(&self, d: std::time::Duration) -> Result<()> {
        self.inject(Command::Stall(d)).await
    }

    /// Makes RocksDB stop every write (`true`) or lets them go again
    /// (tests of the in-place write's fallback to the pool only).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_write_stall(&self, on: bool) -> Result<()> {
        match self.engine() {
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
        match self.engine() {
            Some(engine) => engine.rocksdb_writes_and_keys(),
            None => Ok((0, 0)),
        }
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

/// `value` as JSON text, or an error naming `name`. A value nested deeper
/// than serde_json reads back is refused (see [`depth`]): serializing it
/// would otherwise recurse until the stack overflows.
fn encode<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<String> {
    serde_json::to_string(&depth::Limited::new(value)).map_err(|e| {
        KeystoreError::new(
            ErrorKind::Serialization,
            format!("cannot encode the value for key {name:?} as JSON"),
        )
        .with_source(e)
    })
}

/// The error every waiter of a failed loader gets.
fn loader_failed(name: &str, e: &dyn std::fmt::Display) -> KeystoreError {
    KeystoreError::new(
        ErrorKind::Loader,
        format!("get_or_set of key {name:?}: the loader failed; nothing was stored"),
    )
    .with_source(e.to_string())
}

/// The finish step of operations answered by a count.
fn count(reply: Reply) -> Result<u64> {
    match reply {
        Reply::Count(n) => Ok(n),
        other => Err(unexpected(other)),
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
