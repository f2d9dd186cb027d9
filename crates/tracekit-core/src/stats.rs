//! Exact, mergeable statistics.
//!
//! [`LatencyStats`] keeps count, sum, min, max and a 128-bit sum of squares, so partial
//! results (one per CPU, one per thread) merge without losing precision and the standard
//! deviation is computed exactly rather than estimated. [`Samples`] keeps every value for
//! order statistics (median, p99) when the number of values is small (benchmark batches).
//! [`Log2Histogram`] buckets values by power of two and prints like bpftrace's `hist()`.

use serde::Serialize;

/// Exact latency statistics over a set of durations in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencyStats {
    /// Number of values.
    pub count: u64,
    /// Sum of the values.
    pub total: u64,
    /// Smallest value (0 when `count == 0`).
    pub min: u64,
    /// Largest value.
    pub max: u64,
    /// Sum of the squares of the values; 128 bits so that it cannot overflow in practice
    /// (2^64 values of up to 2^32 ns each).
    pub sum_sq: u128,
}

impl LatencyStats {
    /// Statistics of no values.
    pub const fn new() -> Self {
        LatencyStats {
            count: 0,
            total: 0,
            min: 0,
            max: 0,
            sum_sq: 0,
        }
    }

    /// Adds one value.
    pub fn record(&mut self, value: u64) {
        self.merge(&LatencyStats {
            count: 1,
            total: value,
            min: value,
            max: value,
            sum_sq: u128::from(value) * u128::from(value),
        });
    }

    /// Builds statistics from the values.
    pub fn from_values(values: impl IntoIterator<Item = u64>) -> Self {
        let mut s = Self::new();
        values.into_iter().for_each(|v| s.record(v));
        s
    }

    /// Merges another partial result into this one (the order of merges does not matter).
    pub fn merge(&mut self, other: &LatencyStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.count += other.count;
        self.total = self.total.saturating_add(other.total);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum_sq = self.sum_sq.saturating_add(other.sum_sq);
    }

    /// Arithmetic mean, 0 for no values.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total as f64 / self.count as f64
        }
    }

    /// Population standard deviation: the calls observed are the whole population, not a
    /// sample of it. Computed from exact integers as sqrt(n·Σx² − (Σx)²) / n.
    pub fn stddev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = u128::from(self.count);
        let sum = u128::from(self.total);
        match n.checked_mul(self.sum_sq) {
            Some(n_sum_sq) => {
                let numer = n_sum_sq.saturating_sub(sum * sum);
                (numer as f64).sqrt() / self.count as f64
            }
            // Only reachable with more than ~2^60 calls; fall back to floating point.
            None => {
                let mean = self.mean();
                (self.sum_sq as f64 / self.count as f64 - mean * mean)
                    .max(0.0)
                    .sqrt()
            }
        }
    }

    /// Standard deviation relative to the mean, in percent (perf trace's `stddev(%)`).
    pub fn rel_stddev_pct(&self) -> f64 {
        let mean = self.mean();
        if mean == 0.0 {
            0.0
        } else {
            100.0 * self.stddev() / mean
        }
    }
}

/// Every value of a small set, for order statistics.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
}

/// Summary of a [`Samples`] set, as reported in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SampleSummary {
    /// Number of values.
    pub count: usize,
    /// Smallest value.
    pub min: f64,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest value.
    pub max: f64,
    /// Sample standard deviation (n − 1), 0 for fewer than two values.
    pub stddev: f64,
}

impl Samples {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value.
    pub fn push(&mut self, value: f64) {
        self.values.push(value);
    }

    /// The values in the order they were added.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Order statistics of the values, or `None` when there are none.
    pub fn summary(&self) -> Option<SampleSummary> {
        if self.values.is_empty() {
            return None;
        }
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
        let stddev = if n < 2 {
            0.0
        } else {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        Some(SampleSummary {
            count: n,
            min: v[0],
            median,
            mean,
            p99: v[rank - 1],
            max: v[n - 1],
            stddev,
        })
    }
}

impl FromIterator<f64> for Samples {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Self {
        Samples {
            values: iter.into_iter().collect(),
        }
    }
}

/// Power-of-two histogram: bucket 0 holds the value 0, bucket `k` (k ≥ 1) holds
/// values in `[2^(k-1), 2^k)`, like bpftrace's `hist()`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Log2Histogram {
    /// Count per bucket; trailing empty buckets may be absent.
    pub buckets: Vec<u64>,
}

impl Log2Histogram {
    /// The bucket index of a value.
    pub fn bucket_of(value: u64) -> usize {
        (u64::BITS - value.leading_zeros()) as usize
    }

    /// Adds `count` values to bucket `index` (as read from a kernel map).
    pub fn add_bucket(&mut self, index: usize, count: u64) {
        if self.buckets.len() <= index {
            self.buckets.resize(index + 1, 0);
        }
        self.buckets[index] += count;
    }

    /// Adds bucket counts index by index (another histogram's, or a kernel map's); trailing
    /// empty buckets add nothing.
    pub fn add_buckets(&mut self, counts: &[u64]) {
        let used = counts
            .iter()
            .rposition(|&c| c > 0)
            .map_or(0, |last| last + 1);
        if self.buckets.len() < used {
            self.buckets.resize(used, 0);
        }
        // Saturating: bucket counts read back from a saved report may be anything.
        for (bucket, count) in self.buckets.iter_mut().zip(&counts[..used]) {
            *bucket = bucket.saturating_add(*count);
        }
    }

    /// Adds one value.
    pub fn record(&mut self, value: u64) {
        self.add_bucket(Self::bucket_of(value), 1);
    }

    /// Total number of values.
    pub fn total(&self) -> u64 {
        self.buckets.iter().fold(0, |t, &c| t.saturating_add(c))
    }

    /// The value below which a fraction `q` (0..=1) of the values lie, interpolated linearly
    /// within its bucket (the values inside a bucket are not known): an estimate, exact to
    /// within the bucket's bounds. `None` when empty.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.buckets.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if below.saturating_add(count) as f64 >= rank {
                let (lo, hi) = Self::bounds(i);
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(lo + (hi - lo) * within);
            }
            below = below.saturating_add(count);
        }
        let last = self.buckets.iter().rposition(|&c| c > 0)?;
        Some(Self::bounds(last).1)
    }

    /// The values bucket `i` holds: `[lo, hi)` (bucket 0: exactly 0).
    fn bounds(i: usize) -> (f64, f64) {
        match i {
            0 => (0.0, 0.0),
            i => (2f64.powi(i as i32 - 1), 2f64.powi(i as i32)),
        }
    }

    /// Renders the histogram the way bpftrace prints `hist()`, one line per bucket from the
    /// first non-empty one to the last, with a bar of `@` scaled to the largest bucket.
    pub fn render(&self, unit: &str) -> String {
        const WIDTH: u64 = 52;
        let Some(first) = self.buckets.iter().position(|&c| c > 0) else {
            return String::new();
        };
        let last = self.buckets.iter().rposition(|&c| c > 0).unwrap_or(first);
        let peak = self.buckets.iter().copied().max().unwrap_or(1).max(1);
        let mut out = String::new();
        for (i, &count) in self.buckets.iter().enumerate().take(last + 1).skip(first) {
            let (lo, hi) = if i == 0 {
                (0, 1)
            } else {
                (1u64 << (i - 1), 1u64 << i.min(63))
            };
            let range = format!("[{}, {})", si(lo), si(hi));
            let bar = "@".repeat((count * WIDTH / peak) as usize);
            out.push_str(&format!("{range:<16} {count:>8} {unit}|{bar:<52}|\n"));
        }
        out
    }
}

fn si(v: u64) -> String {
    match v {
        v if v >= 1 << 30 && v % (1 << 30) == 0 => format!("{}G", v >> 30),
        v if v >= 1 << 20 && v % (1 << 20) == 0 => format!("{}M", v >> 20),
        v if v >= 1 << 10 && v % (1 << 10) == 0 => format!("{}K", v >> 10),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stddev_is_exact_for_known_values() {
        // 1000 and 3000: mean 2000, population stddev exactly 1000.
        let s = LatencyStats::from_values([1000, 3000, 1000, 3000]);
        assert_eq!(s.count, 4);
        assert_eq!(s.mean(), 2000.0);
        assert_eq!(s.stddev(), 1000.0);
        assert_eq!(s.rel_stddev_pct(), 50.0);
    }

    #[test]
    fn merge_equals_recording_everything() {
        let all = LatencyStats::from_values([5, 9, 1, 400, 7]);
        let mut a = LatencyStats::from_values([5, 9]);
        a.merge(&LatencyStats::from_values([1, 400, 7]));
        a.merge(&LatencyStats::new());
        assert_eq!(a, all);
        assert_eq!((a.min, a.max, a.total), (1, 400, 422));
    }

    #[test]
    fn large_values_do_not_overflow() {
        let big = u64::from(u32::MAX) * 16;
        let s = LatencyStats::from_values([big, big]);
        assert_eq!(s.stddev(), 0.0);
        assert_eq!(s.sum_sq, 2 * u128::from(big) * u128::from(big));
    }

    #[test]
    fn sample_summary_order_statistics() {
        let s: Samples = (1..=100).map(f64::from).collect();
        let sum = s.summary().unwrap();
        assert_eq!(
            (sum.min, sum.median, sum.p99, sum.max),
            (1.0, 50.5, 99.0, 100.0)
        );
        assert!(Samples::new().summary().is_none());
    }

    #[test]
    fn log2_buckets_match_bpftrace() {
        assert_eq!(Log2Histogram::bucket_of(0), 0);
        assert_eq!(Log2Histogram::bucket_of(1), 1);
        assert_eq!(Log2Histogram::bucket_of(3), 2);
        assert_eq!(Log2Histogram::bucket_of(1024), 11);
        let mut p = Log2Histogram::default();
        p.add_bucket(11, 100); // 100 values in [1024, 2048)
        assert_eq!(p.percentile(0.5), Some(1536.0));
        assert_eq!(p.percentile(1.0), Some(2048.0));
        assert_eq!(Log2Histogram::default().percentile(0.5), None);
        let mut sum = Log2Histogram::default();
        sum.add_buckets(&[0, 2, 0, 1, 0, 0]);
        sum.add_buckets(&[1, 1]);
        assert_eq!(sum.buckets, [1, 3, 0, 1]);
        let mut h = Log2Histogram::default();
        [1, 2, 3, 1500].into_iter().for_each(|v| h.record(v));
        let text = h.render("");
        assert!(text.starts_with("[1, 2)"), "{text}");
        assert!(text.contains("[1K, 2K)"), "{text}");
        assert_eq!(h.total(), 4);
    }
}
