//! Smoke test of `objdatakey load` on RocksDB in a temp dir: it runs, its JSON
//! parses and adds up, its keys are deterministic, and bad options are clear
//! errors. No timing is asserted (machines differ); only counts and order.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::cli;

/// A temp dir with a `config.yaml` selecting RocksDB under it.
fn rocks_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "keystore:\n  type: rocksdb\n  rocksdb:\n    path: db\n",
    )
    .unwrap();
    dir
}

fn load(dir: &Path, args: &[&str]) -> Output {
    let config = dir.join("config.yaml");
    let mut cmd = Command::new(cli());
    cmd.current_dir(dir)
        .arg("--config")
        .arg(&config)
        .arg("load")
        .args(args);
    for var in ["OBJDATAKEY_CONFIG", "AXION_PACKAGE", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    cmd.output().expect("run the objdatakey binary")
}

/// Runs a load that must succeed and answers its JSON summary.
fn load_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let o = load(dir, args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "load {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn num(v: &serde_json::Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing or not a number in {v}"))
}

#[test]
fn a_mixed_run_reports_consistent_figures() {
    let dir = rocks_dir();
    let v = load_json(
        dir.path(),
        &["--ops", "2000", "--concurrency", "8", "--json"],
    );
    assert_eq!(v["ops"], 2000, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["backend"], "rocksdb");
    assert_eq!(v["concurrency"], 8);
    assert_eq!(num(&v, "gets") + num(&v, "sets"), 2000.0, "{v}");
    assert_eq!(num(&v, "hits") + num(&v, "misses"), num(&v, "gets"), "{v}");
    let (p50, p95, p99, p999, max) = (
        num(&v, "p50_us"),
        num(&v, "p95_us"),
        num(&v, "p99_us"),
        num(&v, "p999_us"),
        num(&v, "max_us"),
    );
    assert!(
        0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= p999 && p999 <= max,
        "{v}"
    );
    // Microseconds, not nanoseconds: no handle call is faster than 1 us.
    assert!(max >= 1.0, "latency units: {v}");
    assert!(num(&v, "ops_per_sec") > 0.0 && num(&v, "elapsed_secs") > 0.0);
    let hit_rate = num(&v, "hit_rate");
    assert!((0.0..=1.0).contains(&hit_rate), "{v}");
    if cfg!(target_os = "linux") {
        assert!(num(&v, "peak_rss_bytes") > 0.0, "{v}");
    }
}

#[test]
fn a_write_run_then_a_read_run_over_the_same_keys_hits_every_time() {
    let dir = rocks_dir();
    let w = load_json(
        dir.path(),
        &[
            "--ops",
            "600",
            "--keys",
            "500",
            "--read-ratio",
            "0",
            "--concurrency",
            "4",
            "--json",
        ],
    );
    assert_eq!(w["sets"], 600, "{w}");
    assert_eq!(w["gets"], 0, "{w}");
    assert!(w["hit_rate"].is_null(), "no reads, no hit rate: {w}");
    let r = load_json(
        dir.path(),
        &[
            "--ops",
            "1000",
            "--keys",
            "500",
            "--read-ratio",
            "1",
            "--concurrency",
            "16",
            "--json",
        ],
    );
    assert_eq!(r["gets"], 1000, "{r}");
    assert_eq!(r["hits"], 1000, "{r}");
    assert_eq!(r["hit_rate"], 1.0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
}

#[test]
fn the_text_summary_names_every_figure() {
    let dir = rocks_dir();
    let o = load(dir.path(), &["--ops", "200", "--concurrency", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for word in [
        "200 ops on rocksdb",
        "ops/s",
        "p50",
        "p99",
        "p99.9",
        "hit rate",
        "errors: 0",
        "peak RSS",
    ] {
        assert!(out.contains(word), "{word:?} missing from:\n{out}");
    }
    // Not a terminal: no progress line on stderr.
    assert!(!String::from_utf8_lossy(&o.stderr).contains('\r'));
}

#[test]
fn bad_options_are_clear_usage_errors() {
    let dir = rocks_dir();
    let o = load(dir.path(), &["--read-ratio", "2"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--read-ratio") && err.contains("from 0") && err.contains("to 1"),
        "{err}"
    );
    let o = load(dir.path(), &["--ops", "10", "--duration", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = load(dir.path(), &["--ttl", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("whole number of seconds"));
}

#[test]
fn an_unopenable_database_is_fatal_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // The database path is a regular file: opening must fail before any load.
    std::fs::write(dir.path().join("db"), "not a directory").unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "keystore:\n  type: rocksdb\n  rocksdb:\n    path: db\n",
    )
    .unwrap();
    let o = load(dir.path(), &["--ops", "10", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "no summary on a fatal error");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: ") && err.contains("db"), "{err}");
}

#[test]
fn get_or_set_mode_loads_each_key_exactly_once() {
    let dir = rocks_dir();
    let v = load_json(
        dir.path(),
        &[
            "--mode",
            "get-or-set",
            "--concurrency",
            "64",
            "--keys",
            "300",
            "--ops",
            "6000",
            "--loader-ms",
            "2",
            "--json",
        ],
    );
    assert_eq!(num(&v, "ops"), 6000.0);
    assert_eq!(num(&v, "errors"), 0.0, "{v}");
    // 64 callers over 300 keys, starting empty, TTL never: one load per key.
    assert_eq!(num(&v, "loader_calls"), 300.0, "{v}");
    assert!(v["hit_rate"].is_null(), "{v}");
    // A mixed run reports no loader calls.
    let mixed = load_json(dir.path(), &["--ops", "100", "--json"]);
    assert!(mixed["loader_calls"].is_null(), "{mixed}");
}

/// `--key-dist` chooses the keys the operations use, counted here by a
/// sequential read run over the whole key space after a write run: a hot
/// set takes every write, a zipfian run touches far fewer keys than a
/// uniform one (which touches about K(1 − e^(−N/K))), and a seed repeats
/// a run's keys.
#[test]
fn key_distributions_choose_the_keys_written() {
    let written = |dist: &str, seed: &str| {
        let dir = rocks_dir();
        let w = load_json(
            dir.path(),
            &[
                "--ops",
                "1000",
                "--keys",
                "1000",
                "--read-ratio",
                "0",
                "--key-dist",
                dist,
                "--seed",
                seed,
                "--json",
            ],
        );
        assert_eq!(w["key_dist"], dist, "{w}");
        let r = load_json(
            dir.path(),
            &[
                "--ops",
                "1000",
                "--keys",
                "1000",
                "--read-ratio",
                "1",
                "--json",
            ],
        );
        r["hits"].as_u64().unwrap()
    };
    assert_eq!(written("hotset:0.1:1", "1"), 100);
    let uniform = written("uniform", "1");
    // 1000 (1 − e^(−1)) = 632.
    assert!((590..=675).contains(&uniform), "{uniform}");
    let zipf = written("zipf:0.99", "1");
    assert!(zipf * 3 < uniform * 2, "zipf {zipf}, uniform {uniform}");
    assert_eq!(written("zipf:0.99", "1"), zipf, "a seed repeats a run");
    assert_ne!(written("uniform", "2"), 0);

    let dir = rocks_dir();
    let o = load(dir.path(), &["--ops", "10", "--key-dist", "zipf:1.5"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("below 1"), "{err}");
}

/// A load run against the redis-server on `port`, which is stopped
/// (SIGSTOP) one second into the run and continued a second later.
fn through_a_one_second_pause(
    server: &common::redis_server::RedisServer,
    args: &[&str],
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "keystore:\n  type: redis\n  redis:\n    ip: 127.0.0.1\n    port: {}\n",
            server.port
        ),
    )
    .unwrap();
    let child = Command::new(cli())
        .arg("--config")
        .arg(&config)
        .arg("load")
        .args(args)
        .args([
            "--duration",
            "4",
            "--read-ratio",
            "1",
            "--keys",
            "1000",
            "--json",
        ])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the objdatakey binary");
    std::thread::sleep(std::time::Duration::from_secs(1));
    server.signal("STOP");
    std::thread::sleep(std::time::Duration::from_secs(1));
    server.signal("CONT");
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// An open loop (`--rate`) times each operation from when it was due, so
/// a second's stall of the server shows in its p99 (the operations due
/// during the pause waited for it), where a closed loop over the same
/// pause sends only its few callers' operations into it and reports a
/// small p99 (coordinated omission). The schedule keeps its times: the
/// achieved rate stays at `--rate`, and the delayed operations are
/// counted late.
#[test]
fn an_open_loop_shows_a_stall_that_a_closed_loop_hides() {
    let Some(server) = common::redis_server::RedisServer::start() else {
        return;
    };
    let open = through_a_one_second_pause(&server, &["--rate", "2000", "--concurrency", "64"]);
    assert_eq!(open["intended_rate"], 2000.0, "{open}");
    assert!(num(&open, "p99_us") >= 300_000.0, "{open}");
    let achieved = num(&open, "achieved_rate");
    assert!((1900.0..=2100.0).contains(&achieved), "{open}");
    assert!(num(&open, "late_ops") >= 1000.0, "{open}");
    assert_eq!(open["errors"], 0, "{open}");

    let closed = through_a_one_second_pause(&server, &["--concurrency", "16"]);
    assert!(closed["intended_rate"].is_null(), "{closed}");
    assert_eq!(closed["late_ops"], 0, "{closed}");
    assert!(
        num(&closed, "max_us") >= 300_000.0,
        "the pause was there: {closed}"
    );
    assert!(num(&closed, "p99_us") < 100_000.0, "{closed}");
}
