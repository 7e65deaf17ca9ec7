//! Handle vs raw `rocksdb::DB`, both sides in one run, printed as a table of
//! medians and `handle/raw` ratios (criterion reports each side on its own;
//! this puts them side by side, foyer-style).
//!
//! For every operation (get, set), value size (64 B, 4 KiB) and number of
//! callers (1, 16, 64), each round runs the same number of operations on each
//! side, alternating which side goes first; the table shows the median ops/s
//! of each side over the rounds and the median of the per-round ratios.
//!
//! `cargo bench --bench compare` (add `-- --quick`, or set
//! `OBJDATAKEY_BENCH_QUICK=1`, for a short run). `OBJDATAKEY_BENCH_METRICS=0` runs
//! the handle side with metrics off. `OBJDATAKEY_BENCH_TTL=<seconds>` makes the
//! handle's SETs carry that TTL (so each also gets an expiry index entry) and
//! the raw side's envelopes the matching `expires_at`; by default both write
//! values that never expire. `OBJDATAKEY_BENCH_VALUE=object` stores JSON
//! objects of many short fields instead of one long JSON string.

mod support;

use objdatakey::{Clock, Ttl};
use support::{CONCURRENCY, Op, VALUE_SIZES};

fn main() {
    let quick = support::quick();
    // `cargo bench` passes `--bench`; a filter argument selects cells by name.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let (rounds, ops) = if quick {
        (3, 10_000u64)
    } else {
        (5, 100_000u64)
    };
    let rt = support::runtime();
    println!(
        "handle vs raw rocksdb::DB: {rounds} rounds of {ops} ops per side and cell, {} cores; \
         raw side runs min(callers, cores) threads; metrics {}; keys {}; values {}",
        support::cores(),
        if support::metrics_on() { "on" } else { "off" },
        if support::scattered_keys() {
            "scattered"
        } else {
            "in order"
        },
        support::value_kind()
    );
    if let Some(secs) = support::bench_ttl() {
        println!("SETs with a TTL of {secs} s");
    }
    println!(
        "{:<16} {:>7} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "cell", "callers", "handle op/s", "raw op/s", "handle/raw", "handle us/op", "raw us/op"
    );
    for &size in &VALUE_SIZES {
        let dir = tempfile::tempdir().expect("temp dir");
        let ks = support::open_handle(&dir.path().join("handle"), Clock::system());
        let db = rocksdb::DB::open(&support::raw_options(), dir.path().join("raw"))
            .expect("open raw RocksDB");
        let value = support::value(size);
        let (ttl, envelope) = match support::bench_ttl() {
            Some(secs) => (Ttl::Seconds(secs), support::envelope_expiring(&value, secs)),
            None => (Ttl::Never, support::envelope(&value)),
        };
        support::fill_handle(&rt, &ks, &value);
        support::fill_raw(&db, &envelope);
        for op in [Op::Get, Op::Set] {
            let cell = format!("{}_{}B", op.name(), size);
            if filter.as_deref().is_some_and(|f| !cell.contains(f)) {
                continue;
            }
            for &callers in &CONCURRENCY {
                let threads = support::raw_threads(callers);
                // Warm-up: one untimed pass on each side.
                support::run_handle(&rt, &ks, op, &value, callers, ops / 4, ttl);
                support::run_raw(&db, op, &envelope, threads, ops / 4);
                let (hm, rm, ratio) = support::alternate_rounds(
                    rounds,
                    || {
                        let d = support::run_handle(&rt, &ks, op, &value, callers, ops, ttl);
                        ops as f64 / d.as_secs_f64()
                    },
                    || {
                        ops as f64
                            / support::run_raw(&db, op, &envelope, threads, ops).as_secs_f64()
                    },
                );
                println!(
                    "{cell:<16} {callers:>7} {}",
                    support::figures(hm, rm, ratio)
                );
            }
        }
        rt.block_on(ks.shutdown());
    }
}
