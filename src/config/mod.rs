//! Loading `config.yaml`: discovery, the `AXION_PACKAGE` overlay, legacy keys,
//! `DOCKER_AXION`, defaults and validation.
//!
//! The file is read as a YAML tree and each key is pulled out by hand, so that
//! every error names the file and the full key (`keystore.redis.port`), and so
//! that the lenient spellings the Python module's users wrote for PyYAML
//! (`ssl: yes`, `port: "6379"`) keep working under YAML 1.2.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::error::{ErrorKind, KeystoreError, Result};

mod overrides;

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

/// Engine limits (`keystore.max_in_flight`, `keystore.request_timeout_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Requests admitted at once per keystore; more callers wait for room.
    pub max_in_flight: usize,
    /// Longest a request may take, waiting for room included.
    pub request_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_in_flight: 1024,
            request_timeout: Duration::from_secs(5),
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The Prometheus exporter.
    pub metrics: MetricsConfig,
    /// Deprecations and ignored keys found while loading, one sentence each.
    pub warnings: Vec<String>,
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
            metrics: MetricsConfig::default(),
            warnings: Vec::new(),
        }
    }

    /// Loads the config as the process environment says: `OBJDATAKEY_CONFIG`,
    /// else `./config.yaml` (built-in defaults when that file does not exist).
    pub fn load() -> Result<Config> {
        ConfigLoader::from_env().load()
    }

    /// Loads the config from `path` (the overlay and `DOCKER_AXION` still apply).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Config> {
        ConfigLoader::from_env().path(path).load()
    }

    /// Parses YAML text (no overlay; `DOCKER_AXION` from the environment).
    /// `origin` names the text in error messages.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Config> {
        let env = ConfigLoader::from_env();
        let root = parse_yaml(text, origin)?;
        Config::from_tree(
            &root,
            origin,
            env.docker_axion,
            ConfigSource::Text(origin.into()),
        )
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

    fn from_tree(root: &Value, origin: &str, docker: bool, source: ConfigSource) -> Result<Config> {
        let doc = Doc { origin, root };
        let mut cfg = Config::defaults(docker);
        cfg.source = source;
        let mut warnings = Vec::new();

        // Legacy `redis:` section of the original module.
        let legacy_activate = doc.bool_at(&["redis", "activate"])?;
        let legacy_ip = doc.string_at(&["redis", "redisip"])?;
        let legacy_port = doc.port_at(&["redis", "redisport"])?;
        for (old, new, present) in [
            (
                "redis.activate",
                "keystore.enabled",
                legacy_activate.is_some(),
            ),
            ("redis.redisip", "keystore.redis.ip", legacy_ip.is_some()),
            (
                "redis.redisport",
                "keystore.redis.port",
                legacy_port.is_some(),
            ),
        ] {
            if present {
                let msg = format!("{origin}: {old} is deprecated; use {new} instead");
                warn_once(&msg);
                warnings.push(msg);
            }
        }

        let ks = &["keystore"][..];
        doc.mapping_at(ks)?;
        warn_unknown(
            &doc,
            ks,
            &[
                "type",
                "enabled",
                "redis",
                "dragonfly",
                "rocksdb",
                "max_in_flight",
                "request_timeout_ms",
            ],
            &mut warnings,
        )?;

        cfg.backend = match doc.string_at(&["keystore", "type"])? {
            None => BackendKind::Redis,
            Some(s) if s.trim().is_empty() => BackendKind::Redis,
            Some(s) => s
                .parse()
                .map_err(|e: KeystoreError| doc.err(&["keystore", "type"], e.to_string()))?,
        };
        cfg.enabled = match doc.bool_at(&["keystore", "enabled"])? {
            Some(b) => b,
            None => legacy_activate.unwrap_or(true),
        };

        cfg.redis = doc.server_section("redis", docker, legacy_ip, legacy_port, &mut warnings)?;
        cfg.dragonfly = doc.server_section("dragonfly", docker, None, None, &mut warnings)?;

        let rk = ["keystore", "rocksdb"];
        doc.mapping_at(&rk)?;
        warn_unknown(
            &doc,
            &rk,
            &[
                "path",
                "create_if_missing",
                "ttl_cleanup_interval",
                "workers",
                "format_version",
                "sync_writes",
            ],
            &mut warnings,
        )?;
        if let Some(p) = doc.string_at(&["keystore", "rocksdb", "path"])? {
            if p.trim().is_empty() {
                return Err(doc.err(&["keystore", "rocksdb", "path"], "must not be empty"));
            }
            cfg.rocksdb.path = PathBuf::from(p);
        }
        if let Some(b) = doc.bool_at(&["keystore", "rocksdb", "create_if_missing"])? {
            cfg.rocksdb.create_if_missing = b;
        }
        if let Some(d) = doc.seconds_at(&["keystore", "rocksdb", "ttl_cleanup_interval"])? {
            if d.is_zero() {
                return Err(doc.err(
                    &["keystore", "rocksdb", "ttl_cleanup_interval"],
                    "must be more than 0 seconds",
                ));
            }
            cfg.rocksdb.ttl_cleanup_interval = d;
        }
        if let Some(n) = doc.count_at(&["keystore", "rocksdb", "workers"], 1, 256)? {
            cfg.rocksdb.workers = n;
        }
        if let Some(v) = doc.format_version_at(&["keystore", "rocksdb", "format_version"])? {
            cfg.rocksdb.format_version = v;
        }
        if let Some(b) = doc.bool_at(&["keystore", "rocksdb", "sync_writes"])? {
            cfg.rocksdb.sync_writes = b;
        }

        if let Some(n) = doc.count_at(&["keystore", "max_in_flight"], 1, 1 << 20)? {
            cfg.engine.max_in_flight = n;
        }
        if let Some(n) = doc.count_at(&["keystore", "request_timeout_ms"], 1, 3_600_000)? {
            cfg.engine.request_timeout = Duration::from_millis(n as u64);
        }

        let ttl_key = ["system", "cachettl"];
        if let Some(v) = doc.get(&ttl_key)? {
            cfg.default_ttl = match v {
                Value::Null => Some(300),
                Value::String(s) if s.trim().eq_ignore_ascii_case("never") => None,
                Value::Number(n) if n.as_i64() == Some(-1) => None,
                other => Some(as_u64(other).ok_or_else(|| {
                    doc.err(
                        &ttl_key,
                        format!(
                            "expected a whole number of seconds or `never`, got {}",
                            show(other)
                        ),
                    )
                })?),
            };
        }

        let mk = ["metrics"];
        doc.mapping_at(&mk)?;
        if let Some(s) = doc.string_at(&["metrics", "listen"])?
            && !s.trim().is_empty()
        {
            {
                cfg.metrics.listen = Some(s.trim().parse::<SocketAddr>().map_err(|_| {
                    doc.err(
                        &["metrics", "listen"],
                        format!("expected an address like 127.0.0.1:9898, got {s:?}"),
                    )
                })?);
            }
        }

        cfg.warnings = warnings;
        Ok(cfg)
    }
}

/// Finds and loads a config file, with the environment given explicitly so
/// callers (and tests) need not change the process environment.
///
/// [`ConfigLoader::from_env`] reads `OBJDATAKEY_CONFIG`, `DOCKER_AXION` and
/// `AXION_PACKAGE`; the setters override each.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ConfigLoader {
    path: Option<PathBuf>,
    env_path: Option<PathBuf>,
    docker_axion: bool,
    axion_package: Option<String>,
}

impl ConfigLoader {
    /// A loader with nothing from the environment: `./config.yaml`, no docker, no overlay.
    pub fn new() -> Self {
        ConfigLoader::default()
    }

    /// A loader that takes `OBJDATAKEY_CONFIG`, `DOCKER_AXION` and `AXION_PACKAGE`
    /// from the process environment.
    pub fn from_env() -> Self {
        ConfigLoader {
            path: None,
            env_path: std::env::var_os(CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            docker_axion: std::env::var_os(DOCKER_AXION_ENV).is_some(),
            axion_package: std::env::var(AXION_PACKAGE_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty()),
        }
    }

    /// An explicit file (wins over `OBJDATAKEY_CONFIG`).
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.path = Some(path.as_ref().to_path_buf());
        self
    }

    /// As if `DOCKER_AXION` were set (`true`) or unset.
    pub fn docker_axion(mut self, on: bool) -> Self {
        self.docker_axion = on;
        self
    }

    /// As if `AXION_PACKAGE` were `name` (`None`: unset).
    pub fn axion_package(mut self, name: Option<&str>) -> Self {
        self.axion_package = name.map(str::to_owned);
        self
    }

    /// Reads, merges and validates the config.
    pub fn load(&self) -> Result<Config> {
        let (path, explicit) = match (&self.path, &self.env_path) {
            (Some(p), _) => (p.clone(), true),
            (None, Some(p)) => (p.clone(), true),
            (None, None) => (PathBuf::from("config.yaml"), false),
        };
        if !path.exists() {
            if explicit {
                return Err(KeystoreError::new(
                    ErrorKind::Config,
                    format!(
                        "config file {} not found; pass an existing file (--config or {CONFIG_ENV})",
                        path.display()
                    ),
                ));
            }
            let mut cfg = Config::defaults(self.docker_axion);
            cfg.source = ConfigSource::Defaults;
            return Ok(cfg);
        }
        // Shown in messages and by `check`: absolute, so it is unambiguous.
        let path = std::path::absolute(&path).unwrap_or(path);
        let origin = path.display().to_string();
        let mut root = parse_yaml(&read_file(&path)?, &origin)?;

        let mut overlay_path = None;
        if let Some(pkg) = &self.axion_package {
            let name = format!("config.{pkg}.yaml");
            let candidate = path.parent().unwrap_or(Path::new("")).join(name);
            if candidate.exists() {
                let o_origin = candidate.display().to_string();
                let overlay = parse_yaml(&read_file(&candidate)?, &o_origin)?;
                deep_merge(&mut root, overlay);
                overlay_path = Some(candidate);
            } else {
                tracing::debug!(
                    "{AXION_PACKAGE_ENV}={pkg}: no overlay at {}",
                    candidate.display()
                );
            }
        }
        let origin = match &overlay_path {
            Some(o) => format!("{origin} (with overlay {})", o.display()),
            None => origin,
        };
        Config::from_tree(
            &root,
            &origin,
            self.docker_axion,
            ConfigSource::File {
                path,
                overlay: overlay_path,
            },
        )
    }
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        KeystoreError::new(
            ErrorKind::Config,
            format!("cannot read config file {}", path.display()),
        )
        .with_source(e)
    })
}

fn parse_yaml(text: &str, origin: &str) -> Result<Value> {
    let v: Value = serde_yaml::from_str(text).map_err(|e| {
        KeystoreError::new(
            ErrorKind::Config,
            format!("config {origin}: YAML syntax error"),
        )
        .with_source(e)
    })?;
    match v {
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        Value::Mapping(_) => Ok(v),
        other => Err(KeystoreError::new(
            ErrorKind::Config,
            format!(
                "config {origin}: the top level must be a mapping (keystore:, system:, ...), got {}",
                show(&other)
            ),
        )),
    }
}

/// Merges `overlay` into `base`: mappings merge key by key, anything else is replaced.
pub(crate) fn deep_merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn default_ip(docker: bool) -> &'static str {
    if docker { DOCKER_HOST_IP } else { "localhost" }
}

/// Deprecation warnings are logged once per process per message.
fn warn_once(msg: &str) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen.insert(msg.to_owned()) {
        tracing::warn!("{msg}");
    }
}

fn warn_unknown(doc: &Doc<'_>, at: &[&str], known: &[&str], out: &mut Vec<String>) -> Result<()> {
    if let Some(Value::Mapping(m)) = doc.get(at)? {
        for k in m.keys() {
            let name = match k {
                Value::String(s) => s.clone(),
                other => show(other),
            };
            if !known.contains(&name.as_str()) {
                let msg = format!(
                    "{}: {}.{name} is not a known key; ignored (known: {})",
                    doc.origin,
                    at.join("."),
                    known.join(", ")
                );
                tracing::warn!("{msg}");
                out.push(msg);
            }
        }
    }
    Ok(())
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The YAML tree with its origin, for path-aware lookups and errors.
struct Doc<'a> {
    origin: &'a str,
    root: &'a Value,
}

impl Doc<'_> {
    fn err(&self, path: &[&str], what: impl fmt::Display) -> KeystoreError {
        KeystoreError::new(
            ErrorKind::Config,
            format!("config {}: {}: {what}", self.origin, path.join(".")),
        )
    }

    /// The value at `path`; `None` when absent. An intermediate that is not a
    /// mapping is an error naming it.
    fn get(&self, path: &[&str]) -> Result<Option<&Value>> {
        let mut cur = self.root;
        for (i, key) in path.iter().enumerate() {
            match cur {
                Value::Mapping(m) => match m.get(*key) {
                    Some(v) => cur = v,
                    None => return Ok(None),
                },
                Value::Null => return Ok(None),
                other => {
                    return Err(self.err(
                        &path[..i],
                        format!("expected a mapping of settings, got {}", show(other)),
                    ));
                }
            }
        }
        Ok(Some(cur))
    }

    fn mapping_at(&self, path: &[&str]) -> Result<()> {
        match self.get(path)? {
            None | Some(Value::Null) | Some(Value::Mapping(_)) => Ok(()),
            Some(other) => Err(self.err(
                path,
                format!("expected a mapping of settings, got {}", show(other)),
            )),
        }
    }

    fn string_at(&self, path: &[&str]) -> Result<Option<String>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.err(path, format!("expected text, got {}", show(other)))),
        }
    }

    /// YAML 1.2 booleans, plus the YAML 1.1 spellings PyYAML accepted.
    fn bool_at(&self, path: &[&str]) -> Result<Option<bool>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "yes" | "y" | "true" | "on" | "1" => Ok(Some(true)),
                "no" | "n" | "false" | "off" | "0" => Ok(Some(false)),
                _ => Err(self.err(path, format!("expected yes/no (true/false), got {s:?}"))),
            },
            Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
            Some(other) => Err(self.err(
                path,
                format!("expected yes/no (true/false), got {}", show(other)),
            )),
        }
    }

    fn port_at(&self, path: &[&str]) -> Result<Option<u16>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match as_u64(v) {
                Some(p) if (1..=65535).contains(&p) => Ok(Some(p as u16)),
                _ => Err(self.err(
                    path,
                    format!("expected a port number from 1 to 65535, got {}", show(v)),
                )),
            },
        }
    }

    fn count_at(&self, path: &[&str], min: usize, max: usize) -> Result<Option<usize>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match as_u64(v) {
                Some(n) if (min as u64..=max as u64).contains(&n) => Ok(Some(n as usize)),
                _ => Err(self.err(
                    path,
                    format!(
                        "expected a whole number from {min} to {max}, got {}",
                        show(v)
                    ),
                )),
            },
        }
    }

    /// A block-based table format version RocksDB writes, with a hint about
    /// which ones the Python binding reads.
    fn format_version_at(&self, path: &[&str]) -> Result<Option<i32>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match as_u64(v) {
                Some(n) if FORMAT_VERSIONS.contains(&(n.min(i32::MAX as u64) as i32)) => {
                    Ok(Some(n as i32))
                }
                _ => Err(self.err(
                    path,
                    format!(
                        "expected an SST format version from {} to {}, got {}; \
                         {DEFAULT_FORMAT_VERSION} (the default) is the newest the Python \
                         binding rocksdict 0.3.29 reads",
                        FORMAT_VERSIONS.start(),
                        FORMAT_VERSIONS.end(),
                        show(v)
                    ),
                )),
            },
        }
    }

    fn seconds_at(&self, path: &[&str]) -> Result<Option<Duration>> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let secs = match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                match secs {
                    Some(s) if s.is_finite() && (0.0..=1e9).contains(&s) => {
                        Ok(Some(Duration::from_secs_f64(s)))
                    }
                    _ => Err(self.err(
                        path,
                        format!("expected a number of seconds, got {}", show(v)),
                    )),
                }
            }
        }
    }

    fn server_section(
        &self,
        name: &str,
        docker: bool,
        legacy_ip: Option<String>,
        legacy_port: Option<u16>,
        warnings: &mut Vec<String>,
    ) -> Result<RedisConfig> {
        let base = ["keystore", name];
        self.mapping_at(&base)?;
        warn_unknown(
            self,
            &base,
            &[
                "ip",
                "port",
                "user",
                "password",
                "ssl",
                "ca_file",
                "nodes",
                "connect_timeout",
            ],
            warnings,
        )?;
        let key = |k: &'static str| ["keystore", name, k];
        let mut c = RedisConfig::defaults(docker);
        // New keys win over legacy ones.
        let ip = self.string_at(&key("ip"))?.filter(|s| !s.trim().is_empty());
        c.ip = match ip.or(legacy_ip.filter(|s| !s.trim().is_empty())) {
            Some(ip) => ip.trim().to_owned(),
            None => default_ip(docker).to_owned(),
        };
        if let Some(p) = self.port_at(&key("port"))?.or(legacy_port) {
            c.port = p;
        }
        c.user = self.string_at(&key("user"))?.filter(|s| !s.is_empty());
        c.password = self
            .string_at(&key("password"))?
            .filter(|s| !s.is_empty())
            .map(Secret::new);
        c.ssl = self.bool_at(&key("ssl"))?.unwrap_or(false);
        c.ca_file = self
            .string_at(&key("ca_file"))?
            .filter(|s| !s.trim().is_empty())
            .map(PathBuf::from);
        if let Some(d) = self.seconds_at(&key("connect_timeout"))? {
            if d.is_zero() {
                return Err(self.err(&key("connect_timeout"), "must be more than 0 seconds"));
            }
            c.connect_timeout = d;
        }
        match self.get(&key("nodes"))? {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let idx = format!("nodes[{i}]");
                    let path = ["keystore", name, idx.as_str()];
                    let sub = Doc {
                        origin: self.origin,
                        root: item,
                    };
                    let host = match sub.string_at(&["host"]) {
                        Ok(Some(h)) if !h.trim().is_empty() => h.trim().to_owned(),
                        _ => {
                            return Err(self.err(
                                &path,
                                "expected {host: NAME, port: NUMBER}: host is missing",
                            ));
                        }
                    };
                    let port = match sub.port_at(&["port"]) {
                        Ok(Some(p)) => p,
                        _ => return Err(self.err(&path, "expected {host: NAME, port: NUMBER}: port is missing or not from 1 to 65535")),
                    };
                    c.nodes.push(NodeAddr { host, port });
                }
            }
            Some(other) => {
                return Err(self.err(
                    &key("nodes"),
                    format!("expected a list of {{host, port}}, got {}", show(other)),
                ));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_merge_overlay_wins_and_keeps_siblings() {
        let mut base: Value =
            serde_yaml::from_str("keystore: {type: redis, redis: {ip: a, port: 1}}").unwrap();
        let over: Value = serde_yaml::from_str("keystore: {redis: {port: 2}}").unwrap();
        deep_merge(&mut base, over);
        let cfg = Config::from_tree(&base, "t", false, ConfigSource::Defaults).unwrap();
        assert_eq!(cfg.redis.ip, "a");
        assert_eq!(cfg.redis.port, 2);
    }

    #[test]
    fn secret_is_redacted() {
        let mut c = RedisConfig::defaults(false);
        c.password = Some(Secret::new("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
