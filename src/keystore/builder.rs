//! [`KeystoreBuilder`]: how a [`Keystore`] is made.

use std::path::PathBuf;
use std::time::Duration;

use super::Keystore;
use crate::clock::Clock;
use crate::config::{Config, ConfigLoader, Overrides};
use crate::engine::{Engine, EngineOptions};
use crate::error::Result;
use crate::metrics::MetricsRegistry;

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
            return Ok(Keystore::assemble(config, None, registry, None, self.clock));
        }
        // Started before the backend so a taken address fails the build at once.
        let server = match (self.metrics, config.metrics.listen) {
            (true, Some(addr)) => Some(registry.serve(addr)?),
            _ => None,
        };
        let options = EngineOptions {
            clock: self.clock.clone(),
            metrics: self.metrics.then(|| registry.clone()),
            io_runtime: self.io_runtime,
        };
        let engine = Engine::open(&config, options)?;
        Ok(Keystore::assemble(
            config,
            Some(engine),
            registry,
            server,
            self.clock,
        ))
    }
}
