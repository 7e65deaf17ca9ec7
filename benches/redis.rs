//! Handle vs raw redis-rs `MultiplexedConnection`, both sides in one run, as
//! a table of medians and `handle/raw` ratios.
//!
//! The bench starts its own `redis-server` on a free loopback port (and skips
//! with a message when redis-server is not installed). Both sides run the same
//! GET or SET workload from the same number of tokio tasks on the same
//! runtime; the raw side shares one `MultiplexedConnection` (cloned per task,
//! as redis-rs intends), the handle side one `Keystore`. Values are the same
//! JSON text on both sides, so the ratio measures the engine (limiter,
//! deadline, JSON, metrics, where the socket I/O runs), not a difference in
//! data.
//!
//! The handle is measured twice, each against raw in rounds of its own:
//! `io default` is built the way an application built on `#[tokio::main]`
//! builds it (inside the bench's multi-thread runtime, with no I/O setting:
//! the connection's driver then runs on that runtime, where the raw
//! connection's driver runs too), `io engine` with
//! `KeystoreBuilder::io_on_engine_thread` (the driver on the engine's own
//! thread).
//!
//! Each 1-caller cell also has a `control` row: a second raw connection
//! measured against the first exactly as the handle is (same rounds, same
//! alternation, same statistic). Raw against itself is 1.0x in truth, so
//! that row shows how far this machine moves a 1-caller ratio by itself: on
//! the 2-core guest of BENCHMARKS.md, 0.89x-1.05x (tenth session).
//!
//! `cargo bench --bench redis` (add `-- --quick`, or set
//! `OBJDATAKEY_BENCH_QUICK=1`, for a short run). Set `OBJDATAKEY_BENCH_METRICS=0`
//! to run the handle side with metrics recording off.

mod support;

use objdatakey::{Keystore, Ttl};
use support::Op;

const CALLERS: [usize; 4] = [1, 16, 64, 256];

/// Both sides write with this TTL (`SET .. EX 3600`).
const TTL_SECS: u64 = 3600;
const TTL: Ttl = Ttl::Seconds(TTL_SECS);

fn main() {
    let quick = support::quick();
    // `cargo bench` passes `--bench`; a filter argument selects cells by name.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let Some((_server, port)) = support::start_redis() else {
        return;
    };
    let metrics = support::metrics_on();
    // Many short rounds rather than a few long ones: a 1-caller round trip
    // here is mostly the kernel's wake-ups on 2 shared cores, whose speed
    // drifts by 10-20% over seconds; the median of 15 alternating pairs
    // follows that drift far less than the median of 5 (same ops in all).
    // 1-caller cells split these further (below).
    let (rounds, ops) = if quick {
        (3, 20_000u64)
    } else {
        (15, 34_000u64)
    };
    // A lone caller's round trip runs at one of two speeds for a whole round
    // (here about 62-75 or 85-102 us per op, either side), by where the
    // kernel and tokio happen to place the caller's task, the connection's
    // driver and redis-server; every round draws that anew, so one pair's
    // ratio ranges from 0.65 to 1.44 (BENCHMARKS.md, tenth session).
    // 1-caller cells therefore run 4x the rounds of a quarter of the ops:
    // 4x the draws per side, the same ops in all.
    let (lone_rounds, lone_ops) = (rounds * 4, ops / 4);
    let rt = support::runtime();
    let config = support::redis_config(port);
    let by_default = {
        let _in_the_runtime = rt.enter();
        Keystore::builder()
            .config(config.clone())
            .metrics(metrics)
            .build()
            .expect("redis keystore")
    };
    let on_engine = Keystore::builder()
        .config(config)
        .metrics(metrics)
        .io_on_engine_thread()
        .build()
        .expect("redis keystore with its I/O on the engine's thread");
    let handles = [("default", &by_default), ("engine", &on_engine)];
    let raw = support::raw_redis(&rt, port);
    let control = support::raw_redis(&rt, port);
    println!(
        "handle vs raw redis-rs MultiplexedConnection: {rounds} rounds of {ops} ops per side \
         and cell ({lone_rounds} of {lone_ops} at 1 caller), {} cores, metrics {}",
        support::cores(),
        if metrics { "on" } else { "off" }
    );
    println!(
        "{:<12} {:>7} {:>7} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "cell",
        "io",
        "callers",
        "handle op/s",
        "raw op/s",
        "handle/raw",
        "handle us/op",
        "raw us/op"
    );
    for &size in &support::VALUE_SIZES {
        let value = support::value(size);
        let json = serde_json::to_string(&value).unwrap();
        // Warm data: every key the GETs read exists.
        support::run_raw_redis(&rt, &raw, Op::Set, &json, 64, support::WARM_KEYS, TTL_SECS);
        for op in [Op::Get, Op::Set] {
            let cell = format!("{}_{}B", op.name(), size);
            if filter.as_deref().is_some_and(|f| !cell.contains(f)) {
                continue;
            }
            for &callers in &CALLERS {
                let (rounds, ops) = if callers == 1 {
                    (lone_rounds, lone_ops)
                } else {
                    (rounds, ops)
                };
                let raw_op_s = |conn| {
                    ops as f64
                        / support::run_raw_redis(&rt, conn, op, &json, callers, ops, TTL_SECS)
                            .as_secs_f64()
                };
                for (io, ks) in handles {
                    support::run_handle(&rt, ks, op, &value, callers, ops / 4, TTL);
                    support::run_raw_redis(&rt, &raw, op, &json, callers, ops / 4, TTL_SECS);
                    let (hm, rm, ratio) = support::alternate_rounds(
                        rounds,
                        || {
                            let d = support::run_handle(&rt, ks, op, &value, callers, ops, TTL);
                            ops as f64 / d.as_secs_f64()
                        },
                        || raw_op_s(&raw),
                    );
                    println!(
                        "{cell:<12} {io:>7} {callers:>7} {}",
                        support::figures(hm, rm, ratio)
                    );
                }
                if callers == 1 {
                    // The control: raw against raw, measured as the handle is.
                    let (cm, rm, ratio) =
                        support::alternate_rounds(rounds, || raw_op_s(&control), || raw_op_s(&raw));
                    println!(
                        "{cell:<12} {:>7} {callers:>7} {}",
                        "control",
                        support::figures(cm, rm, ratio)
                    );
                }
            }
        }
    }
    rt.block_on(by_default.shutdown());
    rt.block_on(on_engine.shutdown());
}
