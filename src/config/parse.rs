//! Turning the YAML tree of a config file into a [`Config`].
//!
//! One function per section of the file, called in file order by
//! [`Config::from_tree`]: the legacy `redis:` keys, `keystore` (type, enabled),
//! the `redis` and `dragonfly` server sections, `rocksdb`, the engine limits,
//! `system` and `metrics`. Each starts from the built-in defaults and changes
//! only what the file sets; the order of the calls is the order in which
//! errors are found and warnings listed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::yaml::{Doc, Notes, as_u64, show, warn_misspelt, warn_unknown};
use super::{
    BackendKind, Config, ConfigSource, DEFAULT_FORMAT_VERSION, EngineConfig, FORMAT_VERSIONS,
    MetricsConfig, NodeAddr, RedisConfig, RocksDbConfig, Secret, TierConfig, default_ip,
};
use crate::error::{KeystoreError, Result};

impl Config {
    /// The config the tree `root` describes, over the built-in defaults.
    /// `origin` names the file in errors and warnings.
    pub(super) fn from_tree(
        root: &Value,
        origin: &str,
        docker: bool,
        source: ConfigSource,
    ) -> Result<Config> {
        let doc = Doc { origin, root };
        let mut cfg = Config::defaults(docker);
        cfg.source = source;
        let mut warnings = Notes::default();
        warn_misspelt(
            &doc,
            &[],
            &["keystore", "system", "metrics", "redis"],
            &mut warnings,
        )?;

        let legacy = legacy_section(&doc, &mut warnings)?;
        keystore_section(&doc, legacy.activate, &mut cfg, &mut warnings)?;
        cfg.redis = server_section(&doc, "redis", docker, legacy.ip, legacy.port, &mut warnings)?;
        cfg.dragonfly = server_section(&doc, "dragonfly", docker, None, None, &mut warnings)?;
        rocksdb_section(&doc, &mut cfg.rocksdb, &mut warnings)?;
        engine_limits(&doc, &mut cfg.engine)?;
        tier_section(&doc, &mut cfg.tier, &mut warnings)?;
        system_section(&doc, &mut cfg.default_ttl, &mut warnings)?;
        metrics_section(&doc, &mut cfg.metrics, &mut warnings)?;

        cfg.warnings = warnings.warnings;
        cfg.unknown_keys = warnings.unknown_keys;
        Ok(cfg)
    }
}

/// The keys of the original module's `redis:` section, each superseded by a
/// `keystore` key that wins over it.
struct Legacy {
    /// `redis.activate`: `keystore.enabled`.
    activate: Option<bool>,
    /// `redis.redisip`: `keystore.redis.ip`.
    ip: Option<String>,
    /// `redis.redisport`: `keystore.redis.port`.
    port: Option<u16>,
}

/// Reads the legacy `redis:` section, warning (once per process) about each
/// key it finds.
fn legacy_section(doc: &Doc<'_>, warnings: &mut Notes) -> Result<Legacy> {
    let legacy = Legacy {
        activate: doc.bool_at(&["redis", "activate"])?,
        ip: doc.string_at(&["redis", "redisip"])?,
        port: doc.port_at(&["redis", "redisport"])?,
    };
    for (old, new, present) in [
        (
            "redis.activate",
            "keystore.enabled",
            legacy.activate.is_some(),
        ),
        ("redis.redisip", "keystore.redis.ip", legacy.ip.is_some()),
        (
            "redis.redisport",
            "keystore.redis.port",
            legacy.port.is_some(),
        ),
    ] {
        if present {
            let origin = doc.origin;
            let msg = format!("{origin}: {old} is deprecated; use {new} instead");
            warnings.warn(msg);
        }
    }
    Ok(legacy)
}

/// `keystore` itself: its known keys, `type` and `enabled` (legacy
/// `redis.activate` when absent).
fn keystore_section(
    doc: &Doc<'_>,
    legacy_activate: Option<bool>,
    cfg: &mut Config,
    warnings: &mut Notes,
) -> Result<()> {
    let ks = &["keystore"][..];
    doc.mapping_at(ks)?;
    warn_unknown(
        doc,
        ks,
        &[
            "type",
            "enabled",
            "redis",
            "dragonfly",
            "rocksdb",
            "max_in_flight",
            "request_timeout_ms",
            "l1",
            "backplane",
            "fail_safe",
            "eager_refresh",
            "get_or_set_lock_ms",
            "max_value_bytes",
            "max_key_bytes",
        ],
        warnings,
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
    Ok(())
}

/// `keystore.<name>`, a Redis-protocol server (`redis` or `dragonfly`). The
/// legacy ip and port apply where the section does not set its own.
fn server_section(
    doc: &Doc<'_>,
    name: &str,
    docker: bool,
    legacy_ip: Option<String>,
    legacy_port: Option<u16>,
    warnings: &mut Notes,
) -> Result<RedisConfig> {
    let base = ["keystore", name];
    doc.mapping_at(&base)?;
    warn_unknown(
        doc,
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
    let ip = doc.string_at(&key("ip"))?.filter(|s| !s.trim().is_empty());
    c.ip = match ip.or(legacy_ip.filter(|s| !s.trim().is_empty())) {
        Some(ip) => ip.trim().to_owned(),
        None => default_ip(docker).to_owned(),
    };
    if let Some(p) = doc.port_at(&key("port"))?.or(legacy_port) {
        c.port = p;
    }
    c.user = doc.string_at(&key("user"))?.filter(|s| !s.is_empty());
    c.password = doc
        .string_at(&key("password"))?
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    c.ssl = doc.bool_at(&key("ssl"))?.unwrap_or(false);
    c.ca_file = doc
        .string_at(&key("ca_file"))?
        .filter(|s| !s.trim().is_empty())
        .map(PathBuf::from);
    if let Some(d) = doc.seconds_at(&key("connect_timeout"))? {
        if d.is_zero() {
            return Err(doc.err(&key("connect_timeout"), "must be more than 0 seconds"));
        }
        c.connect_timeout = d;
    }
    c.nodes = cluster_nodes(doc, name)?;
    Ok(c)
}

/// `keystore.<name>.nodes`: the Redis Cluster seed nodes, a list of
/// `{host, port}` (empty when absent).
fn cluster_nodes(doc: &Doc<'_>, name: &str) -> Result<Vec<NodeAddr>> {
    let at = ["keystore", name, "nodes"];
    let mut nodes = Vec::new();
    match doc.get(&at)? {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                let idx = format!("nodes[{i}]");
                let path = ["keystore", name, idx.as_str()];
                let sub = Doc {
                    origin: doc.origin,
                    root: item,
                };
                let host = match sub.string_at(&["host"]) {
                    Ok(Some(h)) if !h.trim().is_empty() => h.trim().to_owned(),
                    _ => {
                        return Err(doc.err(
                            &path,
                            "expected {host: NAME, port: NUMBER}: host is missing",
                        ));
                    }
                };
                let port = match sub.port_at(&["port"]) {
                    Ok(Some(p)) => p,
                    _ => return Err(doc.err(&path, "expected {host: NAME, port: NUMBER}: port is missing or not from 1 to 65535")),
                };
                nodes.push(NodeAddr { host, port });
            }
        }
        Some(other) => {
            return Err(doc.err(
                &at,
                format!("expected a list of {{host, port}}, got {}", show(other)),
            ));
        }
    }
    Ok(nodes)
}

/// `keystore.rocksdb`, the embedded backend.
fn rocksdb_section(doc: &Doc<'_>, rocksdb: &mut RocksDbConfig, warnings: &mut Notes) -> Result<()> {
    let rk = ["keystore", "rocksdb"];
    doc.mapping_at(&rk)?;
    warn_unknown(
        doc,
        &rk,
        &[
            "path",
            "create_if_missing",
            "ttl_cleanup_interval",
            "workers",
            "format_version",
            "sync_writes",
        ],
        warnings,
    )?;
    if let Some(p) = doc.string_at(&["keystore", "rocksdb", "path"])? {
        if p.trim().is_empty() {
            return Err(doc.err(&["keystore", "rocksdb", "path"], "must not be empty"));
        }
        rocksdb.path = PathBuf::from(p);
    }
    if let Some(b) = doc.bool_at(&["keystore", "rocksdb", "create_if_missing"])? {
        rocksdb.create_if_missing = b;
    }
    if let Some(d) = doc.seconds_at(&["keystore", "rocksdb", "ttl_cleanup_interval"])? {
        if d.is_zero() {
            return Err(doc.err(
                &["keystore", "rocksdb", "ttl_cleanup_interval"],
                "must be more than 0 seconds",
            ));
        }
        rocksdb.ttl_cleanup_interval = d;
    }
    if let Some(n) = doc.count_at(&["keystore", "rocksdb", "workers"], 1, 256)? {
        rocksdb.workers = n;
    }
    if let Some(v) = format_version_at(doc, &["keystore", "rocksdb", "format_version"])? {
        rocksdb.format_version = v;
    }
    if let Some(b) = doc.bool_at(&["keystore", "rocksdb", "sync_writes"])? {
        rocksdb.sync_writes = b;
    }
    Ok(())
}

/// A block-based table format version RocksDB writes, with a hint about
/// which ones the Python binding reads.
fn format_version_at(doc: &Doc<'_>, path: &[&str]) -> Result<Option<i32>> {
    match doc.get(path)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match as_u64(v) {
            Some(n) if FORMAT_VERSIONS.contains(&(n.min(i32::MAX as u64) as i32)) => {
                Ok(Some(n as i32))
            }
            _ => Err(doc.err(
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

/// The largest `keystore.max_value_bytes` and `keystore.max_key_bytes`:
/// 512 MiB, what Redis takes for a string.
const MAX_SIZE_LIMIT: usize = 512 << 20;

/// `keystore.max_in_flight`, `keystore.request_timeout_ms`,
/// `keystore.get_or_set_lock_ms` (0: off; at most 10 minutes: a lock is
/// meant to outlive one load, not to hold a name for long),
/// `keystore.max_value_bytes` and `keystore.max_key_bytes`.
fn engine_limits(doc: &Doc<'_>, engine: &mut EngineConfig) -> Result<()> {
    if let Some(n) = doc.count_at(&["keystore", "max_in_flight"], 1, 1 << 20)? {
        engine.max_in_flight = n;
    }
    if let Some(n) = doc.count_at(&["keystore", "request_timeout_ms"], 1, 3_600_000)? {
        engine.request_timeout = Duration::from_millis(n as u64);
    }
    if let Some(n) = doc.count_at(&["keystore", "get_or_set_lock_ms"], 0, 600_000)? {
        engine.get_or_set_lock = (n > 0).then(|| Duration::from_millis(n as u64));
    }
    if let Some(n) = doc.count_at(&["keystore", "max_value_bytes"], 1, MAX_SIZE_LIMIT)? {
        engine.max_value_bytes = n;
    }
    if let Some(n) = doc.count_at(&["keystore", "max_key_bytes"], 1, MAX_SIZE_LIMIT)? {
        engine.max_key_bytes = n;
    }
    Ok(())
}

/// `keystore.l1`, `keystore.backplane`, `keystore.fail_safe` and
/// `keystore.eager_refresh`: the in-process tier and what goes with it.
fn tier_section(doc: &Doc<'_>, tier: &mut TierConfig, warnings: &mut Notes) -> Result<()> {
    let l1 = ["keystore", "l1"];
    doc.mapping_at(&l1)?;
    warn_unknown(doc, &l1, &["enabled", "max_bytes", "ttl_max"], warnings)?;
    if let Some(b) = doc.bool_at(&["keystore", "l1", "enabled"])? {
        tier.enabled = b;
    }
    if let Some(n) = doc.count_at(&["keystore", "l1", "max_bytes"], 1024, 1 << 40)? {
        tier.max_bytes = n as u64;
    }
    if let Some(d) = doc.seconds_at(&["keystore", "l1", "ttl_max"])? {
        if d < Duration::from_millis(1) {
            return Err(doc.err(
                &["keystore", "l1", "ttl_max"],
                "must be more than 0 seconds (it bounds how stale a copy may get)",
            ));
        }
        tier.ttl_max = d;
    }
    let bp = ["keystore", "backplane"];
    doc.mapping_at(&bp)?;
    warn_unknown(doc, &bp, &["enabled", "channel"], warnings)?;
    if let Some(b) = doc.bool_at(&["keystore", "backplane", "enabled"])? {
        tier.backplane = b;
    }
    if let Some(c) = doc.string_at(&["keystore", "backplane", "channel"])? {
        if c.trim().is_empty() {
            return Err(doc.err(&["keystore", "backplane", "channel"], "must not be empty"));
        }
        tier.channel = c.trim().to_owned();
    }
    let fs = ["keystore", "fail_safe"];
    doc.mapping_at(&fs)?;
    warn_unknown(doc, &fs, &["max_age"], warnings)?;
    if let Some(d) = doc.seconds_at(&["keystore", "fail_safe", "max_age"])? {
        tier.fail_safe_max_age = d;
    }
    let eager = doc.fraction_at(
        &["keystore", "eager_refresh"],
        |f| (0.0..1.0).contains(&f),
        "a fraction of the TTL from 0 (off) to below 1, like 0.8",
    )?;
    if let Some(f) = eager {
        tier.eager_refresh = f;
    }
    if tier.fail_safe_max_age > Duration::ZERO && !tier.enabled {
        let msg = format!(
            "{}: keystore.fail_safe.max_age has no effect while keystore.l1.enabled is false \
             (stale values are served from the in-process tier)",
            doc.origin
        );
        warnings.warn(msg);
    }
    Ok(())
}

/// `system.cachettl`: seconds, or `never` / `-1` for no expiry; present but
/// empty is the default, 300. The section is the platform's: only a
/// misspelling of ours is warned about.
fn system_section(
    doc: &Doc<'_>,
    default_ttl: &mut Option<u64>,
    warnings: &mut Notes,
) -> Result<()> {
    warn_misspelt(doc, &["system"], &["cachettl"], warnings)?;
    let ttl_key = ["system", "cachettl"];
    if let Some(v) = doc.get(&ttl_key)? {
        *default_ttl = match v {
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
    Ok(())
}

/// `metrics.listen`: where to serve `/metrics`; empty serves nothing.
fn metrics_section(doc: &Doc<'_>, metrics: &mut MetricsConfig, warnings: &mut Notes) -> Result<()> {
    let mk = ["metrics"];
    doc.mapping_at(&mk)?;
    warn_unknown(doc, &mk, &["listen"], warnings)?;
    if let Some(s) = doc.string_at(&["metrics", "listen"])?
        && !s.trim().is_empty()
    {
        metrics.listen = Some(s.trim().parse::<SocketAddr>().map_err(|_| {
            doc.err(
                &["metrics", "listen"],
                format!("expected an address like 127.0.0.1:9898, got {s:?}"),
            )
        })?);
    }
    Ok(())
}
