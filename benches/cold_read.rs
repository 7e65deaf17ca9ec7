//! Reads in a fresh process, over a database a previous process wrote: the
//! README's load read run (`objdatakey load --read-ratio 1`) against raw
//! `DB::get` from 2 threads on the same reopened database.
//!
//! 1. `objdatakey load --read-ratio 0` writes every key of the key space (a
//!    process of its own, which closes the database when done).
//! 2. Rounds, alternating which side goes first; each side is a fresh
//!    process, so its block cache starts empty:
//!    - handle: `objdatakey load --read-ratio 1 --json`, the same flags as
//!      the README's load run (64 callers, 64-byte values);
//!    - raw: this bench re-executed as its own child, which opens the
//!      database with the engine's options and reads the same keys in the
//!      same order with `DB::get` from 2 threads, recording each read's
//!      latency in an HDR histogram as the load tool does.
//!
//!    Both count from the first read, after the database is open (opening
//!    replays the write-ahead log; it is not part of either figure).
//!
//! `cargo bench --bench cold_read` (add `-- --quick`, or set
//! `OBJDATAKEY_BENCH_QUICK=1`, for 10 000 keys and 100 000 reads).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Callers of the handle's read run (the README's load run's default).
const CALLERS: u64 = 64;
/// Threads of the raw side (one per core of the 2-core machine the comparison is for).
const RAW_THREADS: u64 = 2;
/// Set in the child that runs the raw side: the database directory.
const ENV_RAW_DIR: &str = "OBJDATAKEY_COLD_READ_RAW_DIR";
/// Set in the raw child: keys and reads.
const ENV_RAW_SHAPE: &str = "OBJDATAKEY_COLD_READ_SHAPE";

fn main() {
    if let Some(dir) = std::env::var_os(ENV_RAW_DIR) {
        let shape = std::env::var(ENV_RAW_SHAPE).expect("the parent sets the shape");
        let (keys, ops) = shape.split_once(',').expect("keys,ops");
        raw_child(
            Path::new(&dir),
            keys.parse().expect("keys"),
            ops.parse().expect("ops"),
        );
        return;
    }
    let (keys, ops, rounds) = if support::quick() {
        (10_000u64, 100_000u64, 2)
    } else {
        (100_000, 1_000_000, 3)
    };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_objdatakey"));
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("rocksdb");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "keystore:\n  type: rocksdb\n  rocksdb:\n    path: {}\n",
            db.display()
        ),
    )
    .expect("write config");
    let load = |read_ratio: &str, n: u64| {
        let out = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .args(["load", "--keys", &keys.to_string(), "--ops", &n.to_string()])
            .args(["--concurrency", &CALLERS.to_string(), "--value-bytes", "64"])
            .args(["--ttl", "never", "--read-ratio", read_ratio, "--json"])
            .output()
            .expect("run objdatakey load");
        assert!(
            out.status.success(),
            "objdatakey load failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("load --json");
        assert_eq!(v["errors"], 0, "{v}");
        v
    };
    let write = load("0", ops.max(keys));
    println!(
        "cold reads: {keys} keys written by a previous process ({:.0} writes/s), {ops} reads per \
         side and round, {rounds} rounds; handle: objdatakey load, {CALLERS} callers; raw: \
         DB::get from {RAW_THREADS} threads; each side a fresh process",
        num(&write, "ops_per_sec")
    );
    println!(
        "{:<6} {:<6} {:>12} {:>10} {:>10} {:>12} {:>12}",
        "round", "side", "op/s", "p50 us", "p99 us", "p99.9 us", "max us"
    );
    let (mut handle, mut raw) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let sides: [&str; 2] = if round % 2 == 0 {
            ["handle", "raw"]
        } else {
            ["raw", "handle"]
        };
        for side in sides {
            let v = if side == "handle" {
                load("1", ops)
            } else {
                raw_run(&db, keys, ops)
            };
            assert_eq!(num(&v, "hits"), ops as f64, "{side}: every read hits: {v}");
            println!(
                "{round:<6} {side:<6} {:>12.0} {:>10.1} {:>10.1} {:>12.1} {:>12.1}",
                num(&v, "ops_per_sec"),
                num(&v, "p50_us"),
                num(&v, "p99_us"),
                num(&v, "p999_us"),
                num(&v, "max_us")
            );
            let rate = num(&v, "ops_per_sec");
            if side == "handle" {
                handle.push(rate);
            } else {
                raw.push(rate);
            }
        }
    }
    let (h, r) = (support::median(&mut handle), support::median(&mut raw));
    println!(
        "median: handle {h:.0} op/s, raw {r:.0} op/s, handle/raw {:.2}x",
        h / r
    );
}

fn num(v: &serde_json::Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// Runs the raw side in a child process; answers its summary.
fn raw_run(db: &Path, keys: u64, ops: u64) -> serde_json::Value {
    let out = Command::new(std::env::current_exe().expect("this bench's path"))
        .env(ENV_RAW_DIR, db)
        .env(ENV_RAW_SHAPE, format!("{keys},{ops}"))
        .output()
        .expect("run the raw child");
    assert!(
        out.status.success(),
        "raw child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("raw child's summary")
}

/// The raw side: open `dir` with the engine's options, read key `i mod
/// keys` for every op `i` from [`RAW_THREADS`] threads (thread `t` runs ops
/// `t, t + T, …`, as the load tool's tasks do), print a summary.
fn raw_child(dir: &Path, keys: u64, ops: u64) {
    let db = rocksdb::DB::open(&support::raw_options(), dir).expect("open the database raw");
    let started = Instant::now();
    let per_thread: Vec<(Histogram<u64>, u64)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..RAW_THREADS)
            .map(|t| {
                let db = &db;
                s.spawn(move || {
                    let mut h = Histogram::<u64>::new(3).expect("histogram");
                    let mut hits = 0u64;
                    let mut i = t;
                    while i < ops {
                        let began = Instant::now();
                        let key = format!("load:{:08}", i % keys);
                        if db.get(key.as_bytes()).expect("raw get").is_some() {
                            hits += 1;
                        }
                        let ns = began.elapsed().as_nanos() as u64;
                        h.record(ns.max(1)).expect("record");
                        i += RAW_THREADS;
                    }
                    (h, hits)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("raw thread"))
            .collect()
    });
    let elapsed = started.elapsed();
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    let mut hits = 0;
    for (h, n) in per_thread {
        all.add(&h).expect("merge");
        hits += n;
    }
    let q = |p: f64| all.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "ops_per_sec": ops as f64 / elapsed.as_secs_f64(),
            "p50_us": q(0.5),
            "p99_us": q(0.99),
            "p999_us": q(0.999),
            "max_us": all.max() as f64 / 1000.0,
            "hits": hits,
        })
    );
}
