//! Criterion: the handle's `get_cache`/`set_cache` against raw `rocksdb::DB`
//! `get`/`put`, same keys, same stored bytes, same number of callers (1, 16,
//! 64), 64 B and 4 KiB values, warm data.
//!
//! The handle side runs N tokio tasks on a multi-thread runtime; the raw side
//! runs `min(N, cores)` OS threads (RocksDB calls block, so that is the raw
//! client at its best). Throughput is reported per operation, so criterion's
//! "thrpt" lines compare directly; `benches/compare.rs` prints the ratios.
//!
//! `cargo bench --bench rocksdb` (add `-- --quick` for a short run).

mod support;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use objdatakey::{Clock, Ttl};
use support::{CONCURRENCY, Op, VALUE_SIZES};

fn bench(c: &mut Criterion) {
    let rt = support::runtime();
    for &size in &VALUE_SIZES {
        let dir = tempfile::tempdir().expect("temp dir");
        let ks = support::open_handle(&dir.path().join("handle"), Clock::system());
        let db = rocksdb::DB::open(&support::raw_options(), dir.path().join("raw"))
            .expect("open raw RocksDB");
        let value = support::value(size);
        let envelope = support::envelope(&value);
        support::fill_handle(&rt, &ks, &value);
        support::fill_raw(&db, &envelope);
        for op in [Op::Get, Op::Set] {
            let mut g = c.benchmark_group(format!("rocksdb_{}_{}B", op.name(), size));
            g.throughput(Throughput::Elements(1));
            for &callers in &CONCURRENCY {
                g.bench_with_input(BenchmarkId::new("handle", callers), &callers, |b, &n| {
                    b.iter_custom(|iters| {
                        support::run_handle(&rt, &ks, op, &value, n, iters, Ttl::Never)
                    });
                });
                g.bench_with_input(BenchmarkId::new("raw", callers), &callers, |b, &n| {
                    b.iter_custom(|iters| {
                        support::run_raw(&db, op, &envelope, support::raw_threads(n), iters)
                    });
                });
            }
            g.finish();
        }
        rt.block_on(ks.shutdown());
    }
}

fn main() {
    let quick = support::quick();
    let mut c = Criterion::default()
        .sample_size(if quick { 10 } else { 20 })
        .warm_up_time(Duration::from_millis(if quick { 200 } else { 1000 }))
        .measurement_time(Duration::from_millis(if quick { 500 } else { 3000 }))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}
