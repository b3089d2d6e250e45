//! A lock-free log-linear histogram and its point-in-time copy.
//!
//! Values are scaled by [`SCALE`] (so a microsecond latency is kept to a
//! thousandth of a microsecond) and rounded to an integer. Integers below
//! 256 get one bucket each; above that, every power of two is split into 128
//! equal buckets. A bucket is therefore never wider than 1/128 of its lower
//! bound, and reporting its midpoint keeps the relative error under 0.4 %
//! for every value of at least 0.256 (scaled 256). Smaller values are exact
//! to 0.001. Scaled values saturate at `u64::MAX`, about 1.8e16 unscaled.
//!
//! Recording costs one relaxed `fetch_add` on the bucket, plus a compare on
//! the running minimum and maximum that only writes when it moves.

use std::sync::atomic::{AtomicU64, Ordering};

/// Each recorded value is multiplied by this before bucketing.
pub const SCALE: f64 = 1000.0;

/// log2 of the number of buckets per power of two.
const SUB_BITS: u32 = 7;

/// Number of buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;

/// Scaled values below this get an exact bucket each.
const LINEAR_LIMIT: u64 = 2 * SUB;

/// Enough buckets to index `u64::MAX`: shifts 1..=56 after the linear part.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as u64 * SUB) as usize;

/// Maps a scaled value to its bucket.
fn bucket_index(v: u64) -> usize {
    if v < LINEAR_LIMIT {
        return v as usize;
    }
    let exponent = 63 - v.leading_zeros();
    let shift = exponent - SUB_BITS;
    (u64::from(shift) * SUB + (v >> shift)) as usize
}

/// The smallest scaled value of a bucket and the bucket's width.
fn bucket_bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < LINEAR_LIMIT {
        return (index, 1);
    }
    let shift = index / SUB - 1;
    let mantissa = index - shift * SUB;
    (mantissa << shift, 1 << shift)
}

/// The value reported for a bucket: the middle of its integer range.
fn bucket_value(index: usize) -> f64 {
    let (lower, width) = bucket_bounds(index);
    (lower + (width - 1) / 2) as f64
}

/// Scales a raw value; `None` for NaN, which is not recorded.
fn scale(value: f64) -> Option<u64> {
    if value.is_nan() {
        return None;
    }
    // Negative values clamp to zero; `as` saturates above `u64::MAX`.
    Some((value.max(0.0) * SCALE).round() as u64)
}

/// A concurrent histogram, updated through shared references.
pub struct AtomicHistogram {
    buckets: Box<[AtomicU64]>,
    min: AtomicU64,
    max: AtomicU64,
}

impl std::fmt::Debug for AtomicHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicHistogram")
            .field("count", &self.snapshot().count())
            .finish_non_exhaustive()
    }
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl AtomicHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        let buckets = (0..BUCKETS).map(|_| AtomicU64::new(0)).collect();
        Self {
            buckets,
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }

    /// Records `value` `count` times. NaN is ignored, negatives count as 0.
    pub fn record_n(&self, value: f64, count: u64) {
        let Some(v) = scale(value) else { return };
        if count == 0 {
            return;
        }
        self.buckets[bucket_index(v)].fetch_add(count, Ordering::Relaxed);

        // Only write the extremes when they move, to keep the cache line
        // shared between recording threads in the common case.
        if v < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(v, Ordering::Relaxed);
        }
        if v > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// Copies the non-empty buckets. Concurrent updates may or may not be
    /// included; each bucket is read once.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(u32, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let n = b.load(Ordering::Relaxed);
                (n > 0).then_some((i as u32, n))
            })
            .collect();
        let count = buckets.iter().map(|&(_, n)| n).sum();
        HistogramSnapshot {
            buckets,
            count,
            min: self.min.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

impl metrics::HistogramFn for AtomicHistogram {
    fn record(&self, value: f64) {
        self.record_n(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        self.record_n(value, count as u64);
    }
}

/// A point-in-time copy of a histogram: its non-empty buckets.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// `(bucket index, count)`, ascending by index, counts non-zero.
    buckets: Vec<(u32, u64)>,
    count: u64,
    /// Scaled minimum; `u64::MAX` when nothing was recorded.
    min: u64,
    /// Scaled maximum; 0 when nothing was recorded.
    max: u64,
}

/// The usual percentiles of a histogram, in the recorded unit.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct HistogramSummary {
    /// Number of recorded values.
    pub count: u64,
    /// Smallest recorded value.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest recorded value.
    pub max: f64,
    /// Mean, computed from bucket midpoints (same error bound as the percentiles).
    pub mean: f64,
}

impl Default for HistogramSnapshot {
    /// An empty histogram.
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            count: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest recorded value, if any.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then(|| self.min as f64 / SCALE)
    }

    /// Largest recorded value, if any.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then(|| self.max as f64 / SCALE)
    }

    /// The value at quantile `q` (a fraction: 0.5 is the median, 0.99 the
    /// 99th percentile), by nearest rank. `None` when the histogram is empty
    /// or `q` is not within `0.0..=1.0`.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        if q == 0.0 {
            return self.min();
        }
        if q == 1.0 {
            return self.max();
        }

        // Nearest rank: the smallest value with at least q * count values
        // at or below it.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for &(index, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let v = bucket_value(index as usize).clamp(self.min as f64, self.max as f64);
                return Some(v / SCALE);
            }
        }
        self.max()
    }

    /// Mean from bucket midpoints, if any value was recorded.
    pub fn mean(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let total: f64 = self
            .buckets
            .iter()
            .map(|&(i, n)| bucket_value(i as usize) * n as f64)
            .sum();
        Some(total / self.count as f64 / SCALE)
    }

    /// count, min, p50, p90, p99, p99.9, max and mean; `None` when empty.
    pub fn summary(&self) -> Option<HistogramSummary> {
        Some(HistogramSummary {
            count: self.count,
            min: self.min()?,
            p50: self.percentile(0.5)?,
            p90: self.percentile(0.9)?,
            p99: self.percentile(0.99)?,
            p999: self.percentile(0.999)?,
            max: self.max()?,
            mean: self.mean()?,
        })
    }

    /// Adds another snapshot's values into this one (used to merge series
    /// that share a name but differ in labels).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        let mut merged = Vec::with_capacity(self.buckets.len().max(other.buckets.len()));
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&(ia, na)), Some(&&(ib, nb))) if ia == ib => {
                    a.next();
                    b.next();
                    (ia, na + nb)
                }
                (Some(&&x), Some(&&y)) if x.0 < y.0 => {
                    a.next();
                    x
                }
                (Some(_), Some(&&y)) => {
                    b.next();
                    y
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&&y)) => {
                    b.next();
                    y
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.buckets = merged;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The values recorded after `earlier` was taken, assuming `earlier` is
    /// an older snapshot of the same histogram. The exact extremes of that
    /// window are unknown, so they are taken from the outermost buckets.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let mut old = earlier.buckets.iter().peekable();
        let mut buckets = Vec::new();
        for &(index, n) in &self.buckets {
            while old.peek().is_some_and(|&&(i, _)| i < index) {
                old.next();
            }
            let before = match old.peek() {
                Some(&&(i, m)) if i == index => m,
                _ => 0,
            };
            if n > before {
                buckets.push((index, n - before));
            }
        }
        let count = buckets.iter().map(|&(_, n)| n).sum();
        let (min, max) = match (buckets.first(), buckets.last()) {
            (Some(&(lo, _)), Some(&(hi, _))) => {
                let (lower, _) = bucket_bounds(lo as usize);
                let (start, width) = bucket_bounds(hi as usize);
                let upper = start + (width - 1);
                (lower.max(self.min), upper.min(self.max))
            }
            _ => (u64::MAX, 0),
        };
        HistogramSnapshot {
            buckets,
            count,
            min,
            max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values (xorshift), spread over many
    /// orders of magnitude.
    fn values(n: usize) -> Vec<f64> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let magnitude = (x % 13) as i32 - 2; // 1e-2 .. 1e10
                let mantissa = 1.0 + (x >> 20) as f64 / (1u64 << 44) as f64 * 9.0;
                mantissa * 10f64.powi(magnitude)
            })
            .collect()
    }

    fn exact_percentile(sorted: &[f64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn bucket_index_and_bounds_agree() {
        let probes = [
            0,
            1,
            255,
            256,
            257,
            511,
            512,
            1 << 20,
            (1 << 40) + 12345,
            u64::MAX,
        ];
        for v in probes {
            let i = bucket_index(v);
            assert!(i < BUCKETS, "index {i} for {v}");
            let (lower, width) = bucket_bounds(i);
            assert!(
                lower <= v && v - lower < width,
                "{v} not in [{lower}, +{width})"
            );
            if v >= LINEAR_LIMIT {
                assert!(width * SUB <= lower, "bucket too wide at {v}");
            }
        }
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn indices_are_monotonic_and_contiguous() {
        let mut v: u64 = 1;
        while v < u64::MAX / 3 {
            for w in [v - 1, v, v + 1] {
                let (a, b) = (bucket_index(w), bucket_index(w + 1));
                assert!(b == a || b == a + 1, "{w}: {a} then {b}");
            }
            v = v * 3 / 2 + 1;
        }
    }

    #[test]
    fn percentiles_within_one_percent_of_exact() {
        let data = values(20_000);
        let h = AtomicHistogram::new();
        for &v in &data {
            h.record_n(v, 1);
        }
        let mut sorted = data.clone();
        sorted.sort_by(f64::total_cmp);
        let snap = h.snapshot();
        assert_eq!(snap.count(), data.len() as u64);

        for q in [0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999] {
            let exact = exact_percentile(&sorted, q);
            let got = snap.percentile(q).unwrap();
            // Values below 0.256 are kept to an absolute 0.0005.
            let tolerance = (exact * 0.01).max(0.0005);
            assert!(
                (got - exact).abs() <= tolerance,
                "q={q}: got {got}, exact {exact}"
            );
        }
        assert_eq!(
            snap.percentile(0.0),
            Some((sorted[0] * SCALE).round() / SCALE)
        );
        let top = *sorted.last().unwrap();
        assert_eq!(snap.percentile(1.0), Some((top * SCALE).round() / SCALE));
    }

    #[test]
    fn integer_latencies_are_exact_in_the_linear_range() {
        let h = AtomicHistogram::new();
        for v in 0..200 {
            h.record_n(f64::from(v) / 1000.0, 1);
        }
        let snap = h.snapshot();
        assert_eq!(snap.percentile(0.5), Some(0.099));
    }

    #[test]
    fn out_of_range_quantiles_and_empty_histograms() {
        let h = AtomicHistogram::new();
        assert_eq!(h.snapshot().percentile(0.5), None);
        assert_eq!(h.snapshot().summary(), None);
        h.record_n(10.0, 3);
        let snap = h.snapshot();
        assert_eq!(snap.percentile(1.5), None);
        assert_eq!(snap.percentile(-0.1), None);
        assert_eq!(snap.percentile(f64::NAN), None);
        assert_eq!(snap.percentile(0.5), Some(10.0));
    }

    #[test]
    fn nan_is_ignored_and_negatives_clamp_to_zero() {
        let h = AtomicHistogram::new();
        h.record_n(f64::NAN, 1);
        h.record_n(-5.0, 1);
        h.record_n(f64::INFINITY, 1);
        let snap = h.snapshot();
        assert_eq!(snap.count(), 2);
        assert_eq!(snap.min(), Some(0.0));
        assert_eq!(snap.max(), Some(u64::MAX as f64 / SCALE));
    }

    #[test]
    fn merge_and_since_are_inverse() {
        let a = AtomicHistogram::new();
        let b = AtomicHistogram::new();
        for (i, v) in values(3000).into_iter().enumerate() {
            if i % 3 == 0 {
                a.record_n(v, 1);
            } else {
                b.record_n(v, 1);
            }
        }
        let (sa, sb) = (a.snapshot(), b.snapshot());
        let mut merged = HistogramSnapshot::default();
        merged.merge(&sa);
        assert_eq!(merged, sa);
        merged.merge(&sb);
        assert_eq!(merged.count(), 3000);
        let back = merged.since(&sa);
        assert_eq!(back.buckets, sb.buckets);
        assert_eq!(back.count(), sb.count());
        let p = back.percentile(0.5).unwrap();
        let exact = sb.percentile(0.5).unwrap();
        assert!((p - exact).abs() <= exact * 0.01);
    }
}
