//! The process's memory (RSS from `/proc/self/status`) and the monitor
//! thread that samples it and draws the progress line.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::MONITOR_TICK;
use super::plan::Until;

/// RSS figures from `/proc/self/status` (Linux); `None` elsewhere.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub(super) fn rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS").map(|k| k * 1024)
}

pub(super) fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM").map(|k| k * 1024)
}

/// What the monitor thread observed.
#[derive(Default)]
pub(super) struct MemorySamples {
    /// RSS when a fifth of the run was done (the end of warm-up).
    pub(super) warm: Option<u64>,
    /// Highest RSS sampled after warm-up.
    pub(super) max_after_warm: Option<u64>,
}

/// Redraws the progress line (only when stderr is a terminal) and samples RSS,
/// until `stop` is set.
pub(super) fn monitor(
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

#[cfg(test)]
mod tests {
    use super::*;

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
