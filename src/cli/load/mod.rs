//! `objdatakey load`: a load generator that drives a keystore through the
//! public handle and reports throughput, latency percentiles, hit rate,
//! errors and the process's memory.
//!
//! # Why it is built this way
//! - **The handle, not the backend.** The point is to measure what an
//!   application gets: the in-flight limiter, the queue hop, JSON encoding and
//!   the backend together.
//! - **Deterministic keys.** Which key operation `i` (counted over the whole
//!   run) uses, and whether it reads, are pure functions of `i` and
//!   `--seed` (see [`keys`]). By default operation `i` uses key
//!   `load:{i mod K:08}`: a write-only run of at least `K` ops writes every
//!   key, so a read-only run over the same `--keys` afterwards hits every
//!   time; `--key-dist` skews it (uniform, zipfian, a hot set).
//! - **No shared state on the hot path.** Task `t` of `C` runs operations
//!   `t, t + C, t + 2C, …` (so `--ops N` runs exactly `N`), records each
//!   latency in its own HDR histogram, and the histograms are merged once at
//!   the end. The only shared write is a relaxed counter bumped every
//!   [`PROGRESS_BATCH`] operations for the progress line.
//! - **Closed or open loop.** Without `--rate` each caller sends its next
//!   operation when its last one is answered: a stalled backend then
//!   receives only the callers' few operations, and the percentiles hide
//!   the stall (coordinated omission). With `--rate` every operation is due
//!   at its own time and its latency counts from then, so each operation
//!   the stall delays shows it (wrk2's correction).
//! - **Errors are data.** A failed operation is counted by
//!   [`ErrorKind`](objdatakey::ErrorKind) (its latency is recorded too: a
//!   timeout is what the caller waited), and the run goes on. Only a config or
//!   open error stops it, before any load starts.
//! - **Memory is reported.** Peak RSS (`VmHWM`) plus RSS samples once a fifth
//!   of the run is done (warm) and at the end, so "RSS stays flat after
//!   warm-up" can be checked from one run.

mod keys;
mod memory;
mod plan;
mod summary;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use objdatakey::{Config, Keystore, Ttl};

pub use keys::KeyDist;
use keys::Keys;
use memory::{monitor, peak_rss_bytes, rss_bytes};
use plan::{Counts, Plan, Schedule, Until, task};
use summary::Summary;

/// Operations a task runs before it adds them to the shared progress counter.
const PROGRESS_BATCH: u64 = 64;
/// Operations when neither `--ops` nor `--duration` is given.
const DEFAULT_OPS: u64 = 100_000;
/// How often the monitor thread redraws the progress line and samples RSS.
const MONITOR_TICK: Duration = Duration::from_millis(200);

/// Options of `objdatakey load`.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Total operations to run [default: 100000 when --duration is not given].
    #[arg(long, value_name = "N", conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..))]
    ops: Option<u64>,
    /// Run for this many seconds instead of a fixed number of operations.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// An open loop at this many operations per second in total: each
    /// operation is due at its own time (spread over the callers) and its
    /// latency is measured from then, so a stall shows in the percentiles
    /// (wrk2's correction of coordinated omission). --concurrency bounds
    /// the operations in flight; when all are busy the schedule keeps its
    /// times and the late operations are counted (`late_ops`). Without it,
    /// a closed loop: each caller sends when its last answer came.
    #[arg(long, value_name = "OPS_PER_SEC", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Concurrent callers (tokio tasks sharing one handle).
    #[arg(long, value_name = "C", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    concurrency: u64,
    /// Key space: keys load:00000000 .. load:{K-1}.
    #[arg(long, value_name = "K", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Which key each operation uses: `sequential` (operation i uses key
    /// i mod K, so a write run of K ops writes every key), `uniform`,
    /// `zipf[:S]` (YCSB's scrambled zipfian, S below 1, default 0.99) or
    /// `hotset:FRACTION:PROBABILITY` (e.g. hotset:0.1:0.9: 90% of the
    /// operations on 10% of the keys).
    #[arg(long, value_name = "DIST", default_value = "sequential")]
    key_dist: KeyDist,
    /// Seed of the random key distributions: the same seed repeats a run.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Size of each stored value's JSON text in bytes (a JSON string, so at least 2).
    #[arg(long, value_name = "B", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(2..=64 * 1024 * 1024))]
    value_bytes: u64,
    /// Fraction of operations that are reads (get_cache); the rest are writes (set_cache).
    #[arg(long, value_name = "R", default_value_t = 0.5, value_parser = parse_ratio)]
    read_ratio: f64,
    /// TTL of written values: seconds, `never` or `default` (system.cachettl).
    /// `never` by default, so a write run followed by a read run still hits.
    #[arg(long, value_name = "SECONDS|never", default_value = "never")]
    ttl: Ttl,
    /// What each operation is: `mixed` (get_cache or set_cache, by
    /// --read-ratio) or `get-or-set` (get_or_set over the key space, whose
    /// loader sleeps --loader-ms and is counted: `loader_calls`).
    #[arg(long, value_enum, default_value_t = Mode::Mixed)]
    mode: Mode,
    /// get-or-set mode: milliseconds each loader call sleeps (a slow source).
    #[arg(long, value_name = "MS", default_value_t = 1)]
    loader_ms: u64,
    /// Print the summary as one JSON object on stdout (no other stdout output).
    #[arg(long)]
    json: bool,
}

/// What the operations of a run are.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// get_cache and set_cache, mixed by --read-ratio.
    Mixed,
    /// get_or_set with a counted, sleeping loader: with C callers over K keys
    /// starting empty and a TTL longer than the run, the loader runs K times.
    GetOrSet,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number; expected a fraction from 0 to 1"))?;
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!(
            "{r} is out of range: the read ratio is a fraction from 0 (writes only) to 1 (reads only)"
        ))
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of operations per second"))?;
    if r.is_finite() && r > 0.0 && r <= 1e8 {
        Ok(r)
    } else {
        Err(format!(
            "{s} operations per second: the rate must be above 0 (and at most 100000000)"
        ))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 && secs <= 366.0 * 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "{s} seconds: the duration must be positive (and under a year)"
        ))
    }
}

/// Runs `objdatakey load` with an already loaded `config`.
///
/// Opening the keystore is the only fatal step; failed operations are
/// counted in the summary. Answers the process's exit status.
pub fn run(
    config: Config,
    args: LoadArgs,
) -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
    if !config.enabled {
        return Err("the keystore is disabled (keystore.enabled: false): a load run would measure nothing; \
                    enable it or pass another --config"
            .into());
    }
    let backend = config.backend.to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("objdatakey-load")
        .build()?;
    // Built outside the runtime: the engine runs its own actix System thread,
    // and the handle's async API works from the plain tokio runtime below.
    // Redis and Dragonfly do their socket I/O on that runtime too, as a
    // service would set it up (RocksDB ignores this).
    let keystore = Keystore::builder()
        .config(config)
        .io_runtime(rt.handle().clone())
        .build()?;
    let rss_start = rss_bytes();
    let value = {
        let mut v = String::with_capacity(args.value_bytes as usize);
        v.extend(std::iter::repeat_n('x', args.value_bytes as usize - 2));
        v
    };
    let progress = !args.json && std::io::stderr().is_terminal();

    let started = Instant::now();
    let until = match (args.ops, args.duration) {
        (_, Some(d)) => Until::Deadline(started + d),
        (Some(n), None) => Until::Ops(n),
        (None, None) => Until::Ops(DEFAULT_OPS),
    };
    let plan = Arc::new(Plan {
        until,
        schedule: args.rate.map(|rate| Schedule {
            start: started,
            period: 1.0 / rate,
        }),
        concurrency: args.concurrency,
        keys: Keys::new(args.key_dist, args.keys, args.seed),
        read_ratio: args.read_ratio,
        ttl: args.ttl,
        value,
        mode: args.mode,
        loader_sleep: Duration::from_millis(args.loader_ms),
        loader_calls: AtomicU64::new(0),
    });
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (done, stop) = (done.clone(), stop.clone());
        std::thread::Builder::new()
            .name("objdatakey-load-monitor".into())
            .spawn(move || monitor(done, stop, until, started, progress))?
    };

    let (results, elapsed) = rt.block_on(async {
        let tasks: Vec<_> = (0..args.concurrency)
            .map(|t| tokio::spawn(task(keystore.clone(), plan.clone(), t, done.clone())))
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await);
        }
        let elapsed = started.elapsed();
        keystore.shutdown().await;
        (results, elapsed)
    });
    stop.store(true, Ordering::Release);
    let mem = monitor.join().unwrap_or_default();

    let tasks = results
        .into_iter()
        .map(|r| r.map_err(|e| format!("a load task failed: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let s = Summary {
        backend,
        concurrency: args.concurrency,
        keys: args.keys,
        key_dist: args.key_dist,
        seed: args.seed,
        value_bytes: args.value_bytes,
        read_ratio: args.read_ratio,
        ttl: args.ttl,
        rate: args.rate,
        elapsed,
        counts: Counts::merge(tasks)?,
        loader_calls: (args.mode == Mode::GetOrSet)
            .then(|| plan.loader_calls.load(Ordering::Relaxed)),
        rss_start,
        mem,
        rss_end: rss_bytes(),
        peak_rss: peak_rss_bytes(),
    };
    if args.json {
        println!("{}", s.to_json());
    } else {
        s.print_text();
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_validated_with_a_clear_message() {
        assert_eq!(parse_ratio("0.25"), Ok(0.25));
        assert_eq!(parse_ratio("1"), Ok(1.0));
        let e = parse_ratio("2").unwrap_err();
        assert!(e.contains("from 0") && e.contains("to 1"), "{e}");
        assert!(parse_ratio("half").unwrap_err().contains("not a number"));
        assert!(parse_ratio("NaN").is_err());
    }

    #[test]
    fn duration_must_be_positive() {
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-3").is_err());
    }
}
