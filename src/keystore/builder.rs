//! [`KeystoreBuilder`] and [`Overrides`]: how a [`Keystore`] is made.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::redis::RedisTarget;
use crate::backend::rocksdb::RocksStore;
use crate::clock::Clock;
use crate::config::{BackendKind, Config, ConfigLoader, Secret};
use crate::engine::supervisor::BackendSpec;
use crate::engine::{self, Launch};
use crate::error::Result;
use crate::handle::{Engine, Keystore};
use crate::prometheus::MetricsRegistry;

/// Redis and Dragonfly raise TTLs below this many seconds to it (the original's minimum).
pub const MIN_SERVER_TTL: u64 = 5;

/// Explicit connection settings that win over the config file
/// (the original module's `connect_keystore` arguments).
///
/// `ip`, `port`, `user` and `password` apply to the section of the chosen
/// backend (`keystore.redis` or `keystore.dragonfly`); `path` to RocksDB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Overrides {
    /// The backend to use instead of `keystore.type`.
    pub backend: Option<BackendKind>,
    /// Server host.
    pub ip: Option<String>,
    /// Server port.
    pub port: Option<u16>,
    /// ACL user.
    pub user: Option<String>,
    /// Password (never printed).
    pub password: Option<Secret>,
    /// RocksDB directory.
    pub path: Option<PathBuf>,
}

impl Overrides {
    /// No overrides.
    pub fn new() -> Self {
        Overrides::default()
    }

    /// Use `backend`.
    pub fn backend(mut self, backend: BackendKind) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Server host.
    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }

    /// Server port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// ACL user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Password.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::new(password));
        self
    }

    /// RocksDB directory.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Writes these settings into `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(b) = self.backend {
            config.backend = b;
        }
        let server = match config.backend {
            BackendKind::Dragonfly => &mut config.dragonfly,
            _ => &mut config.redis,
        };
        if let Some(ip) = &self.ip {
            server.ip = ip.clone();
        }
        if let Some(p) = self.port {
            server.port = p;
        }
        if let Some(u) = &self.user {
            server.user = Some(u.clone());
        }
        if let Some(p) = &self.password {
            server.password = Some(p.clone());
        }
        if let Some(p) = &self.path {
            config.rocksdb.path = p.clone();
        }
    }
}

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
    io_runtime: Option<tokio::runtime::Handle>,
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
            io_runtime: None,
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

    /// Redis and Dragonfly: do the socket I/O on this tokio runtime instead
    /// of on the engine's thread (the default). Give it the runtime your
    /// callers run on: a reply then wakes its caller on the same runtime, as
    /// with a plain redis-rs connection, instead of crossing from the engine
    /// thread (the `redis` bench in BENCHMARKS.md shows what that saves).
    ///
    /// The runtime needs IO and time enabled (`enable_all()`, as
    /// `#[tokio::main]` has). If it shuts down while the keystore lives, the
    /// connection moves back to the engine's thread. RocksDB ignores it.
    pub fn io_runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.io_runtime = Some(handle);
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
            return Ok(Keystore::assemble(config, 0, None, registry, None));
        }
        // Started before the backend so a taken address fails the build at once.
        let server = match (self.metrics, config.metrics.listen) {
            (true, Some(addr)) => Some(registry.serve(addr)?),
            _ => None,
        };
        let metrics = self.metrics.then(|| registry.clone());
        let max_in_flight = config.engine.max_in_flight;
        let timeout = config.engine.request_timeout;
        match config.backend {
            BackendKind::RocksDb => {
                let (store, closed) = RocksStore::open(&config.rocksdb, self.clock.clone())?;
                let store = Arc::new(store);
                let spec = BackendSpec::RocksDb {
                    store: store.clone(),
                    workers: config.rocksdb.workers,
                };
                let launch = Launch {
                    config: config.clone(),
                    spec,
                    metrics,
                };
                let (actors, host) = engine::start(launch)?;
                let engine = Engine::new(
                    actors,
                    host,
                    max_in_flight,
                    timeout,
                    Some(closed),
                    Some(store),
                );
                Ok(Keystore::assemble(
                    config,
                    0,
                    Some(engine),
                    registry,
                    server,
                ))
            }
            kind @ (BackendKind::Redis | BackendKind::Dragonfly) => {
                let section = config
                    .server()
                    .expect("a network backend has a server section");
                let target = RedisTarget::new(kind, section, timeout)?;
                let launch = Launch {
                    config: config.clone(),
                    spec: BackendSpec::Redis {
                        target: Arc::new(target),
                        io: self.io_runtime,
                    },
                    metrics,
                };
                let (actors, host) = engine::start(launch)?;
                let engine = Engine::new(actors, host, max_in_flight, timeout, None, None);
                Ok(Keystore::assemble(
                    config,
                    MIN_SERVER_TTL,
                    Some(engine),
                    registry,
                    server,
                ))
            }
        }
    }
}
