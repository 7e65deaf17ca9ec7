//! The engine: the actors behind a keystore, how a request reaches them, and
//! how they stop.
//!
//! # The actor map
//! ```text
//!   Keystore (cloneable handle; keystore/)
//!     │  Engine::call(call)               engine/request.rs
//!     │    no-op engine: the command's disabled() answer
//!     │    tier: the write's Touch, applied after (and published)
//!     │    ① RocksDB in place             (caller's thread, no actor; engine/in_place.rs)
//!     │    admit: Limiter permit + Deadline
//!     │    route: ② Redis direct path     (caller's task, over the actor's connection)
//!     │           ③ CurrentBackend::send  (Job → backend mailbox, reply on a oneshot)
//!     ▼
//!   Supervisor (actor)                    engine/supervisor.rs
//!     │ owns: what CurrentBackend holds (one backend generation at a time),
//!     │       the Janitor (RocksDB only), the Backplane (tier with a backplane)
//!     │ receives: BackendFailed (weak recipient held by each backend),
//!     │           PurgeExpired, Stop
//!     ├── RocksDB worker pool             backend/rocksdb/pool.rs
//!     │     threads fed by a crossbeam channel (the BackendTx::Pool sender)
//!     ├── RedisActor                      backend/redis/actor.rs
//!     │     actix mailbox (BackendTx::Redis) + RedisDirect beside it
//!     ├── Backplane (actor)               backend/redis/backplane.rs
//!     │     its own pub/sub connection; hands invalidations to the tier
//!     └── Janitor (actor)                 engine/janitor.rs
//!           sends Sweep jobs through the same CurrentBackend
//!   MetricsActor (actor)                  engine/metrics_actor.rs
//!     drains the Recorder (striped counters + event channel) every 100 ms
//!     into Stats and the Prometheus handles; receives Snapshot, Flush
//! ```
//! The actors run in the caller's actix System when there is one, else in a
//! System of our own on a dedicated thread ([`host`]). A disabled keystore
//! (`keystore.enabled: false`) is [`Engine::Noop`]: no actor runs.
//!
//! # The two shortcuts
//! Both skip the actor hop but not the actor's ownership: ① uses the open
//! RocksDB store on the caller's thread, for reads only when memory can
//! answer (`ReadTier::BlockCache`) and for writes only when RocksDB takes
//! them without a stall (`no_slowdown`), falling back to the pool otherwise
//! (concurrent SETs there are written as one batch:
//! `backend/rocksdb/group.rs`); ② uses the
//! connection the Redis actor opened and keeps healthy, and falls back to
//! the mailbox while the actor has none ready.
//!
//! # Shutdown, driven by ownership
//! `Keystore::shutdown()` or dropping the last handle: the engine empties the
//! in-place store and the backend slot (new calls answer `Shutdown`),
//! closes the limiter, and tells the supervisor to stop. The supervisor's
//! stop drops the janitor's stop sender (the janitor wakes and stops) and
//! the backend's mailbox: pool workers finish their queue and exit when
//! their channel disconnects, the last one dropping the store, which closes
//! the database; the Redis actor stops when its last address goes. The
//! metrics actor stops when every recorder is gone. An owned engine thread
//! is then joined, and the caller waits (bounded) until the store has closed
//! and its lock is free: `shutdown().await` and a synchronous drop wait; a
//! drop inside async code hands that wait to a plain thread, so no executor
//! thread blocks.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use arc_swap::ArcSwapOption;
use tokio::sync::oneshot;

use crate::backend::CurrentBackend;
use crate::backend::redis::RedisTarget;
use crate::backend::rocksdb::RocksStore;
use crate::clock::Clock;
use crate::config::{BackendKind, Config};
use crate::error::{ErrorKind, KeystoreError, Result};
use crate::metrics::handles::EngineMetrics;
use crate::metrics::{Event, MetricsRegistry, Recorder, Stats};
use crate::tier::Tier;

pub(crate) mod background;
pub(crate) mod host;
pub(crate) mod in_place;
pub(crate) mod janitor;
pub(crate) mod limiter;
pub(crate) mod metrics_actor;
pub(crate) mod request;
pub(crate) mod supervisor;
mod tiered;
pub(crate) mod timer;

use host::{Host, MayWait};
use limiter::Limiter;
use metrics_actor::{Flush, MetricsActor, Snapshot};
use supervisor::{BackendSpec, PurgeExpired, Stop, Supervisor};

/// How long stopping waits for the database to close.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The running actors, as the engine reaches them.
struct Actors {
    supervisor: Addr<Supervisor>,
    metrics: Addr<MetricsActor>,
    backend: Arc<CurrentBackend>,
    recorder: Recorder,
}

/// What [`Engine::open`] needs besides the config.
pub(crate) struct EngineOptions {
    /// The time source for TTLs.
    pub clock: Clock,
    /// Where to record; `None` turns recording off entirely.
    pub metrics: Option<MetricsRegistry>,
    /// Redis: the runtime that carries the connection's I/O (`None`: the engine's).
    pub io_runtime: Option<tokio::runtime::Handle>,
}

/// The engine behind the handles: running, or the no-op engine of a
/// disabled keystore (`keystore.enabled: false`), where every command
/// answers its own `disabled()` and nothing runs.
// One per keystore, inside its `Arc`: boxing the live engine would add a
// pointer chase to every call for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Engine {
    Live(Live),
    Noop(BackendKind),
}

/// The running engine: the actors, the limiter, the shortcuts.
pub(crate) struct Live {
    backend: BackendKind,
    /// `None` only while dropping.
    actors: Option<Actors>,
    limiter: Limiter,
    /// The request timeout: the budget of every call's deadline.
    timeout: Duration,
    /// Network backends: the server's address, named in the engine's own
    /// errors (a deadline, a full engine) as the backend's errors name it.
    address: Option<String>,
    host: parking_lot::Mutex<Host>,
    /// Disconnects when the embedded database is closed (its lock released).
    closed: Option<crossbeam_channel::Receiver<()>>,
    /// RocksDB only: the store, for reads that memory can answer and writes
    /// that need not wait, on the caller's thread (shortcut ①). Emptied at
    /// shutdown so the database can close.
    in_place: ArcSwapOption<RocksStore>,
    /// The in-process tier (`keystore.l1.enabled`); the backplane actor
    /// holds it too, to drop what other instances changed.
    tier: Option<Arc<Tier>>,
}

impl Engine {
    /// Opens the backend `config` selects and starts the actors.
    pub(crate) fn open(config: &Config, options: EngineOptions) -> Result<Engine> {
        Live::open(config, options).map(Engine::Live)
    }

    /// The running engine; `None` for the no-op one.
    pub(crate) fn live(&self) -> Option<&Live> {
        match self {
            Engine::Live(live) => Some(live),
            Engine::Noop(_) => None,
        }
    }

    /// The recorder every call of this engine records into.
    pub(crate) fn recorder(&self) -> Option<&Recorder> {
        self.live()?.actors.as_ref().map(|a| &a.recorder)
    }

    /// A snapshot of the metrics (empty for the no-op engine).
    pub(crate) async fn stats(&self) -> Stats {
        match self {
            Engine::Live(live) => live.stats().await,
            Engine::Noop(backend) => Stats::empty(*backend),
        }
    }

    pub(crate) async fn flush_metrics(&self) {
        if let Some(live) = self.live() {
            live.flush_metrics().await;
        }
    }

    pub(crate) async fn purge_expired(&self) -> Result<u64> {
        match self.live() {
            Some(live) => live.purge_expired().await,
            None => Ok(0),
        }
    }

    /// Asks the engine to stop; the caller then waits for it with [`Engine::wait_stopped`].
    pub(crate) fn begin_stop(&self) {
        if let Some(live) = self.live() {
            live.begin_stop();
        }
    }

    pub(crate) fn wait_stopped(&self) {
        if let Some(live) = self.live() {
            live.wait_stopped();
        }
    }
}

impl Live {
    /// Opens the backend `config` selects and starts the actors.
    ///
    /// RocksDB is opened here, so a held lock or a missing directory is
    /// reported at once; network backends connect in the background.
    fn open(config: &Config, options: EngineOptions) -> Result<Live> {
        let mut address = None;
        let recording = Recorder::new(options.metrics.is_some());
        // A backplane only where instances share a server: one process owns
        // an embedded database.
        let backplane = config.tier.backplane && config.backend.is_network();
        let tier = config.tier.enabled.then(|| {
            Arc::new(Tier::new(
                &config.tier,
                backplane,
                options.clock.clone(),
                recording.0.clone(),
            ))
        });
        let (spec, closed, in_place) = match config.server() {
            None => {
                let (store, closed) = RocksStore::open(&config.rocksdb, options.clock)?;
                let store = Arc::new(store);
                let spec = BackendSpec::RocksDb {
                    store: store.clone(),
                    workers: config.rocksdb.workers,
                };
                (spec, Some(closed), Some(store))
            }
            Some(section) => {
                let timeout = config.engine.request_timeout;
                let target = RedisTarget::new(config.backend, section, timeout)?;
                address = Some(target.address().to_owned());
                let spec = BackendSpec::Redis {
                    target: Arc::new(target),
                    io: options.io_runtime,
                    backplane: tier
                        .clone()
                        .filter(|_| backplane)
                        .map(|t| (config.tier.channel.clone(), t as Arc<_>)),
                };
                (spec, None, None)
            }
        };
        let limiter = Limiter::new(config.engine.max_in_flight);
        let (actors, host) = {
            let limiter = limiter.clone();
            let (backend, interval) = (config.backend, config.rocksdb.ttl_cleanup_interval);
            let registry = options.metrics;
            let tier = tier.clone();
            Host::start(move || {
                launch(backend, interval, spec, registry, recording, limiter, tier)
            })?
        };
        Ok(Live {
            backend: config.backend,
            actors: Some(actors),
            limiter,
            timeout: config.engine.request_timeout,
            address,
            host: parking_lot::Mutex::new(host),
            closed,
            in_place: ArcSwapOption::new(in_place),
            tier,
        })
    }

    fn actors(&self) -> Result<&Actors> {
        self.actors.as_ref().ok_or_else(shut_down)
    }

    /// A snapshot of the metrics actor's totals, with the in-flight figures.
    async fn stats(&self) -> Stats {
        let mut stats = match self.actors() {
            Ok(actors) => {
                let (tx, rx) = oneshot::channel();
                actors.metrics.do_send(Snapshot { reply: tx });
                rx.await.unwrap_or_else(|_| Stats::empty(self.backend))
            }
            Err(_) => Stats::empty(self.backend),
        };
        stats.max_in_flight = self.limiter.max();
        stats.in_flight = self.limiter.in_flight();
        if let Some(t) = self.tier.as_deref() {
            (stats.tier.bytes, stats.tier.entries) = t.weight();
        }
        stats
    }

    /// Waits until the metrics actor has applied everything recorded so far.
    async fn flush_metrics(&self) {
        if let Ok(actors) = self.actors() {
            let (tx, rx) = oneshot::channel();
            actors.metrics.do_send(Flush { reply: tx });
            let _ = rx.await;
        }
    }

    /// Asks the supervisor for a sweep now.
    async fn purge_expired(&self) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.actors()?
            .supervisor
            .do_send(PurgeExpired { reply: tx });
        rx.await.unwrap_or_else(|_| Err(shut_down()))
    }

    /// Empties the shortcuts and the current backend, closes the limiter
    /// and tells the supervisor to stop.
    fn begin_stop(&self) {
        self.in_place.store(None);
        if let Some(a) = &self.actors {
            a.backend.set(None);
            a.supervisor.do_send(Stop);
        }
        self.limiter.close();
    }

    /// Stops an owned engine thread and waits until the database is closed.
    fn wait_stopped(&self) {
        let may_wait = self.host.lock().stop();
        wait_closed(may_wait, self.closed.as_ref());
    }
}

/// Waits (bounded) until the embedded database has closed, when allowed.
fn wait_closed(may_wait: MayWait, closed: Option<&crossbeam_channel::Receiver<()>>) {
    if may_wait == MayWait::Yes
        && let Some(closed) = closed
        && !matches!(
            closed.recv_timeout(CLOSE_WAIT),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        )
    {
        tracing::warn!("the embedded database was still open 10 s after shutdown");
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.begin_stop();
        self.actors = None;
        if tokio::runtime::Handle::try_current().is_err() {
            // Synchronous code: wait, so the path can be reopened right away.
            self.wait_stopped();
            return;
        }
        // Async code: joining the engine thread and waiting for the database
        // (a slow call can hold a pool worker for seconds) would block an
        // executor thread, on a current-thread runtime the only one. Hand the
        // wait to a plain thread; `shutdown().await` is how async code learns
        // that the database has closed.
        let mut host = std::mem::replace(&mut *self.host.lock(), Host::Shared);
        let closed = self.closed.take();
        let spawned = std::thread::Builder::new()
            .name("objdatakey-close".into())
            .spawn(move || wait_closed(host.stop(), closed.as_ref()));
        if let Err(e) = spawned {
            tracing::warn!("cannot start a thread to wait for the engine to stop: {e}");
        }
    }
}

/// Starts the actors; runs inside an actix System.
fn launch(
    backend: BackendKind,
    sweep_interval: Duration,
    spec: BackendSpec,
    registry: Option<MetricsRegistry>,
    (recorder, events, dropped): (
        Recorder,
        crossbeam_channel::Receiver<Event>,
        Arc<std::sync::atomic::AtomicU64>,
    ),
    limiter: Limiter,
    tier: Option<Arc<Tier>>,
) -> Actors {
    let prom = registry.map(|r| EngineMetrics::new(r, backend, limiter.max()));
    let metrics = MetricsActor::new(
        backend,
        events,
        dropped,
        recorder.counters(),
        prom,
        limiter,
        tier,
    )
    .start();
    let backend = Arc::new(CurrentBackend::default());
    let supervisor = Supervisor::launch(sweep_interval, spec, backend.clone(), recorder.clone());
    Actors {
        supervisor,
        metrics,
        backend,
        recorder,
    }
}

pub(crate) fn shut_down() -> KeystoreError {
    KeystoreError::new(
        ErrorKind::Shutdown,
        "the keystore has shut down; create a new one to keep going",
    )
}
