//! `config.yaml`: every key, legacy keys, DOCKER_AXION, the AXION_PACKAGE
//! overlay, defaults, and a clear error (never a panic) for bad input.

use std::path::Path;
use std::time::Duration;

use objdatakey::config::{ConfigLoader, ConfigSource, NodeAddr};
use objdatakey::{BackendKind, Config, ErrorKind};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn load(text: &str) -> objdatakey::Result<Config> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "config.yaml", text);
    ConfigLoader::new().path(&p).load()
}

fn load_err(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "config.yaml", text);
    let err = ConfigLoader::new().path(&p).load().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.is_config_error());
    let text = err.to_string();
    assert!(
        text.contains(&p.display().to_string()),
        "error does not name the file: {text}"
    );
    text
}

#[test]
fn the_repository_config_selects_rocksdb() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
    let c = ConfigLoader::new().path(&p).load().unwrap();
    assert_eq!(c.backend, BackendKind::RocksDb);
    assert_eq!(c.rocksdb.path, Path::new("local.documents/rocksdb"));
    assert!(c.rocksdb.create_if_missing);
    assert_eq!(c.rocksdb.ttl_cleanup_interval, Duration::from_secs(300));
    assert_eq!(c.rocksdb.format_version, 6, "what rocksdict reads");
    assert_eq!(
        c.rocksdb.format_version,
        objdatakey::config::DEFAULT_FORMAT_VERSION
    );
    assert!(!c.rocksdb.sync_writes);
    assert_eq!(c.default_ttl, Some(300));
    assert_eq!(c.redis.address(), "localhost:6379");
    assert!(c.enabled);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn every_key_is_read() {
    let c = load(
        r#"
keystore:
  type: dragonfly
  enabled: true
  max_in_flight: 64
  request_timeout_ms: 250
  get_or_set_lock_ms: 1500
  max_value_bytes: 1048576
  max_key_bytes: 256
  redis:
    ip: 10.0.0.5
    port: "7000"
    user: app
    password: s3cret
    ssl: yes
    ca_file: /etc/ca.pem
    connect_timeout: 0.5
    nodes:
      - {host: 127.0.0.1, port: 7001}
      - {host: 127.0.0.2, port: 7002}
  dragonfly:
    ip: df.local
    port: 6380
  rocksdb:
    path: /var/lib/odk
    create_if_missing: false
    ttl_cleanup_interval: 2.5
    workers: 3
    format_version: 5
    sync_writes: yes
system:
  cachettl: 60
  other_axion_setting: kept-out-of-our-way
metrics:
  listen: 127.0.0.1:9898
"#,
    )
    .unwrap();
    assert_eq!(c.backend, BackendKind::Dragonfly);
    assert_eq!(c.engine.max_in_flight, 64);
    assert_eq!(c.engine.request_timeout, Duration::from_millis(250));
    assert_eq!(c.engine.get_or_set_lock, Some(Duration::from_millis(1500)));
    assert_eq!(
        (c.engine.max_value_bytes, c.engine.max_key_bytes),
        (1 << 20, 256)
    );
    // 0 turns it off, as does leaving it out.
    let off = load("keystore: {get_or_set_lock_ms: 0}").unwrap();
    assert_eq!(off.engine.get_or_set_lock, None);
    assert_eq!((c.redis.ip.as_str(), c.redis.port), ("10.0.0.5", 7000));
    assert_eq!(c.redis.user.as_deref(), Some("app"));
    assert_eq!(c.redis.password.as_ref().unwrap().expose(), "s3cret");
    assert!(c.redis.ssl);
    assert_eq!(c.redis.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert_eq!(c.redis.connect_timeout, Duration::from_millis(500));
    assert_eq!(
        c.redis.nodes,
        vec![
            NodeAddr {
                host: "127.0.0.1".into(),
                port: 7001
            },
            NodeAddr {
                host: "127.0.0.2".into(),
                port: 7002
            }
        ]
    );
    assert_eq!(c.dragonfly.address(), "df.local:6380");
    assert_eq!(c.server().unwrap().address(), "df.local:6380");
    assert_eq!(c.rocksdb.path, Path::new("/var/lib/odk"));
    assert!(!c.rocksdb.create_if_missing);
    assert_eq!(c.rocksdb.ttl_cleanup_interval, Duration::from_millis(2500));
    assert_eq!(c.rocksdb.workers, 3);
    assert_eq!(c.rocksdb.format_version, 5);
    assert!(c.rocksdb.sync_writes);
    assert_eq!(c.default_ttl, Some(60));
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9898".parse().unwrap()));
    // The password never shows in Debug output.
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cret") && dbg.contains("<redacted>"));
}

#[test]
fn missing_or_empty_type_means_redis_and_empty_file_means_defaults() {
    for text in [
        "",
        "keystore:\n",
        "keystore:\n  type:\n",
        "keystore:\n  type: \"\"\n",
        "system: {cachettl: 5}\n",
    ] {
        let c = load(text).unwrap();
        assert_eq!(c.backend, BackendKind::Redis, "{text:?}");
        assert_eq!(c.redis.address(), "localhost:6379");
    }
    assert_eq!(
        load("keystore: {type: RocksDB}").unwrap().backend,
        BackendKind::RocksDb
    );
    assert_eq!(load("system: {cachettl: never}").unwrap().default_ttl, None);
    assert_eq!(load("system: {cachettl: -1}").unwrap().default_ttl, None);
}

#[test]
fn bad_values_name_the_file_and_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "keystore: {type: mongo}",
            r#"keystore.type: unknown backend "mongo" (expected redis, dragonfly or rocksdb)"#,
        ),
        (
            "keystore: {redis: {port: abc}}",
            "keystore.redis.port: expected a port number from 1 to 65535, got \"abc\"",
        ),
        ("keystore: {redis: {port: 70000}}", "keystore.redis.port"),
        (
            "keystore: {dragonfly: {port: [1]}}",
            "keystore.dragonfly.port",
        ),
        (
            "keystore: {redis: {ssl: maybe}}",
            "keystore.redis.ssl: expected yes/no",
        ),
        (
            "keystore: {redis: {ip: [a, b]}}",
            "keystore.redis.ip: expected text, got a list",
        ),
        (
            "keystore: {redis: {nodes: {host: a}}}",
            "keystore.redis.nodes: expected a list",
        ),
        (
            "keystore: {redis: {nodes: [{host: a}]}}",
            "keystore.redis.nodes[0]",
        ),
        (
            "keystore: {rocksdb: {create_if_missing: perhaps}}",
            "keystore.rocksdb.create_if_missing",
        ),
        (
            "keystore: {rocksdb: {ttl_cleanup_interval: soon}}",
            "keystore.rocksdb.ttl_cleanup_interval: expected a number of seconds",
        ),
        (
            "keystore: {rocksdb: {ttl_cleanup_interval: 0}}",
            "keystore.rocksdb.ttl_cleanup_interval: must be more than 0",
        ),
        (
            "keystore: {rocksdb: {path: \"\"}}",
            "keystore.rocksdb.path: must not be empty",
        ),
        (
            "keystore: {rocksdb: {workers: 0}}",
            "keystore.rocksdb.workers",
        ),
        ("keystore: {max_in_flight: -3}", "keystore.max_in_flight"),
        (
            "keystore: {request_timeout_ms: fast}",
            "keystore.request_timeout_ms",
        ),
        (
            "keystore: {get_or_set_lock_ms: 600001}",
            "keystore.get_or_set_lock_ms: expected a whole number from 0 to 600000",
        ),
        (
            "keystore: {get_or_set_lock_ms: -1}",
            "keystore.get_or_set_lock_ms",
        ),
        (
            "keystore: {max_value_bytes: 0}",
            "keystore.max_value_bytes: expected a whole number from 1 to 536870912",
        ),
        (
            "keystore: {max_key_bytes: 1kb}",
            "keystore.max_key_bytes: expected a whole number",
        ),
        (
            "keystore: [1, 2]",
            "keystore: expected a mapping of settings, got a list",
        ),
        ("keystore: {redis: 5}", "keystore.redis: expected a mapping"),
        (
            "keystore: {rocksdb: text}",
            "keystore.rocksdb: expected a mapping",
        ),
        (
            "system: {cachettl: soon}",
            "system.cachettl: expected a whole number of seconds",
        ),
        ("system: 3", "system: expected a mapping"),
        (
            "metrics: {listen: everywhere}",
            "metrics.listen: expected an address like 127.0.0.1:9898",
        ),
        ("redis: {redisport: x}", "redis.redisport"),
        ("redis: {activate: sometimes}", "redis.activate"),
        ("keystore: {enabled: 7}", "keystore.enabled"),
        (
            "keystore:\n  type: redis\n   bad indent: 1\n",
            "YAML syntax error",
        ),
        ("keystore: {type: [unclosed", "YAML syntax error"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("plain text", "the top level must be a mapping"),
    ];
    for (text, expected) in cases {
        let err = load_err(text);
        assert!(
            err.contains(expected),
            "for {text:?}\n  got: {err}\n  expected to contain: {expected}"
        );
    }
}

#[test]
fn bad_rocksdb_format_version_or_sync_writes_names_the_key() {
    let range = "keystore.rocksdb.format_version: expected an SST format version from 2 to 7";
    for bad in ["8", "1", "0", "-1", "6.5", "six", "[6]", "\"4294967302\""] {
        let err = load_err(&format!("keystore: {{rocksdb: {{format_version: {bad}}}}}"));
        assert!(err.contains(range), "for {bad}: {err}");
        assert!(
            err.contains("rocksdict"),
            "says which one Python reads: {err}"
        );
    }
    for good in [2, 5, 6, 7] {
        let c = load(&format!(
            "keystore: {{rocksdb: {{format_version: {good}}}}}"
        ))
        .unwrap();
        assert_eq!(c.rocksdb.format_version, good);
    }
    assert_eq!(
        load("keystore: {rocksdb: {format_version: \"5\"}}")
            .unwrap()
            .rocksdb
            .format_version,
        5,
        "numbers may be quoted"
    );
    let err = load_err("keystore: {rocksdb: {sync_writes: always}}");
    assert!(
        err.contains("keystore.rocksdb.sync_writes: expected yes/no"),
        "{err}"
    );
    assert!(
        load("keystore: {rocksdb: {sync_writes: on}}")
            .unwrap()
            .rocksdb
            .sync_writes
    );
}

#[test]
fn no_input_makes_it_panic() {
    // Odd shapes, tags, anchors, huge numbers, non-string keys.
    let docs = [
        "keystore: !tagged {type: redis}",
        "keystore: {type: !t rocksdb}",
        "a: &x {b: 1}\nkeystore: *x",
        "keystore: {redis: {port: 1e400}}",
        "keystore: {redis: {port: -1}}",
        "keystore: {1: 2, [a]: b}",
        "system: {cachettl: 18446744073709551616}",
        "keystore: {rocksdb: {ttl_cleanup_interval: .inf}}",
        "keystore: {rocksdb: {ttl_cleanup_interval: .nan}}",
        "keystore: {redis: {nodes: [1, null, {host: x, port: 0}]}}",
        "~",
        "\u{feff}keystore: {}",
        "keystore: {redis: {connect_timeout: -1}}",
        "metrics: {listen: \"[::1]:9898\"}",
        "\t",
        "---\n---\n",
    ];
    for d in docs {
        let r = std::panic::catch_unwind(|| load(d));
        assert!(r.is_ok(), "panicked on {d:?}");
    }
}

/// A billion-laughs file (aliases of aliases) and a deeply nested one are
/// refused with an error naming the file and the reason, quickly and
/// without a panic or the memory they would take.
#[test]
fn alias_bombs_and_deep_nesting_are_refused_with_a_clear_error() {
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let refs = vec![format!("*{prev}"); 9].join(",");
        bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    bomb.push_str("keystore: {type: rocksdb, x: *i}\n");
    let text = load_err(&bomb);
    assert!(
        text.contains("aliases expand to more than 100 times the file"),
        "{text}"
    );

    let deep = format!("keystore: {}1{}\n", "[".repeat(200), "]".repeat(200));
    let text = load_err(&deep);
    assert!(text.contains("nests more than 128 levels deep"), "{text}");
}

#[test]
fn unknown_keys_in_our_sections_are_warned_about() {
    let c =
        load("keystore: {type: rocksdb, rocksdb: {pth: x}, tpye: a}\nother_app: {x: 1}\n").unwrap();
    let w = c.warnings.join("\n");
    assert!(w.contains("keystore.rocksdb.pth is not a known key"), "{w}");
    assert!(w.contains("keystore.tpye is not a known key"), "{w}");
    assert!(
        !w.contains("other_app"),
        "sections of other Axion modules are not ours: {w}"
    );
}

#[test]
fn legacy_keys_work_with_a_deprecation_naming_the_new_key() {
    let c = load("redis:\n  activate: yes\n  redisip: 10.1.1.1\n  redisport: 6390\n").unwrap();
    assert_eq!(c.backend, BackendKind::Redis);
    assert!(c.enabled);
    assert_eq!(c.redis.address(), "10.1.1.1:6390");
    let w = c.warnings.join("\n");
    for (old, new) in [
        ("redis.activate", "keystore.enabled"),
        ("redis.redisip", "keystore.redis.ip"),
        ("redis.redisport", "keystore.redis.port"),
    ] {
        assert!(
            w.contains(&format!("{old} is deprecated; use {new} instead")),
            "{w}"
        );
    }
    // activate: no disables the keystore.
    assert!(!load("redis: {activate: no}").unwrap().enabled);
    assert!(!load("redis: {activate: false}").unwrap().enabled);
    // New keys win over legacy ones.
    let c = load(
        "redis: {activate: no, redisip: 10.1.1.1, redisport: 6390}\n\
         keystore: {enabled: true, redis: {ip: 127.0.0.9, port: 7777}}\n",
    )
    .unwrap();
    assert!(c.enabled);
    assert_eq!(c.redis.address(), "127.0.0.9:7777");
    // Legacy keys apply to redis only; dragonfly keeps its own section.
    let c = load("redis: {redisip: 10.1.1.1}\nkeystore: {type: dragonfly}\n").unwrap();
    assert_eq!(c.dragonfly.address(), "localhost:6379");
}

#[test]
fn docker_axion_makes_an_empty_ip_the_docker_host() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "config.yaml",
        "keystore:\n  redis: {ip: \"\"}\n  dragonfly: {port: 6380}\n",
    );
    let docker = ConfigLoader::new()
        .path(&p)
        .docker_axion(true)
        .load()
        .unwrap();
    assert_eq!(docker.redis.ip, "172.17.0.1");
    assert_eq!(docker.dragonfly.address(), "172.17.0.1:6380");
    let plain = ConfigLoader::new().path(&p).load().unwrap();
    assert_eq!(plain.redis.ip, "localhost");
    // An explicit ip stays as written, docker or not.
    let p2 = write(
        dir.path(),
        "explicit.yaml",
        "keystore: {redis: {ip: 127.0.0.5}}",
    );
    let c = ConfigLoader::new()
        .path(&p2)
        .docker_axion(true)
        .load()
        .unwrap();
    assert_eq!(c.redis.ip, "127.0.0.5");
    // So does a legacy redisip.
    let p3 = write(dir.path(), "legacy.yaml", "redis: {redisip: 127.0.0.6}");
    let c = ConfigLoader::new()
        .path(&p3)
        .docker_axion(true)
        .load()
        .unwrap();
    assert_eq!(c.redis.ip, "127.0.0.6");
}

#[test]
fn axion_package_overlay_is_deep_merged_over_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(
        dir.path(),
        "config.yaml",
        "keystore:\n  type: redis\n  redis: {ip: 127.0.0.1, port: 6379, user: base}\n  rocksdb: {path: base/db}\nsystem: {cachettl: 300}\n",
    );
    write(
        dir.path(),
        "config.billing.yaml",
        "keystore:\n  type: rocksdb\n  redis: {port: 6390}\nsystem: {cachettl: 30}\n",
    );
    let c = ConfigLoader::new()
        .path(&base)
        .axion_package(Some("billing"))
        .load()
        .unwrap();
    assert_eq!(c.backend, BackendKind::RocksDb);
    assert_eq!(c.redis.port, 6390, "overlay wins");
    assert_eq!(
        c.redis.ip, "127.0.0.1",
        "siblings of overlaid keys are kept"
    );
    assert_eq!(c.redis.user.as_deref(), Some("base"));
    assert_eq!(c.rocksdb.path, Path::new("base/db"));
    assert_eq!(c.default_ttl, Some(30));
    match &c.source {
        ConfigSource::File {
            overlay: Some(o), ..
        } => assert!(o.ends_with("config.billing.yaml")),
        other => panic!("{other:?}"),
    }
    assert!(c.source.to_string().contains("config.billing.yaml"));
    // A package with no overlay file: the base alone.
    let c = ConfigLoader::new()
        .path(&base)
        .axion_package(Some("none"))
        .load()
        .unwrap();
    assert_eq!(c.backend, BackendKind::Redis);
    // A broken overlay is an error naming the overlay.
    write(
        dir.path(),
        "config.broken.yaml",
        "keystore: {redis: {port: nope}}",
    );
    let err = ConfigLoader::new()
        .path(&base)
        .axion_package(Some("broken"))
        .load()
        .unwrap_err();
    assert!(
        err.to_string().contains("config.broken.yaml")
            && err.to_string().contains("keystore.redis.port"),
        "{err}"
    );
}

#[test]
fn an_explicit_missing_file_is_an_error_and_the_default_location_is_optional() {
    let dir = tempfile::tempdir().unwrap();
    let err = ConfigLoader::new()
        .path(dir.path().join("nope.yaml"))
        .load()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("nope.yaml") && err.to_string().contains("not found"),
        "{err}"
    );
    let err = ConfigLoader::new().path(dir.path()).load().unwrap_err();
    assert!(err.to_string().contains("cannot read config file"), "{err}");
}
