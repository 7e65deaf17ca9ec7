//! The in-process tier (`keystore.l1`) on Redis, in one run:
//!
//! - **GET of names the tier holds** vs raw redis-rs `MultiplexedConnection`
//!   GET of the same names (64 B JSON, the same decode on both sides), at 1,
//!   16 and 64 callers, as medians of alternating rounds and `tier/raw`
//!   ratios;
//! - **the coherence window**: instance A sets a name that instance B holds
//!   in its tier; the time from the start of A's `set_cache` until B answers
//!   the new value, over 1 000 trials on loopback (p50, p99, max).
//!
//! `cargo bench --bench tier` (add `-- --quick`, or set
//! `OBJDATAKEY_BENCH_QUICK=1`, for a short run). Starts its own redis-server.

mod support;

use std::time::{Duration, Instant};

use objdatakey::{Config, Keystore, Ttl};
use support::Op;

const CALLERS: [usize; 3] = [1, 16, 64];

fn main() {
    let quick = support::quick();
    let Some((_server, port)) = support::start_redis() else {
        return;
    };
    let (rounds, ops, trials) = if quick {
        (3, 50_000u64, 200)
    } else {
        (5, 400_000u64, 1000)
    };
    let rt = support::runtime();
    let mut config = support::redis_config(port);
    config.tier.enabled = true;
    // Long enough that no copy goes stale during a round.
    config.tier.ttl_max = Duration::from_secs(3600);
    let build = |c: &Config| {
        Keystore::builder()
            .config(c.clone())
            .metrics(support::metrics_on())
            .build()
            .expect("redis keystore with the tier")
    };
    let (a, b) = (build(&config), build(&config));
    let value = support::value(64);
    support::fill_handle(&rt, &a, &value);
    let raw = support::raw_redis(&rt, port);
    // Warm B's tier: every name once.
    support::run_handle(&rt, &b, Op::Get, &value, 16, support::WARM_KEYS, Ttl::Never);

    println!(
        "GET 64 B of names held in the tier vs raw redis-rs GET: median of {rounds} alternating \
         rounds of {ops} ops per side, {} cores",
        support::cores()
    );
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "callers", "tier ops/s", "raw ops/s", "tier/raw", "tier us/op", "raw us/op"
    );
    for callers in CALLERS {
        let raw_ops = (ops / 20).max(10_000);
        let (tier, rawv, ratio) = support::alternate_rounds(
            rounds,
            || {
                ops as f64
                    / support::run_handle(&rt, &b, Op::Get, &value, callers, ops, Ttl::Never)
                        .as_secs_f64()
            },
            || {
                raw_ops as f64
                    / support::run_raw_redis(&rt, &raw, Op::Get, "", callers, raw_ops, 0)
                        .as_secs_f64()
            },
        );
        println!("{callers:<8} {}", support::figures(tier, rawv, ratio));
    }

    println!(
        "\ncoherence window: A sets a name B holds in its tier; from the start of A's set_cache \
         until B answers the new value, {trials} trials"
    );
    let mut windows = rt.block_on(async {
        let name = "coherence";
        a.set_cache(name, &0u64, Ttl::Seconds(600)).await.unwrap();
        let mut out = Vec::with_capacity(trials);
        for i in 1..=trials as u64 {
            // B holds the old value.
            let old: u64 = b.get_cache(name).await.unwrap().expect("present");
            assert_eq!(old, i - 1);
            let started = Instant::now();
            let (a2, b2) = (a.clone(), b.clone());
            let writer =
                tokio::spawn(async move { a2.set_cache(name, &i, Ttl::Seconds(600)).await });
            loop {
                let seen: Option<u64> = b2.get_cache(name).await.unwrap();
                if seen != Some(i - 1) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            out.push(started.elapsed());
            writer.await.unwrap().unwrap();
        }
        out
    });
    windows.sort();
    let at = |q: f64| windows[((windows.len() as f64 * q) as usize).min(windows.len() - 1)];
    println!(
        "p50 {:>8.1} us   p99 {:>8.1} us   max {:>8.1} us",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        windows[windows.len() - 1].as_secs_f64() * 1e6
    );
    rt.block_on(async {
        b.flush_metrics().await;
        let s = b.stats().await.tier;
        println!(
            "B's tier: {} hits, {} misses, {} invalidations received, {} bytes in {} entries",
            s.hits, s.misses, s.invalidations_received, s.bytes, s.entries
        );
    });
    rt.block_on(a.shutdown());
    rt.block_on(b.shutdown());
}
