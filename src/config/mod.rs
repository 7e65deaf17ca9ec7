//! The configuration of a keystore: what `config.yaml` can say, as types.
//!
//! This file holds the types a loaded config is made of ([`Config`] and its
//! sections) and the names and limits they share; the work of getting one
//! is split by concern, each in its own file:
//!
//! - `load`: [`ConfigLoader`], which file to read (explicit path,
//!   `OBJDATAKEY_CONFIG`, `./config.yaml`), the `AXION_PACKAGE` overlay merged
//!   over it, `DOCKER_AXION`, and reading the YAML text into a tree;
//! - `parse`: the tree into a [`Config`], one function per section, with the
//!   legacy keys of the Python module, defaults and validation;
//! - `yaml`: the cursor over the tree whose typed accessors name the file and
//!   the full key (`keystore.redis.port`) in every error, and accept the
//!   lenient spellings PyYAML users wrote (`ssl: yes`, `port: "6379"`);
//! - `overrides`: [`Overrides`], explicit settings that win over the file.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{ErrorKind, KeystoreError, Result};

mod load;
mod overrides;
mod parse;
mod yaml;

pub use load::ConfigLoader;
pub use overrides::Overrides;

/// The environment variable naming the config file when no path is given.
pub const CONFIG_ENV: &str = "OBJDATAKEY_CONFIG";
/// Set (to any value) inside Axion's docker setup: an empty ip means the docker host.
pub const DOCKER_AXION_ENV: &str = "DOCKER_AXION";
/// Names a package overlay, `config.NAME.yaml`, merged over `config.yaml`.
pub const AXION_PACKAGE_ENV: &str = "AXION_PACKAGE";
/// The address an empty ip resolves to when `DOCKER_AXION` is set.
pub const DOCKER_HOST_IP: &str = "172.17.0.1";
/// Redis and Dragonfly raise TTLs below this many seconds to it (the original's minimum).
pub const MIN_SERVER_TTL: u64 = 5;

/// Which backend a keystore uses (the original module's `KeystoreType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// A Redis server (or Redis Cluster).
    Redis,
    /// A DragonflyDB server, spoken to over the Redis protocol.
    Dragonfly,
    /// An embedded RocksDB database on local disk.
    RocksDb,
}

impl BackendKind {
    /// The name used in config files, CLI output and metrics labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Redis => "redis",
            BackendKind::Dragonfly => "dragonfly",
            BackendKind::RocksDb => "rocksdb",
        }
    }

    /// Whether this backend speaks the Redis protocol over the network.
    #[must_use]
    pub fn is_network(self) -> bool {
        !matches!(self, BackendKind::RocksDb)
    }

    /// The shortest TTL this backend stores, in seconds: [`MIN_SERVER_TTL`]
    /// on Redis and Dragonfly, none on RocksDB.
    #[must_use]
    pub fn min_ttl(self) -> u64 {
        if self.is_network() { MIN_SERVER_TTL } else { 0 }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = KeystoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "redis" => Ok(BackendKind::Redis),
            "dragonfly" | "dragonflydb" => Ok(BackendKind::Dragonfly),
            "rocksdb" => Ok(BackendKind::RocksDb),
            _ => Err(KeystoreError::new(
                ErrorKind::Config,
                format!("unknown backend {s:?} (expected redis, dragonfly or rocksdb)"),
            )),
        }
    }
}

/// A secret string (a password). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for handing to a client library.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One node of a Redis Cluster (`keystore.redis.nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for NodeAddr {
    /// `host:port` (`[v6]:port` for an IPv6 address).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') && !self.host.starts_with('[') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Settings of a Redis-protocol server (`keystore.redis` or `keystore.dragonfly`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Host to connect to, already resolved: an empty value became `localhost`,
    /// or [`DOCKER_HOST_IP`] when `DOCKER_AXION` is set.
    pub ip: String,
    /// TCP port (default 6379).
    pub port: u16,
    /// ACL user name, if any.
    pub user: Option<String>,
    /// Password, if any. Never printed.
    pub password: Option<Secret>,
    /// Whether to speak TLS to the server.
    pub ssl: bool,
    /// A PEM file of CA certificates to trust for TLS (for self-signed servers).
    pub ca_file: Option<PathBuf>,
    /// Redis Cluster seed nodes; non-empty selects the cluster client.
    pub nodes: Vec<NodeAddr>,
    /// How long to wait for a TCP (and TLS) connection to be established.
    pub connect_timeout: Duration,
}

impl RedisConfig {
    fn defaults(docker: bool) -> Self {
        RedisConfig {
            ip: default_ip(docker).to_owned(),
            port: 6379,
            user: None,
            password: None,
            ssl: false,
            ca_file: None,
            nodes: Vec::new(),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// `ip:port`, as used in error messages.
    #[must_use]
    pub fn address(&self) -> String {
        NodeAddr {
            host: self.ip.clone(),
            port: self.port,
        }
        .to_string()
    }
}

/// Settings of the embedded RocksDB backend (`keystore.rocksdb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocksDbConfig {
    /// Database directory; a relative path is relative to the working directory.
    pub path: PathBuf,
    /// Create the directory (and its parents) when missing.
    pub create_if_missing: bool,
    /// Time between janitor sweeps of expired entries.
    pub ttl_cleanup_interval: Duration,
    /// Worker threads that run the (blocking) RocksDB calls.
    pub workers: usize,
    /// Block-based table `format_version` of the SST files written. RocksDB 11
    /// writes 7 by default, which RocksDB before 10.4 (the one inside
    /// rocksdict, the Python binding) cannot read; see
    /// [`DEFAULT_FORMAT_VERSION`].
    pub format_version: i32,
    /// fsync every value write: acknowledged writes then survive power loss
    /// and OS crashes too, not only a crash of the process.
    pub sync_writes: bool,
}

/// The SST `format_version` written by default: 6, the newest that rocksdict
/// 0.3.29 (RocksDB 9.8.4 inside) reads. Version 7 (RocksDB 11's default)
/// makes it fail with `Corrupt or unsupported format_version: 7`.
pub const DEFAULT_FORMAT_VERSION: i32 = 6;
/// The `format_version` range RocksDB 11 writes (it dropped 0 and 1).
const FORMAT_VERSIONS: std::ops::RangeInclusive<i32> = 2..=7;

/// Engine limits (`keystore.max_in_flight`, `keystore.request_timeout_ms`,
/// `keystore.max_value_bytes`, `keystore.max_key_bytes`) and the
/// cross-process lock of `get_or_set` (`keystore.get_or_set_lock_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Requests admitted at once per keystore; more callers wait for room.
    pub max_in_flight: usize,
    /// Longest a request may take, waiting for room included.
    pub request_timeout: Duration,
    /// On Redis and Dragonfly, `get_or_set` loads under a lock
    /// (`SET name:lock token NX PX ms`) held at most this long, so only one
    /// process loads a missing name while the others wait and re-read; a
    /// holder that dies releases it by expiry. `None` (the default, `0` in
    /// the file): single flight within this process only. Ignored on
    /// RocksDB, which one process holds anyway.
    pub get_or_set_lock: Option<Duration>,
    /// `keystore.max_value_bytes`: the largest JSON text a write stores
    /// (default 64 MiB); a larger one is refused before it reaches the
    /// backend ([`ErrorKind::TooLarge`]), so a
    /// value written by mistake does not stall a server.
    pub max_value_bytes: usize,
    /// `keystore.max_key_bytes`: the longest name a write stores under
    /// (default 8 KiB). Reads and deletes send any name: one this long
    /// cannot have been written here, and a Python writer may have stored
    /// one.
    pub max_key_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_in_flight: 1024,
            request_timeout: Duration::from_secs(5),
            get_or_set_lock: None,
            max_value_bytes: 64 << 20,
            max_key_bytes: 8 << 10,
        }
    }
}

/// The in-process tier (`keystore.l1`), its backplane, fail-safe and eager
/// refresh. The defaults keep the tier off: every read goes to the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct TierConfig {
    /// `keystore.l1.enabled`: keep a bounded in-process copy of what is read
    /// and written, in front of the backend (default `false`).
    pub enabled: bool,
    /// `keystore.l1.max_bytes`: the tier's bound, counted as the bytes of the
    /// stored JSON text plus the name (default 64 MiB).
    pub max_bytes: u64,
    /// `keystore.l1.ttl_max`: the longest an entry lives in the tier (default
    /// 5 s). It bounds how stale a copy can be against writers that publish
    /// no invalidations (the Python services, `redis-cli`).
    pub ttl_max: Duration,
    /// `keystore.backplane.enabled`: with the tier on a Redis-protocol
    /// backend, publish every write's names and drop the copies other
    /// instances publish (default `true`).
    pub backplane: bool,
    /// `keystore.backplane.channel`: the pub/sub channel (default
    /// `objdatakey:invalidate`).
    pub channel: String,
    /// `keystore.fail_safe.max_age`: how long past its tier lifetime a copy
    /// may still be served when the backend fails (default 0: off).
    pub fail_safe_max_age: Duration,
    /// `keystore.eager_refresh`: the fraction of its TTL after which a
    /// `get_or_set` hit reloads the value in the background (default 0: off).
    pub eager_refresh: f64,
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            enabled: false,
            max_bytes: 64 << 20,
            ttl_max: Duration::from_secs(5),
            backplane: true,
            channel: "objdatakey:invalidate".to_owned(),
            fail_safe_max_age: Duration::ZERO,
            eager_refresh: 0.0,
        }
    }
}

/// The Prometheus exporter (`metrics.listen`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// Where to serve `/metrics`; `None` (the default) serves nothing.
    pub listen: Option<SocketAddr>,
}

/// Where a [`Config`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// Built-in defaults: no file was found at `./config.yaml`.
    Defaults,
    /// A file, and the overlay merged over it, if any.
    File {
        /// The main file.
        path: PathBuf,
        /// The `AXION_PACKAGE` overlay that was merged over it.
        overlay: Option<PathBuf>,
    },
    /// Text given directly (tests, embedding).
    Text(String),
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Defaults => f.write_str("built-in defaults (no ./config.yaml)"),
            ConfigSource::File {
                path,
                overlay: None,
            } => write!(f, "{}", path.display()),
            ConfigSource::File {
                path,
                overlay: Some(o),
            } => write!(f, "{} + overlay {}", path.display(), o.display()),
            ConfigSource::Text(name) => f.write_str(name),
        }
    }
}

/// The whole configuration of a keystore.
///
/// Usually loaded with [`Config::load`]; [`Config::default`] is the built-in
/// defaults (backend redis on localhost:6379, TTL 300 s).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where this came from.
    pub source: ConfigSource,
    /// `keystore.enabled` (legacy `redis.activate`): `false` makes every call a no-op.
    pub enabled: bool,
    /// `keystore.type`: the active backend.
    pub backend: BackendKind,
    /// `keystore.redis`.
    pub redis: RedisConfig,
    /// `keystore.dragonfly`.
    pub dragonfly: RedisConfig,
    /// `keystore.rocksdb`.
    pub rocksdb: RocksDbConfig,
    /// `system.cachettl`: the TTL of [`Ttl::Default`](crate::Ttl::Default); `None` is never-expire.
    pub default_ttl: Option<u64>,
    /// Engine limits.
    pub engine: EngineConfig,
    /// The in-process tier, backplane, fail-safe and eager refresh.
    pub tier: TierConfig,
    /// The Prometheus exporter.
    pub metrics: MetricsConfig,
    /// Deprecations and ignored keys found while loading, one sentence each.
    pub warnings: Vec<String>,
    /// The keys of the file that are not settings of ours: each is ignored
    /// with a warning naming the nearest known key, and `objdatakey check
    /// --strict` refuses the file.
    pub unknown_keys: Vec<UnknownKey>,
}

/// A key of the config file that is not a setting of ours. Its
/// [`Display`](std::fmt::Display) is the sentence the warning says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnknownKey {
    /// The file it is in (the base file or its overlay), or the name of
    /// the text loaded.
    pub file: String,
    /// The key in full (`keystore.rocksdb.ttl_cleanup_intervall`).
    pub key: String,
    /// How to fix it: the nearest known key (`did you mean
    /// ttl_cleanup_interval?`), or where the known keys are listed.
    pub hint: String,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} is not a known key; ignored ({})",
            self.file, self.key, self.hint
        )
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::defaults(false)
    }
}

impl Config {
    fn defaults(docker: bool) -> Self {
        Config {
            source: ConfigSource::Defaults,
            enabled: true,
            backend: BackendKind::Redis,
            redis: RedisConfig::defaults(docker),
            dragonfly: RedisConfig::defaults(docker),
            rocksdb: RocksDbConfig {
                path: PathBuf::from("local.documents/rocksdb"),
                create_if_missing: true,
                ttl_cleanup_interval: Duration::from_secs(300),
                workers: std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
                    .max(2),
                format_version: DEFAULT_FORMAT_VERSION,
                sync_writes: false,
            },
            default_ttl: Some(300),
            engine: EngineConfig::default(),
            tier: TierConfig::default(),
            metrics: MetricsConfig::default(),
            warnings: Vec::new(),
            unknown_keys: Vec::new(),
        }
    }

    /// The settings of the active network backend (`redis` or `dragonfly`).
    #[must_use]
    pub fn server(&self) -> Option<&RedisConfig> {
        match self.backend {
            BackendKind::Redis => Some(&self.redis),
            BackendKind::Dragonfly => Some(&self.dragonfly),
            BackendKind::RocksDb => None,
        }
    }
}

fn default_ip(docker: bool) -> &'static str {
    if docker { DOCKER_HOST_IP } else { "localhost" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let mut c = RedisConfig::defaults(false);
        c.password = Some(Secret::new("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
