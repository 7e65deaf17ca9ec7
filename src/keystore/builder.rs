//! [`KeystoreBuilder`]: how a [`Keystore`] is made.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Inner, Keystore};
use crate::clock::Clock;
use crate::config::{BackendKind, Config, ConfigLoader, Overrides};
use crate::engine::{Engine, EngineOptions};
use crate::error::Result;
use crate::metrics::{MetricsRegistry, MetricsServer};

/// Builds a [`Keystore`].
///
/// Defaults: the config from [`Config::load`] (`OBJDATAKEY_CONFIG`, else
/// `./config.yaml`, else built-in defaults), the system clock, and the limits
/// from the config (`keystore.max_in_flight`: 1024, `keystore.request_timeout_ms`: 5000),
/// metrics on, recorded into [`MetricsRegistry::global`], and served over HTTP
/// only when `metrics.listen` is set.
#[derive(Debug, Clone)]
#[must_use]
pub struct KeystoreBuilder {
    config: Option<Config>,
    config_path: Option<PathBuf>,
    overrides: Overrides,
    clock: Clock,
    max_in_flight: Option<usize>,
    request_timeout: Option<Duration>,
    metrics: bool,
    registry: Option<MetricsRegistry>,
    io: IoPlacement,
}

/// Where a Redis connection's socket I/O runs (see
/// [`KeystoreBuilder::io_runtime`]).
#[derive(Debug, Clone)]
enum IoPlacement {
    /// The runtime `build` is called on, when it is a multi-thread tokio
    /// runtime with IO and time; otherwise the engine's thread.
    Auto,
    /// The engine's thread.
    Engine,
    /// This runtime.
    Runtime(tokio::runtime::Handle),
}

impl Default for KeystoreBuilder {
    fn default() -> Self {
        KeystoreBuilder {
            config: None,
            config_path: None,
            overrides: Overrides::default(),
            clock: Clock::default(),
            max_in_flight: None,
            request_timeout: None,
            metrics: true,
            registry: None,
            io: IoPlacement::Auto,
        }
    }
}

impl KeystoreBuilder {
    /// Use this config instead of loading one.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Load the config from this file (with the `AXION_PACKAGE` overlay and `DOCKER_AXION`).
    pub fn config_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_path = Some(path.into());
        self
    }

    /// Settings that win over the config.
    pub fn overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// The time source for TTLs (default: the system clock). A
    /// [`Clock::manual`] lets tests expire entries without sleeping.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Requests in flight at once; more callers wait (default: `keystore.max_in_flight`, 1024).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// Longest a request may take, waiting for room included
    /// (default: `keystore.request_timeout_ms`, 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Record metrics (default `true`). With `false` the hot path sends no
    /// events at all: [`Keystore::stats`] stays at zero, no Prometheus series
    /// are registered and `metrics.listen` is ignored. Meant for measuring
    /// what recording costs (benches compare both settings); production
    /// should leave it on.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Record into `registry` instead of the process-wide
    /// [`MetricsRegistry::global`]. A private registry sees only the
    /// keystores given it: how tests read exact counts.
    pub fn metrics_registry(mut self, registry: MetricsRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Redis and Dragonfly: do the socket I/O on this tokio runtime. Give it
    /// the runtime your callers run on: a reply then wakes its caller on the
    /// same runtime, as with a plain redis-rs connection, instead of crossing
    /// from the engine's thread, a wake-up of another thread per reply (see
    /// BENCHMARKS.md, Redis).
    ///
    /// Default: the runtime [`build`](Self::build) is called on, when that is
    /// a multi-thread tokio runtime with IO and time enabled (what
    /// `#[tokio::main]` makes); otherwise (no runtime, a current-thread one,
    /// an actix System) the engine's own thread. A current-thread runtime is
    /// never chosen on its own: its one thread may block while other threads
    /// call the keystore.
    ///
    /// The runtime needs IO and time enabled (`enable_all()`). If it shuts
    /// down while the keystore lives, the connection moves back to the
    /// engine's thread. RocksDB ignores it.
    pub fn io_runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.io = IoPlacement::Runtime(handle);
        self
    }

    /// Redis and Dragonfly: do the socket I/O on the engine's own thread even
    /// when `build` runs on a multi-thread runtime (see
    /// [`io_runtime`](Self::io_runtime) for the default). A thread of its own
    /// for the connection can help when the callers' runtime is saturated.
    pub fn io_on_engine_thread(mut self) -> Self {
        self.io = IoPlacement::Engine;
        self
    }

    /// Loads the config, opens the backend and starts the engine.
    ///
    /// For RocksDB the database is opened here, so a held lock or a missing
    /// directory is reported at once. Network backends connect in the
    /// background: [`Keystore::ping`] tells whether they are reachable.
    pub fn build(self) -> Result<Keystore> {
        let mut config = match (self.config, &self.config_path) {
            (Some(c), _) => c,
            (None, Some(p)) => ConfigLoader::from_env().path(p).load()?,
            (None, None) => Config::load()?,
        };
        self.overrides.apply(&mut config);
        if let Some(n) = self.max_in_flight {
            config.engine.max_in_flight = n;
        }
        if let Some(t) = self.request_timeout {
            config.engine.request_timeout = t;
        }
        let registry = self.registry.unwrap_or_else(MetricsRegistry::global);
        if !config.enabled {
            let engine = Engine::Noop(config.backend);
            return Ok(Keystore::assemble(
                config, engine, registry, None, self.clock,
            ));
        }
        // Started before the backend so a taken address fails the build at once.
        let server = match (self.metrics, config.metrics.listen) {
            (true, Some(addr)) => Some(registry.serve(addr)?),
            _ => None,
        };
        let options = EngineOptions {
            clock: self.clock.clone(),
            metrics: self.metrics.then(|| registry.clone()),
            io_runtime: match self.io {
                // Only a connection has I/O to place (RocksDB has none):
                // the runtime is probed for network backends only.
                IoPlacement::Auto if config.backend.is_network() => callers_runtime(),
                IoPlacement::Auto => None,
                IoPlacement::Engine => None,
                IoPlacement::Runtime(h) => Some(h),
            },
        };
        let engine = Engine::open(&config, options)?;
        Ok(Keystore::assemble(
            config, engine, registry, server, self.clock,
        ))
    }
}

/// The runtime `build` runs on, when it can carry a connection's I/O: a
/// multi-thread runtime with its IO and time drivers enabled.
fn callers_runtime() -> Option<tokio::runtime::Handle> {
    let rt = tokio::runtime::Handle::try_current().ok()?;
    if rt.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return None;
    }
    // tokio has no way to ask whether a driver is enabled other than using
    // it: without one, registering a socket or arming a timer panics.
    let probe = std::panic::catch_unwind(|| {
        let _entered = rt.enter();
        let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)).ok()?;
        socket.set_nonblocking(true).ok()?;
        let _registered = tokio::net::UdpSocket::from_std(socket).ok()?;
        let _timer = tokio::time::sleep(Duration::ZERO);
        Some(())
    });
    match probe {
        Ok(Some(())) => Some(rt),
        _ => {
            tracing::warn!(
                "the tokio runtime the keystore was built on has no IO or time driver \
                 (build it with enable_all()); the connection's I/O runs on the engine's thread"
            );
            None
        }
    }
}

/// How a keystore is made: the builder and the shortcuts that use it.
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
        engine: Engine,
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
}
