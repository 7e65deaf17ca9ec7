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
//! 1-caller cells are measured differently (see `Lone`): each side runs in
//! processes of its own, in blocks of one process per side, because a lone
//! caller's speed is mostly where the kernel places it, and a process keeps
//! its placement. The handle rows there are each built as above inside
//! their own process, and a `control` row measures raw redis-rs against raw
//! redis-rs the same way: 1.0x in truth, so it shows the method's own
//! spread. Each 1-caller row ends with the middle half of its blocks'
//! ratios.
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
    // A child process this bench started for one side of a 1-caller cell.
    if let Ok(spec) = std::env::var(LONE_SIDE) {
        return lone_side(&spec);
    }
    let quick = support::quick();
    // `cargo bench` passes `--bench`; a filter argument selects cells by name.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let Some((_server, port)) = support::start_redis() else {
        return;
    };
    let metrics = support::metrics_on();
    // Many short rounds rather than a few long ones: a round trip here is
    // mostly the kernel's wake-ups on 2 shared cores, whose speed drifts
    // widely over seconds; the median of 15 alternating pairs follows that
    // drift far less than the median of 5 (same ops in all).
    let (rounds, ops) = if quick {
        (3, 20_000u64)
    } else {
        (15, 34_000u64)
    };
    // 1-caller cells run each side in processes of its own (see `Lone`):
    // 16 blocks of 4 processes, each process 5 rounds of 8 500 ops.
    let lone = if quick {
        Lone {
            blocks: 4,
            rounds: 1,
            ops: 5_000,
        }
    } else {
        Lone {
            blocks: 16,
            rounds: 5,
            ops: 8_500,
        }
    };
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
    println!(
        "handle vs raw redis-rs MultiplexedConnection: {rounds} rounds of {ops} ops per side \
         and cell; at 1 caller {} blocks of {} processes, each {} rounds of {} ops; {} cores, \
         metrics {}",
        lone.blocks,
        LONE_SIDES.len(),
        lone.rounds,
        lone.ops,
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
                if callers == 1 {
                    lone.cell(&cell, op, size, port);
                    continue;
                }
                for (io, ks) in handles {
                    support::run_handle(&rt, ks, op, &value, callers, ops / 4, TTL);
                    support::run_raw_redis(&rt, &raw, op, &json, callers, ops / 4, TTL_SECS);
                    let (hm, rm, ratio) = support::alternate_rounds(
                        rounds,
                        || {
                            let d = support::run_handle(&rt, ks, op, &value, callers, ops, TTL);
                            ops as f64 / d.as_secs_f64()
                        },
                        || {
                            let d = support::run_raw_redis(
                                &rt, &raw, op, &json, callers, ops, TTL_SECS,
                            );
                            ops as f64 / d.as_secs_f64()
                        },
                    );
                    println!(
                        "{cell:<12} {io:>7} {callers:>7} {}",
                        support::figures(hm, rm, ratio)
                    );
                }
            }
        }
    }
    rt.block_on(by_default.shutdown());
    rt.block_on(on_engine.shutdown());
}

/// The environment variable that makes this bench a child process running
/// one side of a 1-caller cell (`side op size port rounds ops`), which
/// prints its mean microseconds per op.
const LONE_SIDE: &str = "OBJDATAKEY_BENCH_LONE_SIDE";

/// The sides of a 1-caller cell, each in processes of its own: the handle
/// as an application builds it, the handle with its I/O on the engine's
/// thread, raw redis-rs, and raw redis-rs again as the control.
const LONE_SIDES: [&str; 4] = ["default", "engine", "raw", "control"];

/// How 1-caller cells are measured: each side in processes of its own.
///
/// A lone caller's round trip runs at one of two clearly different speeds
/// for a whole round (either side), by where the kernel and tokio place the
/// caller's task, the connection's driver and redis-server, and a process
/// tends to keep its placement: measured in one process, raw against a
/// second raw connection spreads as wide as the margin a 1-caller target
/// allows (see BENCHMARKS.md, Redis GET 64 B at 1 caller). So every block
/// runs one process per side, in an order rotated
/// from block to block; each process warms up, then times its rounds (a
/// fresh task each, as in the other cells). The ratio is the median over
/// blocks of the side's ops/s over raw's in the same block; `control` is
/// raw measured against raw that way, so it shows the method's own spread.
struct Lone {
    blocks: usize,
    /// Rounds per process.
    rounds: usize,
    /// Ops per round.
    ops: u64,
}

impl Lone {
    /// Measures the 1-caller cell `cell` (its rows printed) against the
    /// redis-server on `port`; the warm keys are there already.
    fn cell(&self, cell: &str, op: Op, size: usize, port: u16) {
        let mut us: [Vec<f64>; LONE_SIDES.len()] = Default::default();
        for block in 0..self.blocks {
            for j in 0..LONE_SIDES.len() {
                let side = (block + j) % LONE_SIDES.len();
                us[side].push(self.run(LONE_SIDES[side], op, size, port));
            }
        }
        let raw_at = LONE_SIDES
            .iter()
            .position(|s| *s == "raw")
            .expect("a raw side");
        let raw = &us[raw_at];
        for (side, name) in LONE_SIDES.iter().enumerate() {
            if side == raw_at {
                continue;
            }
            let mut ratios: Vec<f64> = raw.iter().zip(&us[side]).map(|(r, s)| r / s).collect();
            let ratio = support::median(&mut ratios);
            // Sorted by `median`: the middle half of the blocks' ratios.
            let (q1, q3) = (ratios[ratios.len() / 4], ratios[ratios.len() * 3 / 4]);
            let op_s = |us: &[f64]| 1e6 / support::median(&mut us.to_vec());
            println!(
                "{cell:<12} {name:>7} {:>7} {}  (blocks {q1:.3}-{q3:.3})",
                1,
                support::figures(op_s(&us[side]), op_s(raw), ratio)
            );
        }
    }

    /// Runs one process of `side`; answers its mean microseconds per op.
    fn run(&self, side: &str, op: Op, size: usize, port: u16) -> f64 {
        let exe = std::env::current_exe().expect("the bench's own executable");
        let spec = format!(
            "{side} {} {size} {port} {} {}",
            op.name(),
            self.rounds,
            self.ops
        );
        let out = std::process::Command::new(exe)
            .env(LONE_SIDE, &spec)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("start a 1-caller child process");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "1-caller child `{spec}` failed ({}): {text}",
            out.status
        );
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("1-caller child `{spec}` printed {text:?}"))
    }
}

/// A child process's work (see [`Lone`]): one side of a 1-caller cell,
/// warmed up and then timed; prints the mean microseconds per op.
fn lone_side(spec: &str) {
    let fields: Vec<&str> = spec.split(' ').collect();
    let [side, op, size, port, rounds, ops] = fields[..] else {
        panic!("{LONE_SIDE}={spec:?}: want `side op size port rounds ops`");
    };
    let op = match op {
        "get" => Op::Get,
        "set" => Op::Set,
        other => panic!("{LONE_SIDE}={spec:?}: unknown op {other:?}"),
    };
    assert!(
        LONE_SIDES.contains(&side),
        "{LONE_SIDE}={spec:?}: unknown side {side:?}"
    );
    let size: usize = size.parse().expect("size");
    let port: u16 = port.parse().expect("port");
    let rounds: u32 = rounds.parse().expect("rounds");
    let ops: u64 = ops.parse().expect("ops");
    let value = support::value(size);
    let json = serde_json::to_string(&value).unwrap();
    let rt = support::runtime();
    let timed = |run: &dyn Fn(u64) -> std::time::Duration| {
        run(ops / 4);
        (0..rounds).map(|_| run(ops)).sum::<std::time::Duration>()
    };
    let total = if side == "raw" || side == "control" {
        let raw = support::raw_redis(&rt, port);
        timed(&|n| support::run_raw_redis(&rt, &raw, op, &json, 1, n, TTL_SECS))
    } else {
        let builder = Keystore::builder()
            .config(support::redis_config(port))
            .metrics(support::metrics_on());
        let ks = if side == "engine" {
            builder.io_on_engine_thread().build()
        } else {
            let _in_the_runtime = rt.enter();
            builder.build()
        }
        .expect("redis keystore");
        let total = timed(&|n| support::run_handle(&rt, &ks, op, &value, 1, n, TTL));
        rt.block_on(ks.shutdown());
        total
    };
    println!(
        "{:.4}",
        total.as_secs_f64() * 1e6 / (f64::from(rounds) * ops as f64)
    );
}
