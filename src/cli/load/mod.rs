//! `objdatakey load`: a load generator that drives a keystore through the
//! public handle and reports throughput, latency percentiles, hit rate,
//! errors and the process's memory.
//!
//! # Why it is built this way
//! - **The handle, not the backend.** The point is to measure what an
//!   application gets: the in-flight limiter, the queue hop, JSON encoding and
//!   the backend together.
//! - **Deterministic keys.** Operation `i` (counted over the whole run) uses key
//!   `load:{i mod K:08}`, and whether it reads is a pure function of `i`. A
//!   write-only run of at least `K` ops therefore writes every key, so a
//!   read-only run over the same `--keys` afterwards hits every time.
//! - **No shared state on the hot path.** Task `t` of `C` runs operations
//!   `t, t + C, t + 2C, …` (so `--ops N` runs exactly `N`), records each
//!   latency in its own HDR histogram, and the histograms are merged once at
//!   the end. The only shared write is a relaxed counter bumped every
//!   [`PROGRESS_BATCH`] operations for the progress line.
//! - **Errors are data.** A failed operation is counted by
//!   [`ErrorKind`](objdatakey::ErrorKind) (its latency is recorded too: a
//!   timeout is what the caller waited), and the run goes on. Only a config or
//!   open error stops it, before any load starts.
//! - **Memory is reported.** Peak RSS (`VmHWM`) plus RSS samples once a fifth
//!   of the run is done (warm) and at the end, so "RSS stays flat after
//!   warm-up" can be checked from one run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use objdatakey::{Config, Keystore, Ttl};
use serde::de::IgnoredAny;

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
    /// Concurrent callers (tokio tasks sharing one handle).
    #[arg(long, value_name = "C", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    concurrency: u64,
    /// Key space: operations cycle over keys load:00000000 .. load:{K-1}.
    #[arg(long, value_name = "K", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
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
    /// Print the summary as one JSON object on stdout (no other stdout output).
    #[arg(long)]
    json: bool,
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

/// When the run stops.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// After exactly this many operations in total.
    Ops(u64),
    /// At this instant (set when the tasks start).
    Deadline(Instant),
}

/// What every task needs, shared read-only.
struct Plan {
    until: Until,
    concurrency: u64,
    keys: u64,
    read_ratio: f64,
    ttl: Ttl,
    /// The stored value: a JSON string whose text is `--value-bytes` long.
    value: String,
}

impl Plan {
    /// Whether operation `i` is a read: a pure function of `i`, so runs repeat.
    fn is_read(&self, i: u64) -> bool {
        if self.read_ratio >= 1.0 {
            return true;
        }
        if self.read_ratio <= 0.0 {
            return false;
        }
        // The top 53 bits of a well-mixed hash, as a uniform fraction in [0, 1).
        let u = (splitmix64(i) >> 11) as f64 / (1u64 << 53) as f64;
        u < self.read_ratio
    }
}

/// SplitMix64's finaliser: a cheap bijective mix of the op index.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What one task saw.
struct TaskResult {
    latency_ns: Histogram<u64>,
    gets: u64,
    sets: u64,
    hits: u64,
    misses: u64,
    /// Count and first message per error kind.
    errors: BTreeMap<&'static str, (u64, String)>,
}

async fn task(keystore: Keystore, plan: Arc<Plan>, first: u64, done: Arc<AtomicU64>) -> TaskResult {
    let mut r = TaskResult {
        // Auto-resizing, 3 significant figures: memory follows the largest
        // latency seen (about 120 KiB per task for a 10 ms maximum), not a
        // fixed range.
        latency_ns: Histogram::new(3).expect("3 significant figures is valid"),
        gets: 0,
        sets: 0,
        hits: 0,
        misses: 0,
        errors: BTreeMap::new(),
    };
    let mut key = String::with_capacity(24);
    let mut i = first;
    let mut unreported = 0u64;
    loop {
        let started = Instant::now();
        match plan.until {
            Until::Ops(n) if i >= n => break,
            Until::Deadline(t) if started >= t => break,
            _ => {}
        }
        key.clear();
        let _ = write!(key, "load:{:08}", i % plan.keys);
        let outcome = if plan.is_read(i) {
            r.gets += 1;
            match keystore.get_cache::<IgnoredAny>(&key).await {
                Ok(Some(_)) => {
                    r.hits += 1;
                    Ok(())
                }
                Ok(None) => {
                    r.misses += 1;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            r.sets += 1;
            keystore
                .set_cache(&key, plan.value.as_str(), plan.ttl)
                .await
        };
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // `record`, not `saturating_record`: only `record` grows an
        // auto-resizing histogram (saturating clamps to its current top).
        let _ = r.latency_ns.record(ns.max(1));
        if let Err(e) = outcome {
            let slot = r
                .errors
                .entry(e.kind().as_str())
                .or_insert_with(|| (0, e.to_string()));
            slot.0 += 1;
        }
        i += plan.concurrency;
        unreported += 1;
        if unreported == PROGRESS_BATCH {
            done.fetch_add(unreported, Ordering::Relaxed);
            unreported = 0;
        }
    }
    done.fetch_add(unreported, Ordering::Relaxed);
    r
}

/// RSS figures from `/proc/self/status` (Linux); `None` elsewhere.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS").map(|k| k * 1024)
}

fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM").map(|k| k * 1024)
}

/// What the monitor thread observed.
#[derive(Default)]
struct MemorySamples {
    /// RSS when a fifth of the run was done (the end of warm-up).
    warm: Option<u64>,
    /// Highest RSS sampled after warm-up.
    max_after_warm: Option<u64>,
}

/// Redraws the progress line (only when stderr is a terminal) and samples RSS,
/// until `stop` is set.
fn monitor(
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    until: Until,
    started: Instant,
    progress: bool,
) -> MemorySamples {
    let mut mem = MemorySamples::default();
    let mut err = std::io::stderr();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(MONITOR_TICK);
        let n = done.load(Ordering::Relaxed);
        let elapsed = started.elapsed();
        let fraction = match until {
            Until::Ops(total) => n as f64 / total.max(1) as f64,
            Until::Deadline(t) => {
                let whole = t.saturating_duration_since(started).as_secs_f64();
                (elapsed.as_secs_f64() / whole.max(1e-9)).min(1.0)
            }
        };
        if fraction >= 0.2 {
            let rss = rss_bytes();
            if mem.warm.is_none() {
                mem.warm = rss;
            }
            mem.max_after_warm = mem.max_after_warm.max(rss);
        }
        if progress {
            let rate = n as f64 / elapsed.as_secs_f64().max(1e-9);
            let width = 30usize;
            let filled = ((fraction * width as f64) as usize).min(width);
            let _ = write!(
                err,
                "\r[{}{}] {:>5.1}%  {n} ops  {rate:.0} ops/s  {:.1} s ",
                "#".repeat(filled),
                "-".repeat(width - filled),
                fraction * 100.0,
                elapsed.as_secs_f64()
            );
            let _ = err.flush();
        }
    }
    if progress {
        // Clear the line so the summary starts clean.
        let _ = write!(err, "\r{:80}\r", "");
        let _ = err.flush();
    }
    mem
}

/// The merged result of a run.
struct Summary {
    backend: String,
    concurrency: u64,
    keys: u64,
    value_bytes: u64,
    read_ratio: f64,
    ttl: Ttl,
    elapsed: Duration,
    latency_ns: Histogram<u64>,
    gets: u64,
    sets: u64,
    hits: u64,
    misses: u64,
    errors: BTreeMap<&'static str, (u64, String)>,
    rss_start: Option<u64>,
    mem: MemorySamples,
    rss_end: Option<u64>,
    peak_rss: Option<u64>,
}

impl Summary {
    fn ops(&self) -> u64 {
        self.latency_ns.len()
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn hit_rate(&self) -> Option<f64> {
        (self.gets > 0).then(|| self.hits as f64 / self.gets as f64)
    }

    fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    /// Latency quantile in microseconds (0 when no op ran).
    fn q_us(&self, q: f64) -> f64 {
        if self.ops() == 0 {
            return 0.0;
        }
        self.latency_ns.value_at_quantile(q) as f64 / 1000.0
    }

    fn max_us(&self) -> f64 {
        if self.ops() == 0 {
            return 0.0;
        }
        self.latency_ns.max() as f64 / 1000.0
    }

    fn ttl_text(&self) -> String {
        match self.ttl {
            Ttl::Never => "never".into(),
            Ttl::Default => "default".into(),
            Ttl::Seconds(s) => s.to_string(),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let errors_by_kind: serde_json::Map<String, serde_json::Value> = self
            .errors
            .iter()
            .map(|(k, (n, _))| ((*k).to_owned(), (*n).into()))
            .collect();
        serde_json::json!({
            "ops": self.ops(),
            "ops_per_sec": self.ops_per_sec(),
            "p50_us": self.q_us(0.50),
            "p95_us": self.q_us(0.95),
            "p99_us": self.q_us(0.99),
            "max_us": self.max_us(),
            "mean_us": if self.ops() == 0 { 0.0 } else { self.latency_ns.mean() / 1000.0 },
            "hit_rate": self.hit_rate(),
            "gets": self.gets,
            "sets": self.sets,
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.error_count(),
            "errors_by_kind": errors_by_kind,
            "backend": self.backend,
            "concurrency": self.concurrency,
            "keys": self.keys,
            "value_bytes": self.value_bytes,
            "read_ratio": self.read_ratio,
            "ttl": self.ttl_text(),
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "rss_start_bytes": self.rss_start,
            "rss_warm_bytes": self.mem.warm,
            "rss_max_after_warm_bytes": self.mem.max_after_warm,
            "rss_end_bytes": self.rss_end,
            "peak_rss_bytes": self.peak_rss,
        })
    }

    fn print_text(&self) {
        println!(
            "load: {} ops on {} in {:.2} s (concurrency {}, {} keys, {}-byte values, read ratio {}, ttl {})",
            self.ops(),
            self.backend,
            self.elapsed.as_secs_f64(),
            self.concurrency,
            self.keys,
            self.value_bytes,
            self.read_ratio,
            self.ttl_text()
        );
        println!("throughput: {:.0} ops/s", self.ops_per_sec());
        println!(
            "latency: p50 {:.1} us, p95 {:.1} us, p99 {:.1} us, max {:.1} us",
            self.q_us(0.50),
            self.q_us(0.95),
            self.q_us(0.99),
            self.max_us()
        );
        match self.hit_rate() {
            Some(h) => println!(
                "reads: {} (hits {}, misses {}, hit rate {:.2}%); writes: {}",
                self.gets,
                self.hits,
                self.misses,
                h * 100.0,
                self.sets
            ),
            None => println!("reads: 0 (hit rate n/a); writes: {}", self.sets),
        }
        if self.errors.is_empty() {
            println!("errors: 0");
        } else {
            let kinds: Vec<String> = self
                .errors
                .iter()
                .map(|(k, (n, _))| format!("{k}: {n}"))
                .collect();
            println!("errors: {} ({})", self.error_count(), kinds.join(", "));
            for (k, (_, first)) in &self.errors {
                println!("  first {k} error: {first}");
            }
        }
        let mib = |b: Option<u64>| match b {
            Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
            None => "n/a".into(),
        };
        println!(
            "memory: peak RSS {} (at start {}, after warm-up {}, highest after warm-up {}, at end {})",
            mib(self.peak_rss),
            mib(self.rss_start),
            mib(self.mem.warm),
            mib(self.mem.max_after_warm),
            mib(self.rss_end)
        );
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
        concurrency: args.concurrency,
        keys: args.keys,
        read_ratio: args.read_ratio,
        ttl: args.ttl,
        value,
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

    let mut s = Summary {
        backend,
        concurrency: args.concurrency,
        keys: args.keys,
        value_bytes: args.value_bytes,
        read_ratio: args.read_ratio,
        ttl: args.ttl,
        elapsed,
        latency_ns: Histogram::new(3).expect("3 significant figures is valid"),
        gets: 0,
        sets: 0,
        hits: 0,
        misses: 0,
        errors: BTreeMap::new(),
        rss_start,
        mem,
        rss_end: rss_bytes(),
        peak_rss: peak_rss_bytes(),
    };
    for r in results {
        let r = r.map_err(|e| format!("a load task failed: {e}"))?;
        s.latency_ns
            .add(&r.latency_ns)
            .map_err(|e| format!("merging latency histograms: {e:?}"))?;
        s.gets += r.gets;
        s.sets += r.sets;
        s.hits += r.hits;
        s.misses += r.misses;
        for (k, (n, first)) in r.errors {
            s.errors.entry(k).or_insert((0, first)).0 += n;
        }
    }
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

    #[test]
    fn read_choice_is_deterministic_and_close_to_the_ratio() {
        let plan = Plan {
            until: Until::Ops(0),
            concurrency: 1,
            keys: 1,
            read_ratio: 0.3,
            ttl: Ttl::Never,
            value: String::new(),
        };
        let reads = (0..100_000).filter(|&i| plan.is_read(i)).count();
        assert!((28_000..32_000).contains(&reads), "{reads}");
        assert_eq!(
            (0..100).map(|i| plan.is_read(i)).collect::<Vec<_>>(),
            (0..100).map(|i| plan.is_read(i)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn proc_status_parses_on_linux() {
        if cfg!(target_os = "linux") {
            // Current first: the peak read afterwards includes it even if
            // another test thread grew the process in between.
            let now = rss_bytes().expect("VmRSS on Linux");
            let peak = peak_rss_bytes().expect("VmHWM on Linux");
            assert!(peak >= now && now > 0, "{peak} {now}");
        }
    }
}
