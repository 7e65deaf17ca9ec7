//! The janitor's sweep: how long `purge_expired()` takes for 10 000 and
//! 100 000 expired entries among 1 000 000 live never-expire keys (it must
//! follow the expired count, not the total), and what a sweep does to the
//! p99 of foreground GETs.
//!
//! A manual clock expires entries without waiting: each iteration writes
//! the expired set with a 60 s TTL through the handle (untimed), moves the
//! clock 120 s on, and times only the sweep. The 1 000 000 live keys are
//! written once, straight into RocksDB in the stored format (much faster than
//! through the handle, and never-expire entries have no index entry either
//! way), and reused by every group.
//!
//! `cargo bench --bench janitor` (add `-- --quick`, or set
//! `OBJDATAKEY_BENCH_QUICK=1`, for 100 000 live keys and fewer rounds).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use hdrhistogram::Histogram;
use objdatakey::{Clock, Keystore, Ttl};
use serde::de::IgnoredAny;

/// Foreground callers during the p99 measurement.
const FOREGROUND_CALLERS: u64 = 16;
/// Distinct batches of expired keys written so far (keeps names unique).
static BATCH: AtomicU64 = AtomicU64::new(0);

fn live_key(i: u64) -> String {
    format!("live:{i:08}")
}

/// Writes `n` never-expire entries in the handle's stored format into a new
/// database at `path` (closed again before the handle opens it).
fn write_live(path: &Path, n: u64) {
    let db = rocksdb::DB::open(&support::raw_options(), path).expect("open raw RocksDB");
    let envelope = support::envelope(&support::value(64));
    let mut batch = rocksdb::WriteBatch::default();
    for i in 0..n {
        batch.put(live_key(i).as_bytes(), &envelope);
        if batch.len() == 10_000 {
            db.write(std::mem::take(&mut batch)).expect("raw write");
        }
    }
    db.write(batch).expect("raw write");
    db.flush().expect("flush");
}

/// Writes `n` entries with a 60 s TTL through the handle, then moves the clock
/// past their expiry. Untimed setup.
fn write_expired(rt: &tokio::runtime::Runtime, ks: &Keystore, clock: &Clock, n: u64) {
    let batch = BATCH.fetch_add(1, Ordering::Relaxed);
    rt.block_on(async {
        let tasks: Vec<_> = (0..64u64)
            .map(|t| {
                let ks = ks.clone();
                tokio::spawn(async move {
                    for i in (t..n).step_by(64) {
                        ks.set_cache(&format!("exp:{batch}:{i:08}"), &i, Ttl::Seconds(60))
                            .await
                            .expect("set expiring");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("writer task");
        }
    });
    clock.advance(Duration::from_secs(120));
}

fn purge(rt: &tokio::runtime::Runtime, ks: &Keystore, expected: u64) -> Duration {
    let started = Instant::now();
    let removed = rt.block_on(ks.purge_expired()).expect("purge");
    let took = started.elapsed();
    // The sweep deletes exactly the expired set; the count also holds what
    // the compaction filter dropped since the last sweep, which can include
    // older versions of values an earlier sweep already deleted (and
    // counted), when the compaction did not include that deletion.
    assert!(
        removed >= expected,
        "the sweep removes the whole expired set: {removed} < {expected}"
    );
    if removed > expected {
        eprintln!(
            "purge_expired: {removed} removed for {expected} expired ({} by the compaction filter)",
            removed - expected
        );
    }
    took
}

fn sweep_time(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    ks: &Keystore,
    clock: &Clock,
    live: u64,
) {
    let mut g = c.benchmark_group("janitor_sweep");
    // Each iteration needs fresh expired entries, whose (untimed) writing
    // dwarfs the sweep: flat sampling with a tiny target time gives one
    // iteration per sample instead of the dozens criterion would plan.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    for expired in [10_000u64, 100_000] {
        let id = BenchmarkId::new(format!("expired_among_{live}_live"), expired);
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        write_expired(rt, ks, clock, expired);
                        purge(rt, ks, expired)
                    })
                    .sum()
            });
        });
    }
    g.finish();
}

/// GETs of live keys from [`FOREGROUND_CALLERS`] tasks until `stop` is set (or
/// `max_ops` ran); answers the latency histogram in nanoseconds.
async fn foreground(
    ks: &Keystore,
    live: u64,
    stop: Arc<AtomicBool>,
    max_ops: u64,
) -> Histogram<u64> {
    let tasks: Vec<_> = (0..FOREGROUND_CALLERS)
        .map(|t| {
            let ks = ks.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).expect("valid sigfig");
                let mut i = t;
                while !stop.load(Ordering::Relaxed) && i < max_ops {
                    // Spread over the live set: a multiplicative hash of i.
                    let k = live_key(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % live);
                    let started = Instant::now();
                    let v = ks.get_cache::<IgnoredAny>(&k).await.expect("get");
                    let _ = h.record((started.elapsed().as_nanos() as u64).max(1));
                    assert!(v.is_some(), "live key {k} missing");
                    i += FOREGROUND_CALLERS;
                }
                h
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new(3).expect("valid sigfig");
    for t in tasks {
        all.add(t.await.expect("foreground task"))
            .expect("same precision");
    }
    all
}

/// Foreground GET p99 without a sweep vs during one (of `expired` entries).
fn foreground_p99(
    rt: &tokio::runtime::Runtime,
    ks: &Keystore,
    clock: &Clock,
    live: u64,
    rounds: usize,
    expired: u64,
) {
    let (mut base, mut during, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let mut during_ops = Vec::new();
    let mut sweep_ms = Vec::new();
    for _ in 0..rounds {
        // Without a sweep: a fixed number of GETs.
        let quiet = rt.block_on(foreground(
            ks,
            live,
            Arc::new(AtomicBool::new(false)),
            40_000,
        ));
        // During a sweep: GETs for exactly as long as the sweep runs.
        write_expired(rt, ks, clock, expired);
        let stop = Arc::new(AtomicBool::new(false));
        let (busy, took) = rt.block_on(async {
            let fg = tokio::spawn({
                let ks = ks.clone();
                let stop = stop.clone();
                async move { foreground(&ks, live, stop, u64::MAX).await }
            });
            // Let the foreground callers get going before the sweep starts.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let started = Instant::now();
            let removed = ks.purge_expired().await.expect("purge");
            let took = started.elapsed();
            stop.store(true, Ordering::Relaxed);
            assert_eq!(removed, expired);
            (fg.await.expect("foreground"), took)
        });
        let (q, b) = (
            quiet.value_at_quantile(0.99) as f64 / 1000.0,
            busy.value_at_quantile(0.99) as f64 / 1000.0,
        );
        base.push(q);
        during.push(b);
        ratio.push(b / q);
        during_ops.push(busy.len() as f64);
        sweep_ms.push(took.as_secs_f64() * 1000.0);
    }
    println!(
        "foreground GET p99 ({FOREGROUND_CALLERS} callers, {live} live keys), median of {rounds} rounds:"
    );
    println!(
        "  without sweep: {:.1} us; during a sweep of {expired} expired ({:.1} ms, {:.0} GETs meanwhile): {:.1} us; during/without: {:.2}x",
        support::median(&mut base),
        support::median(&mut sweep_ms),
        support::median(&mut during_ops),
        support::median(&mut during),
        support::median(&mut ratio)
    );
}

fn main() {
    let quick = support::quick();
    let live: u64 = if quick { 100_000 } else { 1_000_000 };
    let rt = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    let started = Instant::now();
    write_live(&path, live);
    println!(
        "setup: {live} live keys written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let clock = Clock::manual();
    let ks = support::open_handle(&path, clock.clone());

    let mut c = Criterion::default().configure_from_args();
    sweep_time(&mut c, &rt, &ks, &clock, live);
    let rounds = if quick { 3 } else { 7 };
    foreground_p99(&rt, &ks, &clock, live, rounds, 10_000);
    foreground_p99(&rt, &ks, &clock, live, rounds, 100_000);
    c.final_summary();
    rt.block_on(ks.shutdown());
}
