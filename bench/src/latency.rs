//! A fixed-size histogram of latencies in microseconds.
//!
//! Values below 128 µs are counted exactly; above, each power of two is
//! split into 64 equal buckets, so a percentile is within 1.6% of the true
//! value while the histogram stays a few kilobytes whatever the run's
//! length. The maximum and the sum are kept exactly.

/// Buckets per power of two above the exact range.
const SUB: u64 = 64;
/// Values below this are their own bucket.
const EXACT: u64 = 2 * SUB;
/// Powers of two above the exact range (up to 2^64).
const OCTAVES: usize = 64 - 7;

/// Latencies in microseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: u128,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; EXACT as usize + OCTAVES * SUB as usize],
            count: 0,
            sum: 0,
            max: 0,
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    // `exp` >= 7: the position of the top bit; the next six bits pick the
    // sub-bucket.
    let exp = 63 - value.leading_zeros() as u64;
    let shift = exp - 6;
    let sub = (value >> shift) - SUB;
    (EXACT + (exp - 7) * SUB + sub) as usize
}

/// The smallest value in bucket `index`.
fn bucket_low(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT {
        return index;
    }
    let exp = (index - EXACT) / SUB + 7;
    let sub = (index - EXACT) % SUB;
    (SUB + sub) << (exp - 6)
}

impl Histogram {
    /// Counts one value.
    pub fn record(&mut self, micros: u64) {
        self.buckets[bucket_of(micros)] += 1;
        self.count += 1;
        self.sum += u128::from(micros);
        self.max = self.max.max(micros);
    }

    /// The largest value counted (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean, or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value below which a fraction `q` (0 to 1) of the counted values
    /// lie, as the low edge of its bucket; `None` when empty.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_low(index).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip() {
        for v in [0, 1, 127, 128, 129, 1000, 65_535, 1 << 40, u64::MAX] {
            let low = bucket_low(bucket_of(v));
            assert!(low <= v, "{v}: {low}");
            assert!((v - low) as f64 <= v as f64 / 64.0, "{v}: {low}");
        }
        assert_eq!(
            bucket_of(u64::MAX),
            EXACT as usize + OCTAVES * SUB as usize - 1
        );
    }

    #[test]
    fn percentiles_of_a_uniform_run() {
        let mut h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v);
        }
        assert_eq!(h.count, 10_000);
        assert_eq!(h.max(), 10_000);
        let p50 = h.percentile(0.5).unwrap();
        assert!((4900..=5000).contains(&p50), "{p50}");
        let p99 = h.percentile(0.99).unwrap();
        assert!((9750..=9900).contains(&p99), "{p99}");
        assert_eq!(h.percentile(1.0), Some(9984));
        assert_eq!(h.mean(), Some(5000.5));
    }

    #[test]
    fn empty_and_small() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(0.5), None);
        assert_eq!(h.mean(), None);
        h.record(42);
        assert_eq!(h.percentile(0.0), Some(42));
        assert_eq!(h.percentile(0.99), Some(42));
    }
}
