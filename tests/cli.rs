//! The `objdatakey` command line: check, info, set/get/del, config discovery.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::cli;

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(cli());
    cmd.current_dir(dir).args(args);
    for var in [
        "OBJDATAKEY_CONFIG",
        "AXION_PACKAGE",
        "DOCKER_AXION",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the objdatakey binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temp dir holding a copy of the repository's config.yaml.
fn repo_config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml"),
        dir.path().join("config.yaml"),
    )
    .unwrap();
    dir
}

#[test]
fn check_on_the_repository_config_reports_an_active_rocksdb() {
    let dir = repo_config_dir();
    let o = run(dir.path(), &["check"], &[]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("Config: ") && lines[0].ends_with("config.yaml"),
        "{out}"
    );
    assert_eq!(lines[1], "Current keystore type: rocksdb");
    assert_eq!(lines[2], "Keystore connection is active.");
    // The relative path is relative to the working directory.
    assert!(dir.path().join("local.documents/rocksdb/CURRENT").exists());
}

#[test]
fn set_get_del_round_trip() {
    let dir = repo_config_dir();
    let d = dir.path();
    let o = run(
        d,
        &[
            "set",
            "user:1",
            r#"{"name": "Ada", "tags": ["x", "y"], "n": 1.5}"#,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(d, &["get", "user:1"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "{\"name\":\"Ada\",\"tags\":[\"x\",\"y\"],\"n\":1.5}\n"
    );
    let o = run(d, &["set", "forever", "\"text\"", "--ttl", "never"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&run(d, &["get", "forever"], &[])), "\"text\"\n");
    let o = run(d, &["del", "user:1"], &[]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "deleted\n");
    assert_eq!(stdout(&run(d, &["del", "user:1"], &[])), "not found\n");
    // Missing: nothing on stdout, exit 1.
    let o = run(d, &["get", "user:1"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("not found"));
}

#[test]
fn expired_keys_print_nothing_and_exit_1() {
    let dir = repo_config_dir();
    let d = dir.path();
    assert!(
        run(d, &["set", "brief", "1", "--ttl", "0"], &[])
            .status
            .success()
    );
    let o = run(d, &["get", "brief"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
}

#[test]
fn bad_input_is_a_clear_error_with_exit_1() {
    let dir = repo_config_dir();
    let d = dir.path();
    let o = run(d, &["set", "k", "{not json"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not valid JSON"), "{}", stderr(&o));
    let o = run(d, &["set", "k", "1", "--ttl", "soon"], &[]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    assert!(stderr(&o).contains("invalid TTL"), "{}", stderr(&o));

    std::fs::write(d.join("bad.yaml"), "keystore: {type: mongo}\n").unwrap();
    let o = run(d, &["--config", "bad.yaml", "check"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("bad.yaml") && err.contains(r#"keystore.type: unknown backend "mongo""#),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let o = run(d, &["--config", "missing.yaml", "check"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.yaml"), "{}", stderr(&o));
}

/// Misspelt keys of ours are warned about with the nearest known key, and
/// `check --strict` refuses the file (exit 2) before it connects; other
/// modules' sections and settings pass.
#[test]
fn check_strict_refuses_misspelt_keys_and_names_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("db");
    let yaml = format!(
        "keystore:\n  type: rocksdb\n  rocksdb:\n    path: {}\n    ttl_cleanup_intervall: 5\n  \
         l1:\n    max_byte: 100\nsytem:\n  cachettl: 5\nsystem:\n  cachetll: 7\n  \
         axion_theme: dark\nother_module: {{x: 1}}\n",
        db.display()
    );
    std::fs::write(d.join("typo.yaml"), yaml).unwrap();
    let o = run(d, &["--config", "typo.yaml", "check"], &[]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    for (key, near) in [
        (
            "keystore.rocksdb.ttl_cleanup_intervall",
            "ttl_cleanup_interval",
        ),
        ("keystore.l1.max_byte", "max_bytes"),
        ("sytem", "system"),
        ("system.cachetll", "cachettl"),
    ] {
        let line = format!("{key} is not a known key; ignored (did you mean {near}?)");
        assert!(err.contains(&line), "{line} in {err}");
        assert_eq!(err.matches(&line).count(), 1, "warned once: {err}");
    }
    assert!(err.contains("typo.yaml"), "{err}");
    assert!(
        !err.contains("axion_theme") && !err.contains("other_module"),
        "{err}"
    );

    std::fs::remove_dir_all(&db).unwrap();
    let o = run(d, &["--config", "typo.yaml", "check", "--strict"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "unknown keys refused by check --strict: sytem, \
             keystore.rocksdb.ttl_cleanup_intervall, keystore.l1.max_byte, system.cachetll;"
        ),
        "{err}"
    );
    assert!(!db.exists(), "refused before the database was opened");
    // A clean file passes --strict.
    let clean = format!(
        "keystore:\n  type: rocksdb\n  rocksdb:\n    path: {}\n",
        db.display()
    );
    std::fs::write(d.join("clean.yaml"), clean).unwrap();
    let o = run(d, &["--config", "clean.yaml", "check", "--strict"], &[]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn config_is_found_through_the_environment_then_the_working_directory() {
    let dir = repo_config_dir();
    let elsewhere = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    // OBJDATAKEY_CONFIG, from a directory with no config.yaml.
    let o = run(
        elsewhere.path(),
        &["info"],
        &[("OBJDATAKEY_CONFIG", cfg.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("Config: {}", cfg.display())),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("Keystore Type: rocksdb"));
    // --config wins over OBJDATAKEY_CONFIG.
    std::fs::write(
        elsewhere.path().join("other.yaml"),
        "keystore: {type: dragonfly}\n",
    )
    .unwrap();
    let o = run(
        elsewhere.path(),
        &["--config", "other.yaml", "info"],
        &[("OBJDATAKEY_CONFIG", cfg.to_str().unwrap())],
    );
    assert!(
        stdout(&o).starts_with(
            "Keystore Type: dragonfly\nDragonfly IP: localhost\nDragonfly Port: 6379\n"
        ),
        "{}",
        stdout(&o)
    );
    // Neither: ./config.yaml, and built-in defaults when there is none.
    let o = run(dir.path(), &["info"], &[]);
    assert!(
        stdout(&o).starts_with("Keystore Type: rocksdb\nRocksDB Path: local.documents/rocksdb\n"),
        "{}",
        stdout(&o)
    );
    let o = run(elsewhere.path(), &["info"], &[]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("built-in defaults"), "{}", stdout(&o));
    assert!(stdout(&o).contains("Keystore Type: redis"));
}

#[test]
fn info_shows_settings_but_never_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "keystore:\n  type: redis\n  redis: {ip: 127.0.0.1, port: 6390, user: app, password: hunter2, ssl: true}\n\
         redis: {redisport: 6391}\nsystem: {cachettl: 42}\n",
    )
    .unwrap();
    let o = run(dir.path(), &["info"], &[("RUST_LOG", "debug")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Keystore Type: redis"), "{out}");
    // The Python module's lines, then ours.
    assert!(
        out.starts_with("Keystore Type: redis\nRedis IP: 127.0.0.1\nRedis Port: 6390\n"),
        "{out}"
    );
    assert!(out.contains("address: 127.0.0.1:6390"), "{out}");
    assert!(
        out.contains("user: app") && out.contains("password: set") && out.contains("ssl: yes"),
        "{out}"
    );
    assert!(out.contains("Default TTL (system.cachettl): 42 s"), "{out}");
    assert!(out.contains("ttl_cleanup_interval: 300 s"), "{out}");
    assert!(!out.contains("hunter2") && !stderr(&o).contains("hunter2"));
    // The legacy key is reported, naming the new one (in the log and in info).
    assert!(stderr(&o).contains("redis.redisport is deprecated; use keystore.redis.port instead"));
    assert!(out.contains("Warning:"), "{out}");
}

#[test]
fn axion_package_and_docker_axion_reach_the_cli() {
    let dir = repo_config_dir();
    std::fs::write(
        dir.path().join("config.pkg.yaml"),
        "keystore: {type: redis, redis: {ip: \"\"}}\n",
    )
    .unwrap();
    let o = run(
        dir.path(),
        &["info"],
        &[("AXION_PACKAGE", "pkg"), ("DOCKER_AXION", "1")],
    );
    let out = stdout(&o);
    assert!(out.contains("Keystore Type: redis"), "{out}");
    assert!(out.contains("address: 172.17.0.1:6379"), "{out}");
    assert!(out.contains("config.pkg.yaml"), "{out}");
}

#[test]
fn disabled_keystore_check_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "keystore: {type: rocksdb, enabled: false}\n",
    )
    .unwrap();
    let o = run(dir.path(), &["check"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("Current keystore type: rocksdb"));
    assert!(stdout(&o).contains("disabled"));
    assert!(!dir.path().join("local.documents").exists());
}

#[test]
fn mget_del_prefix_clear_and_ttl_verbs() {
    let dir = repo_config_dir();
    let ok = |args: &[&str]| {
        let o = run(dir.path(), args, &[]);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    ok(&["set", "user:1", "{\"a\":1}", "--ttl", "600"]);
    ok(&["set", "user:2", "[2]", "--ttl", "never"]);
    ok(&["set", "other", "3", "--ttl", "never"]);
    assert_eq!(
        ok(&["mget", "user:2", "missing", "user:1"]),
        "[2]\nnull\n{\"a\":1}\n"
    );
    let left: u64 = ok(&["ttl", "user:1"]).trim().parse().unwrap();
    assert!((595..=600).contains(&left), "{left}");
    assert_eq!(ok(&["ttl", "user:2"]), "never\n");
    let o = run(dir.path(), &["ttl", "missing"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
    assert_eq!(ok(&["del", "--prefix", "user:"]), "2\n");
    assert_eq!(ok(&["mget", "user:1"]), "null\n");
    // clear refuses without --yes, deletes nothing, and says why.
    let o = run(dir.path(), &["clear"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert_eq!(ok(&["mget", "other"]), "3\n");
    assert_eq!(ok(&["clear", "--yes"]), "1\n");
    assert_eq!(ok(&["mget", "other"]), "null\n");
    let o = run(dir.path(), &["del", "--prefix", ""], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
