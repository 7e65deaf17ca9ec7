//! [`LatencyHistogram`]: fixed log-spaced buckets, the layout the striped
//! hot-path counters share, so a drain adds bucket counts without
//! re-recording samples. (`hdrhistogram`, which the load tool uses, needs
//! `&mut` per record and cannot be striped into atomics.)

use std::time::Duration;

/// Buckets of a [`LatencyHistogram`] (four per power of two of nanoseconds).
pub(crate) const BUCKETS: usize = 256;

/// A latency histogram with four log-spaced buckets per power of two of
/// nanoseconds: quantiles are exact to within about 19%.
#[derive(Clone)]
pub(crate) struct LatencyHistogram {
    buckets: Box<[u64; BUCKETS]>,
    pub(super) count: u64,
    pub(super) sum_ns: u128,
    pub(super) max_ns: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: Box::new([0; BUCKETS]),
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl LatencyHistogram {
    pub(super) fn bucket(ns: u64) -> usize {
        if ns < 4 {
            return ns as usize;
        }
        let log = 63 - ns.leading_zeros() as usize; // >= 2
        let sub = ((ns >> (log - 2)) & 3) as usize;
        log * 4 + sub
    }

    /// The middle of bucket `b`, the value a bucket's counts stand for.
    pub(super) fn middle(b: usize) -> u64 {
        let lower = if b == 0 { 0 } else { Self::upper(b - 1) + 1 };
        lower + (Self::upper(b) - lower) / 2
    }

    /// Adds the counts of `buckets` (in this histogram's layout).
    pub(super) fn add_buckets(&mut self, buckets: &[u64; BUCKETS], sum_ns: u64, max_ns: u64) {
        for (mine, n) in self.buckets.iter_mut().zip(buckets) {
            *mine += n;
            self.count += n;
        }
        self.sum_ns += u128::from(sum_ns);
        self.max_ns = self.max_ns.max(max_ns);
    }

    /// The largest value that falls in bucket `b`.
    pub(super) fn upper(b: usize) -> u64 {
        if b < 4 {
            return b as u64;
        }
        let (log, sub) = (b / 4, (b % 4) as u64);
        let base = 1u64 << log;
        base + (sub + 1) * (base >> 2) - 1
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.buckets[Self::bucket(ns)] += 1;
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(Self::upper(b).min(self.max_ns));
            }
        }
        Duration::from_nanos(self.max_ns)
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        LatencySummary {
            mean: if self.count == 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos((self.sum_ns / u128::from(self.count)) as u64)
            },
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: Duration::from_nanos(self.max_ns),
        }
    }
}

/// Latency of one operation, end to end as the caller saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Arithmetic mean.
    pub mean: Duration,
    /// Median (bucket upper bound, within about 19%).
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest seen.
    pub max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_bound_values() {
        for ns in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            1000,
            1023,
            1024,
            123_456_789,
            u64::MAX / 2,
        ] {
            let b = LatencyHistogram::bucket(ns);
            assert!(LatencyHistogram::upper(b) >= ns, "{ns}");
            if b > 0 {
                assert!(LatencyHistogram::upper(b - 1) < ns, "{ns}");
            }
        }
        let mut h = LatencyHistogram::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert!(s.p50 >= Duration::from_micros(50) && s.p50 <= Duration::from_micros(60));
        assert!(s.p99 >= Duration::from_micros(99));
        assert_eq!(s.max, Duration::from_micros(100));
    }
}
