//! What the benches share: the workload (keys, values, the stored envelope),
//! the two sides (the handle from N tokio tasks, raw `rocksdb::DB` from up to
//! N OS threads) and quick mode.
//!
//! Both sides do the same RocksDB work: the raw side stores exactly the bytes
//! the handle stores (the JSON envelope), under the same keys, so the
//! handle/raw ratio measures the engine (limiter, queue hop, JSON, expiry
//! check, metrics), not a difference in data.
#![allow(dead_code)] // each bench binary uses part of this module

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use objdatakey::{BackendKind, Clock, Config, Keystore, Ttl};
use serde::de::IgnoredAny;

/// Keys in the warm data set: small enough to stay in the memtable and block
/// cache (warm), large enough that callers rarely share a key.
pub const WARM_KEYS: u64 = 10_000;

/// The value sizes measured: small and 4 KiB (the size of the value's JSON text).
pub const VALUE_SIZES: [usize; 2] = [64, 4096];

/// Concurrent callers measured.
pub const CONCURRENCY: [usize; 3] = [1, 16, 64];

/// Quick mode: `--quick` on the command line (criterion's own flag, which
/// it also honours) or `OBJDATAKEY_BENCH_QUICK=1`. Benches then use fewer
/// samples and keys so a whole binary runs in well under a minute.
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var_os("OBJDATAKEY_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Key `i` of the workload: `load:{i mod K}` (the same scheme as
/// `objdatakey load`), or with `OBJDATAKEY_BENCH_KEYS=scattered`, the warm
/// keys in a scattered order (`i * 7919 mod K`, a permutation: 7919 is prime
/// and does not divide K).
///
/// Why the second order: RocksDB inserts a key right after the previous one
/// into its memtable much faster than anywhere else (the skiplist remembers
/// where it last inserted). The raw side's threads write keys in nearly
/// ascending order; 16 or 64 callers sharing 2 tokio threads interleave
/// their sequences, so the handle's writes land all over the memtable. The
/// scattered order puts both sides on the same footing.
pub fn key(i: u64) -> String {
    let i = i % WARM_KEYS;
    let n = if scattered_keys() {
        i * 7919 % WARM_KEYS
    } else {
        i
    };
    format!("load:{n:08}")
}

/// Whether keys are visited in the scattered order (see [`key`]).
pub fn scattered_keys() -> bool {
    static SCATTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SCATTERED
        .get_or_init(|| std::env::var("OBJDATAKEY_BENCH_KEYS").is_ok_and(|v| v == "scattered"))
}

/// The value the handle stores, its JSON text `bytes` long: a JSON string
/// (`"xx…x"`) by default; with `OBJDATAKEY_BENCH_VALUE=object`, an object
/// of short string and number fields about that long (a read then decodes
/// it field by field, where a string is handed over whole).
pub fn value(bytes: usize) -> serde_json::Value {
    if object_values() {
        let mut object = serde_json::Map::new();
        let mut len = 2;
        for i in 0u64.. {
            let (name, field) = if i % 2 == 0 {
                (
                    format!("field_{i}"),
                    serde_json::json!("abcdefghijklmnopqrstuvwxyz"),
                )
            } else {
                (format!("count_{i}"), serde_json::json!(i * 1_000_003))
            };
            len += name.len() + field.to_string().len() + 4;
            if len > bytes {
                break;
            }
            object.insert(name, field);
        }
        return serde_json::Value::Object(object);
    }
    serde_json::Value::String("x".repeat(bytes.saturating_sub(2)))
}

/// Whether the benches store objects (`OBJDATAKEY_BENCH_VALUE=object`).
fn object_values() -> bool {
    std::env::var("OBJDATAKEY_BENCH_VALUE").is_ok_and(|v| v == "object")
}

/// What [`value`] the benches store: "string" or "object".
pub fn value_kind() -> &'static str {
    if object_values() { "object" } else { "string" }
}

/// The bytes the handle stores in RocksDB for `value` with no expiry
/// (`{"data": "<JSON text>", "expires_at": -1}`, the shared format).
pub fn envelope(value: &serde_json::Value) -> Vec<u8> {
    envelope_with(value, serde_json::json!(-1))
}

/// [`envelope`] for a value that expires `secs` from now.
pub fn envelope_expiring(value: &serde_json::Value, secs: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    envelope_with(value, serde_json::json!(now + secs))
}

fn envelope_with(value: &serde_json::Value, expires_at: serde_json::Value) -> Vec<u8> {
    let json = serde_json::to_string(value).expect("a value encodes");
    serde_json::to_vec(&serde_json::json!({"data": json, "expires_at": expires_at}))
        .expect("an object encodes")
}

/// The TTL the compare bench's SETs carry (`OBJDATAKEY_BENCH_TTL`, seconds),
/// `None` (never expire) by default.
pub fn bench_ttl() -> Option<u64> {
    std::env::var("OBJDATAKEY_BENCH_TTL").ok()?.parse().ok()
}

/// A Redis config for the bench's redis-server on `port`.
pub fn redis_config(port: u16) -> Config {
    let mut config = Config {
        backend: BackendKind::Redis,
        ..Config::default()
    };
    config.redis.ip = "127.0.0.1".into();
    config.redis.port = port;
    config
}

/// The raw side's redis-rs `MultiplexedConnection` to the bench's server.
pub fn raw_redis(rt: &tokio::runtime::Runtime, port: u16) -> redis::aio::MultiplexedConnection {
    rt.block_on(async {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("raw multiplexed connection")
    })
}

/// RocksDB options matching the engine's (`RocksStore::open`).
pub fn raw_options() -> rocksdb::Options {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Snappy);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_format_version(objdatakey::config::DEFAULT_FORMAT_VERSION);
    opts.set_block_based_table_factory(&table);
    opts.increase_parallelism(cores() as i32);
    opts
}

/// CPUs available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A RocksDB config at `dir`, janitor effectively off (the benches sweep explicitly).
pub fn rocks_config(dir: &Path) -> Config {
    let mut c = Config {
        backend: BackendKind::RocksDb,
        ..Config::default()
    };
    c.rocksdb.path = dir.to_path_buf();
    c.rocksdb.ttl_cleanup_interval = Duration::from_secs(24 * 3600);
    c
}

/// Whether the handle side records metrics: `OBJDATAKEY_BENCH_METRICS=0`
/// turns them off (`KeystoreBuilder::metrics(false)`), for the on/off ratio.
pub fn metrics_on() -> bool {
    std::env::var("OBJDATAKEY_BENCH_METRICS").map_or(true, |v| v != "0")
}

/// A handle on a fresh RocksDB at `dir` with `clock`.
pub fn open_handle(dir: &Path, clock: Clock) -> Keystore {
    Keystore::builder()
        .config(rocks_config(dir))
        .clock(clock)
        .metrics(metrics_on())
        .build()
        .expect("open the RocksDB keystore")
}

/// The runtime the handle side runs on: multi-thread, one worker per core,
/// as a service would have.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Which operation a measurement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `get_cache` / `DB::get` of a present key.
    Get,
    /// `set_cache` / a raw write of the same bytes.
    Set,
}

impl Op {
    /// Lower-case name for bench ids and tables.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
        }
    }
}

/// Writes every warm key through the handle (so the data is in the handle's format).
pub fn fill_handle(rt: &tokio::runtime::Runtime, ks: &Keystore, value: &serde_json::Value) {
    rt.block_on(async {
        let tasks: Vec<_> = (0..16u64)
            .map(|t| {
                let ks = ks.clone();
                let value = value.clone();
                tokio::spawn(async move {
                    for i in (t..WARM_KEYS).step_by(16) {
                        ks.set_cache(&key(i), &value, Ttl::Never)
                            .await
                            .expect("fill");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("fill task");
        }
    });
}

/// Writes every warm key into the raw database.
pub fn fill_raw(db: &rocksdb::DB, envelope: &[u8]) {
    for i in 0..WARM_KEYS {
        db.put(key(i).as_bytes(), envelope).expect("raw fill");
    }
}

/// Runs `ops` operations through the handle from `callers` tokio tasks;
/// answers the wall time. Task `t` runs ops `t, t + callers, …`.
pub fn run_handle(
    rt: &tokio::runtime::Runtime,
    ks: &Keystore,
    op: Op,
    value: &serde_json::Value,
    callers: usize,
    ops: u64,
    ttl: Ttl,
) -> Duration {
    rt.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..callers as u64)
            .map(|t| {
                let ks = ks.clone();
                let value = value.clone();
                let step = callers;
                tokio::spawn(async move {
                    for i in (t..ops).step_by(step) {
                        let k = key(i);
                        match op {
                            Op::Get => {
                                let v = ks.get_cache::<IgnoredAny>(&k).await.expect("get");
                                assert!(v.is_some(), "warm key {k} missing");
                            }
                            Op::Set => ks.set_cache(&k, &value, ttl).await.expect("set"),
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

/// Runs `ops` raw operations from `threads` OS threads; answers the wall time.
/// Thread `t` runs ops `t, t + threads, …`.
pub fn run_raw(db: &rocksdb::DB, op: Op, envelope: &[u8], threads: usize, ops: u64) -> Duration {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            s.spawn(move || {
                for i in (t..ops).step_by(threads) {
                    let k = key(i);
                    match op {
                        Op::Get => {
                            let v = db.get(k.as_bytes()).expect("raw get");
                            assert!(v.is_some(), "warm key {k} missing");
                        }
                        Op::Set => db.put(k.as_bytes(), envelope).expect("raw put"),
                    }
                }
            });
        }
    });
    started.elapsed()
}

/// Raw RocksDB calls block, so more threads than cores only adds switching:
/// the raw side runs `min(callers, cores)` threads, the strongest raw baseline.
pub fn raw_threads(callers: usize) -> usize {
    callers.min(cores()).max(1)
}

/// The figures of one table row: handle and raw ops/s, their ratio, and the
/// time per operation of each side.
pub fn figures(handle: f64, raw: f64, ratio: f64) -> String {
    format!(
        "{handle:>12.0} {raw:>12.0} {ratio:>11.3}x {:>10.2}us {:>10.2}us",
        1e6 / handle,
        1e6 / raw
    )
}

/// Runs `rounds` rounds of one handle and one raw measurement (ops/s each),
/// alternating which side goes first; answers the median ops/s of each side
/// and the median of the per-round handle/raw ratios.
pub fn alternate_rounds(
    rounds: usize,
    mut handle: impl FnMut() -> f64,
    mut raw: impl FnMut() -> f64,
) -> (f64, f64, f64) {
    let (mut h, mut r, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (hv, rv) = if round % 2 == 0 {
            let hv = handle();
            (hv, raw())
        } else {
            let rv = raw();
            (handle(), rv)
        };
        h.push(hv);
        r.push(rv);
        ratio.push(hv / rv);
    }
    (median(&mut h), median(&mut r), median(&mut ratio))
}

/// The median of `xs` (sorted in place).
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// A redis-server process of a bench, stopped when dropped.
pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `redis-server` on a free loopback port; `None` (with a message)
/// when it is not installed.
pub fn start_redis() -> Option<(Server, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            println!(
                "SKIPPED: cannot start redis-server ({e}); scripts/install-deps.sh installs it"
            );
            return None;
        }
    };
    let server = Server(child);
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((server, port))
}

/// Runs `ops` raw redis-rs operations from `callers` tokio tasks sharing
/// `conn` (cloned per task, as redis-rs intends); answers the wall time. A
/// GET decodes the JSON as the handle does; a SET writes `json` with
/// `EX ttl_secs`.
pub fn run_raw_redis(
    rt: &tokio::runtime::Runtime,
    conn: &redis::aio::MultiplexedConnection,
    op: Op,
    json: &str,
    callers: usize,
    ops: u64,
    ttl_secs: u64,
) -> Duration {
    rt.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..callers as u64)
            .map(|t| {
                let mut conn = conn.clone();
                let json = json.to_owned();
                tokio::spawn(async move {
                    for i in (t..ops).step_by(callers) {
                        let k = key(i);
                        match op {
                            Op::Get => {
                                let v: Option<String> = redis::cmd("GET")
                                    .arg(&k)
                                    .query_async(&mut conn)
                                    .await
                                    .expect("raw get");
                                // The same decode work the handle does.
                                let v: IgnoredAny =
                                    serde_json::from_str(&v.expect("warm key")).unwrap();
                                std::hint::black_box(v);
                            }
                            Op::Set => {
                                let () = redis::cmd("SET")
                                    .arg(&k)
                                    .arg(json.as_str())
                                    .arg("EX")
                                    .arg(ttl_secs)
                                    .query_async(&mut conn)
                                    .await
                                    .expect("raw set");
                            }
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
