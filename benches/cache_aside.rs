//! The cache-aside operations against their one-at-a-time equivalents, in
//! one run, as ratios:
//!
//! - `get_many` of 100 present keys vs 100 sequential `get_cache` calls from
//!   one caller (RocksDB with the values in its memtable, RocksDB with them
//!   in SST files and the block cache, and Redis): how much one round trip
//!   saves;
//! - `get_or_set` of a present key vs `get_cache` of it (1 and 16 callers):
//!   what the single-flight wrapper costs on a hit;
//! - `delete_prefix` of 100 000 keys among 1 000 000 on Redis while 16
//!   callers keep reading other keys: the readers' p99 during the delete vs
//!   before it (SCAN + UNLINK a batch at a time must not stall them).
//!
//! `cargo bench --bench cache_aside` (add `-- --quick`, or set
//! `OBJDATAKEY_BENCH_QUICK=1`, for a short run; `-- get_many`,
//! `-- get_or_set/redis` or `-- delete_prefix` runs the cells whose
//! `section/backend` id contains it).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use objdatakey::{Keystore, Ttl};
use serde::de::IgnoredAny;

/// Keys per batch.
const BATCH: usize = 100;

/// The `COUNT` of the engine's `SCAN` steps in a prefix delete
/// (`SCAN_COUNT` in `src/backend/redis/commands.rs`), for the per-step figure.
const SCAN_COUNT: u64 = 1000;

/// Latency figures of the readers' GETs.
struct Reads {
    p99: Duration,
    max: Duration,
    n: usize,
}

fn main() {
    let quick = support::quick();
    let wanted = section_filter();
    let rounds = if quick { 3 } else { 7 };
    let rt = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let rocks = support::open_handle(dir.path(), objdatakey::Clock::system());
    // The same keys in SST files (written raw and flushed before the handle
    // opens it), as in any database larger than its write buffer: reads
    // then come from the block cache, not the memtable.
    let sst_dir = tempfile::tempdir().expect("temp dir");
    {
        let db = rocksdb::DB::open(&support::raw_options(), sst_dir.path()).expect("raw open");
        support::fill_raw(&db, &support::envelope(&support::value(64)));
        db.flush().expect("flush");
    }
    let rocks_sst = support::open_handle(sst_dir.path(), objdatakey::Clock::system());
    let server = support::start_redis();
    let redis = server.as_ref().map(|(_, port)| {
        Keystore::builder()
            .config(support::redis_config(*port))
            .metrics(support::metrics_on())
            .build()
            .expect("redis keystore")
    });
    let mut stores = vec![("rocksdb", &rocks), ("rocksdb-sst", &rocks_sst)];
    if let Some(r) = &redis {
        stores.push(("redis", r));
    }
    println!(
        "cache-aside operations: median of {rounds} alternating rounds, {} cores",
        support::cores()
    );

    // The cells of a section, as `section/backend`, that the filter picks.
    let picked = |section: &str| -> Vec<(&str, &Keystore)> {
        stores
            .iter()
            .filter(|(name, _)| wanted(&format!("{section}/{name}")))
            .copied()
            .collect()
    };
    for (name, ks) in picked("get_many").into_iter().chain(picked("get_or_set")) {
        // `rocksdb-sst` holds them already; a write would put them in its memtable.
        if name != "rocksdb-sst" {
            support::fill_handle(&rt, ks, &support::value(64));
        }
    }
    let cells = picked("get_many");
    if !cells.is_empty() {
        get_many_cells(&rt, &cells, rounds, quick);
    }
    if wanted("get_many/raw") {
        raw_get_many_cells(rounds, quick);
    }
    let cells = picked("get_or_set");
    if !cells.is_empty() {
        get_or_set_cells(&rt, &cells, rounds, quick);
    }
    if let Some(redis) = &redis
        && wanted("delete_prefix/redis")
    {
        prefix_delete(&rt, redis, quick);
    }
}

/// Which cells to run (`section/backend`, e.g. `get_many/rocksdb`): those
/// whose id contains the first argument that is not a flag (`cargo bench`
/// passes `--bench`), or all.
fn section_filter() -> impl Fn(&str) -> bool {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    move |section: &str| filter.as_deref().is_none_or(|f| section.contains(f))
}

/// `get_many` of [`BATCH`] present keys vs as many sequential `get_cache`.
fn get_many_cells(
    rt: &tokio::runtime::Runtime,
    stores: &[(&str, &Keystore)],
    rounds: usize,
    quick: bool,
) {
    println!("\nget_many of {BATCH} present keys vs {BATCH} sequential get_cache, 1 caller");
    println!(
        "{:<12} {:>16} {:>16} {:>9}",
        "backend", "sequential us", "get_many us", "ratio"
    );
    for (name, ks) in stores {
        let names: Vec<String> = (0..BATCH as u64).map(support::key).collect();
        let reps = if quick { 200 } else { 1000 };
        let (seq, many, ratio) = support::alternate_rounds(
            rounds,
            || {
                per_batch_us(rt, reps, || async {
                    for n in &names {
                        let v = ks.get_cache::<IgnoredAny>(n).await.expect("get");
                        assert!(v.is_some());
                    }
                })
            },
            || {
                per_batch_us(rt, reps, || async {
                    let v = ks
                        .get_many::<IgnoredAny, _>(&names)
                        .await
                        .expect("get_many");
                    assert!(v.iter().all(Option::is_some));
                })
            },
        );
        // The ratio of the two times: the speed-up of one round trip.
        println!("{name:<12} {seq:>16.1} {many:>16.1} {ratio:>8.2}x");
    }
}

/// What batching alone is worth inside RocksDB, for the handle's rows to
/// be read against: raw `get_pinned` of each of [`BATCH`] keys vs one
/// `batched_multi_get_cf` of them, on a database holding them in its
/// memtable and on one holding them in flushed SST files (block cache).
fn raw_get_many_cells(rounds: usize, quick: bool) {
    let envelope = support::envelope(&support::value(64));
    let names: Vec<String> = (0..BATCH as u64).map(support::key).collect();
    let reps = if quick { 200 } else { 1000 };
    for (name, flush) in [("raw-mem", false), ("raw-sst", true)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = rocksdb::DB::open_cf(
            &support::raw_options(),
            dir.path(),
            [rocksdb::DEFAULT_COLUMN_FAMILY_NAME],
        )
        .expect("raw open");
        support::fill_raw(&db, &envelope);
        if flush {
            db.flush().expect("flush");
        }
        let per_batch_us = |batch: &dyn Fn()| {
            let started = Instant::now();
            for _ in 0..reps {
                batch();
            }
            started.elapsed().as_secs_f64() * 1e6 / reps as f64
        };
        let sequential = || {
            for n in &names {
                assert!(db.get_pinned(n.as_bytes()).expect("get").is_some());
            }
        };
        let batched = || {
            let cf = db
                .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
                .expect("cf");
            let found = db.batched_multi_get_cf(cf, names.iter().map(|n| n.as_bytes()), true);
            assert!(found.iter().all(|r| matches!(r, Ok(Some(_)))));
        };
        batched(); // loads the blocks into the block cache
        let (seq, many, ratio) = support::alternate_rounds(
            rounds,
            || per_batch_us(&sequential),
            || per_batch_us(&batched),
        );
        println!("{name:<12} {seq:>16.1} {many:>16.1} {ratio:>8.2}x");
    }
}

/// `get_or_set` of a present key vs `get_cache` of it.
fn get_or_set_cells(
    rt: &tokio::runtime::Runtime,
    stores: &[(&str, &Keystore)],
    rounds: usize,
    quick: bool,
) {
    println!("\nget_or_set of a present key vs get_cache of it");
    println!(
        "{:<10} {:>8} {:>14} {:>14} {:>9}",
        "backend", "callers", "get ops/s", "g_o_s ops/s", "g_o_s/get"
    );
    // Each side of a round runs about this long (Redis reads are far
    // slower than warm RocksDB ones: a fixed count would take minutes there).
    let side = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    for (name, ks) in stores {
        for callers in [1, 16] {
            let ops = ops_for(rt, ks, callers, side);
            let (get, gos, ratio) = support::alternate_rounds(
                rounds,
                || ops as f64 / run(rt, ks, callers, ops, false).as_secs_f64(),
                || ops as f64 / run(rt, ks, callers, ops, true).as_secs_f64(),
            );
            println!(
                "{name:<10} {callers:>8} {get:>14.0} {gos:>14.0} {:>8.3}x   ({ops} ops a side)",
                1.0 / ratio
            );
        }
    }
}

/// How many reads `callers` callers do in about `side` on `ks`, from a
/// short probe (rounded to a multiple of `callers`, at least 1 000).
fn ops_for(rt: &tokio::runtime::Runtime, ks: &Keystore, callers: usize, side: Duration) -> u64 {
    let probe = 2_000u64;
    let took = run(rt, ks, callers, probe, false).max(Duration::from_micros(1));
    let ops = (probe as f64 * side.as_secs_f64() / took.as_secs_f64()) as u64;
    (ops.max(1_000) / callers as u64) * callers as u64
}

/// Microseconds per call of `batch`, over `reps` calls.
fn per_batch_us<F, Fut>(rt: &tokio::runtime::Runtime, reps: usize, batch: F) -> f64
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    rt.block_on(async {
        let started = Instant::now();
        for _ in 0..reps {
            batch().await;
        }
        started.elapsed().as_secs_f64() * 1e6 / reps as f64
    })
}

/// `ops` reads of present keys from `callers` tasks: `get_or_set` when
/// `via_get_or_set`, else `get_cache`.
fn run(
    rt: &tokio::runtime::Runtime,
    ks: &Keystore,
    callers: usize,
    ops: u64,
    via_get_or_set: bool,
) -> Duration {
    rt.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..callers as u64)
            .map(|t| {
                let ks = ks.clone();
                tokio::spawn(async move {
                    for i in (t..ops).step_by(callers) {
                        let k = support::key(i);
                        if via_get_or_set {
                            let _: String = ks
                                .get_or_set(&k, Ttl::Never, || async {
                                    Err::<String, _>("every key is present")
                                })
                                .await
                                .expect("get_or_set");
                        } else {
                            let v = ks.get_cache::<String>(&k).await.expect("get");
                            assert!(v.is_some());
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("bench task");
        }
        started.elapsed()
    })
}

/// Fills `total` keys (every tenth under `doomed:`), then measures reader
/// p99 before and during `delete_prefix("doomed:")`.
fn prefix_delete(rt: &tokio::runtime::Runtime, ks: &Keystore, quick: bool) {
    let total: u64 = if quick { 100_000 } else { 1_000_000 };
    let doomed = total / 10;
    let value = support::value(64);
    rt.block_on(async {
        ks.clear().await.expect("clear");
        let chunk = 1000u64;
        let tasks: Vec<_> = (0..total / chunk)
            .map(|c| {
                let (ks, value) = (ks.clone(), value.clone());
                tokio::spawn(async move {
                    let entries: Vec<(String, &serde_json::Value)> = (c * chunk..(c + 1) * chunk)
                        .map(|i| {
                            let k = if i % 10 == 0 {
                                format!("doomed:{i}")
                            } else {
                                format!("kept:{i}")
                            };
                            (k, &value)
                        })
                        .collect();
                    ks.set_many(&entries, Ttl::Never).await.expect("fill");
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("fill task");
        }
    });
    let readers = 16;
    let read_for = |during: bool| {
        rt.block_on(async {
            let stop = Arc::new(AtomicBool::new(false));
            let tasks: Vec<_> = (0..readers)
                .map(|r| {
                    let (ks, stop) = (ks.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        let mut i = r;
                        while !stop.load(Ordering::Relaxed) {
                            let k = format!("kept:{}", (i * 7919 % total) | 1);
                            let t = Instant::now();
                            let _ = ks.get_cache::<IgnoredAny>(&k).await.expect("read");
                            lat.push(t.elapsed());
                            i += readers;
                        }
                        lat
                    })
                })
                .collect();
            let (removed, took) = if during {
                let t = Instant::now();
                let n = ks.delete_prefix("doomed:").await.expect("delete_prefix");
                (n, t.elapsed())
            } else {
                tokio::time::sleep(Duration::from_secs(2)).await;
                (0, Duration::ZERO)
            };
            stop.store(true, Ordering::Relaxed);
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("reader"));
            }
            all.sort();
            let p99 = all[(all.len() * 99 / 100).min(all.len() - 1)];
            let max = all.last().copied().unwrap_or_default();
            (
                Reads {
                    p99,
                    max,
                    n: all.len(),
                },
                removed,
                took,
            )
        })
    };
    let (before, _, _) = read_for(false);
    let (during, removed, took) = read_for(true);
    assert_eq!(
        removed, doomed,
        "delete_prefix removed {removed} of {doomed}"
    );
    // One SCAN step looks at SCAN_COUNT slots of the whole keyspace.
    let steps = total.div_ceil(SCAN_COUNT);
    println!(
        "\ndelete_prefix of {doomed} keys among {total} on redis, {readers} readers GETting other keys"
    );
    println!(
        "delete: removed {removed} in {:.0} ms ({steps} SCAN COUNT {SCAN_COUNT} steps + UNLINKs, \
         {:.2} ms a step on average)",
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e3 / steps as f64
    );
    println!(
        "GETs before: p99 {:.0} us, max {:.1} ms ({} reads in 2 s)",
        before.p99.as_secs_f64() * 1e6,
        before.max.as_secs_f64() * 1e3,
        before.n
    );
    println!(
        "GETs during: p99 {:.0} us, max {:.1} ms ({} reads): p99 {:.2}x before",
        during.p99.as_secs_f64() * 1e6,
        during.max.as_secs_f64() * 1e3,
        during.n,
        during.p99.as_secs_f64() / before.p99.as_secs_f64()
    );
}
