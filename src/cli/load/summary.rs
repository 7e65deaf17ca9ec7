//! [`Summary`]: the merged result of a run, as text or JSON.

use std::time::Duration;

use objdatakey::Ttl;

use super::keys::KeyDist;
use super::memory::MemorySamples;
use super::plan::Counts;

/// The merged result of a run.
pub(super) struct Summary {
    pub(super) backend: String,
    pub(super) concurrency: u64,
    pub(super) keys: u64,
    pub(super) key_dist: KeyDist,
    pub(super) seed: u64,
    pub(super) value_bytes: u64,
    pub(super) read_ratio: f64,
    pub(super) ttl: Ttl,
    /// `--rate`: the open loop's intended rate.
    pub(super) rate: Option<f64>,
    pub(super) elapsed: Duration,
    /// Every task's counts, merged.
    pub(super) counts: Counts,
    pub(super) rss_start: Option<u64>,
    pub(super) mem: MemorySamples,
    pub(super) rss_end: Option<u64>,
    pub(super) peak_rss: Option<u64>,
    /// get-or-set mode: how many times the loader ran.
    pub(super) loader_calls: Option<u64>,
}

impl Summary {
    fn ops(&self) -> u64 {
        self.counts.latency_ns.len()
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Hits over reads; `None` in get-or-set mode, where a read that
    /// waited for another caller's load is neither (see `loader_calls`).
    fn hit_rate(&self) -> Option<f64> {
        if self.loader_calls.is_some() {
            return None;
        }
        (self.counts.gets > 0).then(|| self.counts.hits as f64 / self.counts.gets as f64)
    }

    fn error_count(&self) -> u64 {
        self.counts.errors.values().map(|(n, _)| n).sum()
    }

    /// Latency quantile in microseconds (0 when no op ran).
    fn q_us(&self, q: f64) -> f64 {
        if self.ops() == 0 {
            return 0.0;
        }
        self.counts.latency_ns.value_at_quantile(q) as f64 / 1000.0
    }

    fn max_us(&self) -> f64 {
        if self.ops() == 0 {
            return 0.0;
        }
        self.counts.latency_ns.max() as f64 / 1000.0
    }

    fn ttl_text(&self) -> String {
        match self.ttl {
            Ttl::Never => "never".into(),
            Ttl::Default => "default".into(),
            Ttl::Seconds(s) => s.to_string(),
        }
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        let errors_by_kind: serde_json::Map<String, serde_json::Value> = self
            .counts
            .errors
            .iter()
            .map(|(k, (n, _))| ((*k).to_owned(), (*n).into()))
            .collect();
        serde_json::json!({
            "ops": self.ops(),
            "ops_per_sec": self.ops_per_sec(),
            "intended_rate": self.rate,
            "achieved_rate": self.ops_per_sec(),
            "late_ops": self.counts.late,
            "p50_us": self.q_us(0.50),
            "p95_us": self.q_us(0.95),
            "p99_us": self.q_us(0.99),
            "p999_us": self.q_us(0.999),
            "max_us": self.max_us(),
            "mean_us": if self.ops() == 0 { 0.0 } else { self.counts.latency_ns.mean() / 1000.0 },
            "hit_rate": self.hit_rate(),
            "gets": self.counts.gets,
            "sets": self.counts.sets,
            "hits": self.counts.hits,
            "misses": self.counts.misses,
            "errors": self.error_count(),
            "errors_by_kind": errors_by_kind,
            "backend": self.backend,
            "concurrency": self.concurrency,
            "keys": self.keys,
            "key_dist": self.key_dist.to_string(),
            "seed": self.seed,
            "value_bytes": self.value_bytes,
            "read_ratio": self.read_ratio,
            "ttl": self.ttl_text(),
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "rss_start_bytes": self.rss_start,
            "rss_warm_bytes": self.mem.warm,
            "rss_max_after_warm_bytes": self.mem.max_after_warm,
            "rss_end_bytes": self.rss_end,
            "peak_rss_bytes": self.peak_rss,
            "loader_calls": self.loader_calls,
        })
    }

    pub(super) fn print_text(&self) {
        println!(
            "load: {} ops on {} in {:.2} s (concurrency {}, {} keys {}, {}-byte values, read ratio {}, ttl {})",
            self.ops(),
            self.backend,
            self.elapsed.as_secs_f64(),
            self.concurrency,
            self.keys,
            self.key_dist,
            self.value_bytes,
            self.read_ratio,
            self.ttl_text()
        );
        match self.rate {
            Some(rate) => println!(
                "throughput: {:.0} ops/s (open loop at {rate} ops/s; {} ops started late, latency from when each was due)",
                self.ops_per_sec(),
                self.counts.late
            ),
            None => println!("throughput: {:.0} ops/s", self.ops_per_sec()),
        }
        println!(
            "latency: p50 {:.1} us, p95 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            self.q_us(0.50),
            self.q_us(0.95),
            self.q_us(0.99),
            self.q_us(0.999),
            self.max_us()
        );
        match self.hit_rate() {
            Some(h) => println!(
                "reads: {} (hits {}, misses {}, hit rate {:.2}%); writes: {}",
                self.counts.gets,
                self.counts.hits,
                self.counts.misses,
                h * 100.0,
                self.counts.sets
            ),
            None => println!("reads: 0 (hit rate n/a); writes: {}", self.counts.sets),
        }
        if let Some(n) = self.loader_calls {
            println!("loader calls: {n} (get-or-set mode)");
        }
        if self.counts.errors.is_empty() {
            println!("errors: 0");
        } else {
            let kinds: Vec<String> = self
                .counts
                .errors
                .iter()
                .map(|(k, (n, _))| format!("{k}: {n}"))
                .collect();
            println!("errors: {} ({})", self.error_count(), kinds.join(", "));
            for (k, (_, first)) in &self.counts.errors {
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
