//! [`Keystore`]: the cloneable handle callers use, and [`BlockingKeystore`],
//! its synchronous face.
//!
//! A request takes a permit from the in-flight limiter (waiting, at most until
//! its deadline, when the engine is full), goes straight to the backend actor
//! through the backend slot, and waits for the answer on a oneshot channel
//! until the same deadline. Two shortcuts skip the actor hop: warm RocksDB
//! reads are answered from memory on the caller's thread, and Redis commands
//! run on the caller's task over the connection the actor keeps. The
//! deadline's timer lives on the engine's own runtime (on the connection's,
//! for Redis), so the async API works from any executor and the blocking API
//! from any plain thread.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, TryAcquireError, oneshot};

use arc_swap::ArcSwapOption;

use crate::backend::rocksdb::RocksStore;
use crate::backend::{Command, Gone, Reply, Request};
use crate::builder::{KeystoreBuilder, Overrides};
use crate::config::{BackendKind, Config};
use crate::engine::metrics::{Flush, Snapshot};
use crate::engine::supervisor::{BackendFailed, PurgeExpired, Stop};
use crate::engine::{Actors, Host, wait_closed};
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::prometheus::{MetricsRegistry, MetricsServer};
use crate::stats::{Op, Outcome, Stats};
use crate::ttl::Ttl;

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
    /// Seconds below this are raised to it (5 on Redis and Dragonfly).
    min_ttl: u64,
    /// `None` when `keystore.enabled` is false: every call is then a no-op.
    engine: Option<Engine>,
    /// The registry this keystore records into (see [`Keystore::render_metrics`]).
    registry: MetricsRegistry,
    /// The `/metrics` listener this keystore keeps alive (`metrics.listen`).
    server: Option<MetricsServer>,
}

/// The running engine behind the handles.
pub(crate) struct Engine {
    /// `None` only while dropping.
    actors: Option<Actors>,
    /// Bounds requests in flight: actix mailboxes and our queues are unbounded
    /// in spirit, so the bound lives here, before anything is queued.
    limiter: Arc<Semaphore>,
    max_in_flight: usize,
    timeout: Duration,
    host: parking_lot::Mutex<Host>,
    /// Disconnects when the embedded database is closed (its lock released).
    closed: Option<crossbeam_channel::Receiver<()>>,
    /// RocksDB only: reads that memory can answer (memtable, block cache)
    /// are served on the caller's thread, skipping two thread hops and a
    /// timer; the rest go to the worker pool. Emptied at shutdown so the
    /// database can close.
    memory_reads: ArcSwapOption<RocksStore>,
}

impl Engine {
    pub(crate) fn new(
        actors: Actors,
        host: Host,
        max_in_flight: usize,
        timeout: Duration,
        closed: Option<crossbeam_channel::Receiver<()>>,
        memory_reads: Option<Arc<RocksStore>>,
    ) -> Self {
        Engine {
            memory_reads: ArcSwapOption::new(memory_reads),
            limiter: actors.limiter.clone(),
            actors: Some(actors),
            max_in_flight,
            timeout,
            host: parking_lot::Mutex::new(host),
            closed,
        }
    }

    fn actors(&self) -> Result<&Actors> {
        self.actors.as_ref().ok_or_else(shut_down)
    }

    /// Sends one command and waits for its answer, all within the request timeout.
    async fn call(
        &self,
        backend: BackendKind,
        op: Op,
        key: Option<&str>,
        command: Command,
    ) -> Result<Reply> {
        let actors = self.actors()?;
        let deadline = Instant::now() + self.timeout;
        // Made only where a request has to wait for one: the timer belongs to
        // the engine's runtime, whatever runs this future.
        let deadline_timer = || {
            let _rt = actors.rt.enter();
            tokio::time::sleep_until(deadline.into())
        };
        let what = || describe(op, key, backend);

        let permit = match self.limiter.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Err(shut_down()),
            Err(TryAcquireError::NoPermits) => tokio::select! {
                biased;
                p = self.limiter.clone().acquire_owned() => p.map_err(|_| shut_down())?,
                _ = deadline_timer() => return Err(self.busy(&what())),
            },
        };
        let timed_out = || {
            KeystoreError::new(
                ErrorKind::Timeout,
                format!(
                    "{} timed out after {} ms (keystore.request_timeout_ms)",
                    what(),
                    self.timeout.as_millis()
                ),
            )
        };
        // Redis with a ready connection: run it here, under the call's own
        // deadline timer. A caller that stops waiting frees its permit at
        // once; the command already on the wire is dropped by the connection
        // when its reply comes or its reply timeout (the same request
        // timeout) passes.
        if let Some((direct, conn)) = actors.slot.redis_direct() {
            let result = direct.call(conn, command, deadline).await;
            drop(permit);
            return result.unwrap_or_else(|| Err(timed_out()));
        }
        let (tx, rx) = oneshot::channel();
        let req = Request {
            command,
            deadline,
            reply: tx,
            _permit: Some(permit),
        };
        match actors.slot.send(req) {
            Ok(()) => {}
            Err(Gone(None)) => return Err(shut_down()),
            Err(Gone(Some(generation))) => {
                actors.supervisor.do_send(BackendFailed {
                    generation,
                    reason: "its workers are gone".into(),
                });
                return Err(KeystoreError::new(
                    ErrorKind::Backend,
                    format!(
                        "{}: the backend stopped; the supervisor is restarting it, retry the call",
                        what()
                    ),
                ));
            }
        }
        tokio::select! {
            biased;
            r = rx => r.unwrap_or_else(|_| Err(KeystoreError::new(
                ErrorKind::Backend,
                format!("{}: the backend stopped before answering; retry the call", what()),
            ))),
            _ = deadline_timer() => Err(timed_out()),
        }
    }

    /// The answer to a GET when memory alone can give it (see `memory_reads`).
    fn read_in_memory(&self, key: &str) -> Option<Result<Option<String>>> {
        let guard = self.memory_reads.load();
        let store = guard.as_ref()?;
        // A panic here is not the caller's: fall back to the pool, whose
        // supervisor handles backend panics.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.get_in_memory(key)))
            .ok()
            .flatten()
    }

    fn busy(&self, what: &str) -> KeystoreError {
        KeystoreError::new(
            ErrorKind::Busy,
            format!(
                "{what}: the engine stayed full ({} requests in flight) for {} ms; \
                 raise keystore.max_in_flight or lower the load",
                self.max_in_flight,
                self.timeout.as_millis()
            ),
        )
    }

    fn record(&self, op: Op, outcome: Outcome, started: Instant) {
        if let Some(a) = &self.actors {
            a.recorder.op(op, outcome, started.elapsed());
        }
    }

    /// Asks the engine to stop; the caller then waits for it with [`Engine::wait_stopped`].
    fn begin_stop(&self) {
        self.memory_reads.store(None);
        if let Some(a) = &self.actors {
            a.slot.set(None);
            a.supervisor.do_send(Stop);
        }
        self.limiter.close();
    }

    /// Stops an owned engine thread and waits until the database is closed.
    fn wait_stopped(&self) {
        let may_wait = self.host.lock().stop();
        if may_wait
            && let Some(c) = &self.closed
            && !wait_closed(c)
        {
            tracing::warn!("the embedded database was still open 10 s after shutdown");
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.begin_stop();
        self.actors = None;
        // Waits only where waiting can end (see `Host::stop`); in async code on
        // a shared actix thread, await `shutdown()` to know the backend closed.
        self.wait_stopped();
    }
}

fn shut_down() -> KeystoreError {
    KeystoreError::new(
        ErrorKind::Shutdown,
        "the keystore has shut down; create a new one to keep going",
    )
}

fn describe(op: Op, key: Option<&str>, backend: BackendKind) -> String {
    match key {
        Some(k) => format!("{} of key {k:?} on {backend}", op.as_str()),
        None => format!("{} on {backend}", op.as_str()),
    }
}

fn unexpected(reply: Reply) -> KeystoreError {
    KeystoreError::new(
        ErrorKind::Backend,
        format!("internal error: unexpected backend answer {reply:?}"),
    )
}

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

    pub(crate) fn assemble(
        config: Config,
        min_ttl: u64,
        engine: Option<Engine>,
        registry: MetricsRegistry,
        server: Option<MetricsServer>,
    ) -> Keystore {
        Keystore {
            inner: Arc::new(Inner {
                config,
                min_ttl,
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

    /// Stores `value` as JSON under `name` for `ttl`.
    ///
    /// On Redis and Dragonfly a TTL below 5 seconds is raised to 5.
    pub async fn set_cache<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        ttl: Ttl,
    ) -> Result<()> {
        let Some(engine) = self.engine() else {
            return Ok(());
        };
        let started = Instant::now();
        let result = async {
            let json = serde_json::to_string(value).map_err(|e| {
                KeystoreError::new(
                    ErrorKind::Serialization,
                    format!("cannot encode the value for key {name:?} as JSON"),
                )
                .with_source(e)
            })?;
            let ttl = ttl
                .resolve(self.inner.config.default_ttl)
                .map(|t| t.max(self.inner.min_ttl));
            let command = Command::Set {
                key: name.into(),
                json,
                ttl,
            };
            match engine
                .call(self.backend(), Op::Set, Some(name), command)
                .await?
            {
                Reply::Done => Ok(()),
                other => Err(unexpected(other)),
            }
        }
        .await;
        engine.record(Op::Set, outcome_of(&result), started);
        result
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
        let started = Instant::now();
        let answer = match engine.read_in_memory(name) {
            Some(answer) => answer.map(Reply::Value),
            None => {
                let command = Command::Get { key: name.into() };
                engine
                    .call(self.backend(), Op::Get, Some(name), command)
                    .await
            }
        };
        let result = match answer {
            Ok(Reply::Value(Some(json))) => {
                serde_json::from_str::<T>(&json).map(Some).map_err(|e| {
                    KeystoreError::new(
                        ErrorKind::Serialization,
                        format!(
                            "the value of key {name:?} is not a valid {}",
                            std::any::type_name::<T>()
                        ),
                    )
                    .with_source(e)
                })
            }
            Ok(Reply::Value(None)) => Ok(None),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(Some(_)) => Outcome::Hit,
            Ok(None) => Outcome::Miss,
            Err(e) => Outcome::Error(e.kind()),
        };
        engine.record(Op::Get, outcome, started);
        result
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
        let Some(engine) = self.engine() else {
            return Ok(false);
        };
        let started = Instant::now();
        let command = Command::Delete { key: name.into() };
        let result = match engine
            .call(self.backend(), Op::Delete, Some(name), command)
            .await
        {
            Ok(Reply::Deleted(b)) => Ok(b),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        };
        engine.record(Op::Delete, outcome_of(&result), started);
        result
    }

    /// Health check with the reason: PING on Redis/Dragonfly, a read on RocksDB.
    pub async fn ping(&self) -> Result<()> {
        let Some(engine) = self.engine() else {
            return Err(KeystoreError::new(
                ErrorKind::Config,
                "the keystore is disabled (keystore.enabled: false)",
            ));
        };
        let started = Instant::now();
        let result = match engine
            .call(self.backend(), Op::Ping, None, Command::Ping)
            .await
        {
            Ok(Reply::Done) => Ok(()),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        };
        engine.record(Op::Ping, outcome_of(&result), started);
        result
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
        let Some(engine) = self.engine() else {
            return Ok(0);
        };
        let (tx, rx) = oneshot::channel();
        engine
            .actors()?
            .supervisor
            .do_send(PurgeExpired { reply: tx });
        rx.await.unwrap_or_else(|_| Err(shut_down()))
    }

    /// Counts of hits, misses, latency and errors since the keystore started.
    pub async fn stats(&self) -> Stats {
        let Some(engine) = self.engine() else {
            return Stats::empty(self.backend());
        };
        let mut stats = match engine.actors() {
            Ok(actors) => {
                let (tx, rx) = oneshot::channel();
                actors.metrics.do_send(Snapshot { reply: tx });
                rx.await.unwrap_or_else(|_| Stats::empty(self.backend()))
            }
            Err(_) => Stats::empty(self.backend()),
        };
        stats.max_in_flight = engine.max_in_flight;
        stats.in_flight = engine
            .max_in_flight
            .saturating_sub(engine.limiter.available_permits());
        stats
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
        if let Some(actors) = self.engine().and_then(|e| e.actors.as_ref()) {
            let (tx, rx) = oneshot::channel();
            actors.metrics.do_send(Flush { reply: tx });
            let _ = rx.await;
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
        let (tx, rx) = oneshot::channel();
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
        let Some(engine) = self.engine() else {
            return Ok(());
        };
        engine
            .call(self.backend(), Op::Ping, None, Command::Panic)
            .await
            .map(|_| ())
    }

    /// Holds one backend worker busy for `d` (tests of backpressure only).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub async fn inject_backend_stall(&self, d: Duration) -> Result<()> {
        let Some(engine) = self.engine() else {
            return Ok(());
        };
        engine
            .call(self.backend(), Op::Ping, None, Command::Stall(d))
            .await
            .map(|_| ())
    }

    /// The synchronous face of this keystore, for code outside any async runtime.
    #[must_use]
    pub fn blocking(&self) -> BlockingKeystore {
        BlockingKeystore {
            keystore: self.clone(),
        }
    }
}

fn outcome_of<T>(r: &Result<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Error(e.kind()),
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

/// The blocking API: the same calls as [`Keystore`], for synchronous code.
///
/// Each call blocks the calling thread until the answer (or the request
/// timeout). Calling it from inside an async runtime is an error
/// ([`ErrorKind::Usage`]) rather than a deadlock: use the async methods there.
#[derive(Clone, Debug)]
pub struct BlockingKeystore {
    keystore: Keystore,
}

impl BlockingKeystore {
    fn run<F: Future>(&self, what: &str, f: F) -> Result<F::Output> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(KeystoreError::new(
                ErrorKind::Usage,
                format!(
                    "blocking {what} called on an async runtime thread; use the async method \
                     (`keystore.{what}(..).await`) there"
                ),
            ));
        }
        match self.keystore.engine().and_then(|e| e.actors.as_ref()) {
            Some(actors) => Ok(actors.rt.block_on(f)),
            // Disabled (or stopped): the futures complete without waiting.
            None => Ok(futures_util::FutureExt::now_or_never(f).ok_or_else(shut_down)?),
        }
    }

    /// The async handle this wraps.
    #[must_use]
    pub fn handle(&self) -> &Keystore {
        &self.keystore
    }

    /// See [`Keystore::set_cache`].
    pub fn set_cache<T: Serialize + ?Sized>(&self, name: &str, value: &T, ttl: Ttl) -> Result<()> {
        self.run("set_cache", self.keystore.set_cache(name, value, ttl))?
    }

    /// See [`Keystore::get_cache`].
    pub fn get_cache<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.run("get_cache", self.keystore.get_cache(name))?
    }

    /// See [`Keystore::get_json`].
    pub fn get_json(&self, name: &str) -> Result<Option<String>> {
        self.run("get_json", self.keystore.get_json(name))?
    }

    /// See [`Keystore::delete`].
    pub fn delete(&self, name: &str) -> Result<bool> {
        self.run("delete", self.keystore.delete(name))?
    }

    /// See [`Keystore::ping`].
    pub fn ping(&self) -> Result<()> {
        self.run("ping", self.keystore.ping())?
    }

    /// See [`Keystore::has_keystore`].
    #[must_use]
    pub fn has_keystore(&self) -> bool {
        self.ping().is_ok()
    }

    /// See [`Keystore::purge_expired`].
    pub fn purge_expired(&self) -> Result<u64> {
        self.run("purge_expired", self.keystore.purge_expired())?
    }

    /// See [`Keystore::stats`].
    pub fn stats(&self) -> Result<Stats> {
        self.run("stats", self.keystore.stats())
    }

    /// See [`Keystore::backend`].
    #[must_use]
    pub fn backend(&self) -> BackendKind {
        self.keystore.backend()
    }
}
