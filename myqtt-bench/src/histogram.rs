//! [`Histogram`]: latency counts in log-linear buckets, for percentiles
//! without keeping every sample.
//!
//! Design: values below 128 ns have a bucket each; above, every power of two
//! is split into 64 equal buckets, so a bucket is at most 1/64 (1.6 %) of
//! its value wide. 3776 buckets cover the whole `u64` range; recording is a
//! shift and an add. The maximum is kept exactly.

/// Sub-buckets per power of two above [`LINEAR`], as a power of two.
const SUB_BITS: u32 = 6;
/// Values below this have a bucket each.
const LINEAR: u64 = 1 << (SUB_BITS + 1);
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Buckets in all: the linear ones and 64 per power of two from 2^7 to 2^63.
const BUCKETS: usize = (LINEAR + (64 - SUB_BITS as u64 - 1) * SUB) as usize;

/// Counts of values (nanoseconds here) in log-linear buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The bucket `v` falls in.
fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = v.ilog2(); // >= SUB_BITS + 1
    let shift = exp - SUB_BITS;
    let top = v >> shift; // in [SUB, 2 * SUB)
    (LINEAR + u64::from(exp - SUB_BITS - 1) * SUB + (top - SUB)) as usize
}

/// The smallest value of bucket `i` and the bucket's width.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let k = i - LINEAR;
    let shift = k / SUB + 1;
    let top = k % SUB + SUB;
    (top << shift, 1 << shift)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    /// Counts one value.
    pub fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(bucket(v)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Values counted.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// The largest value counted (exact); 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.5 for the median), within 1.6 %: the
    /// middle of the bucket holding the `ceil(q * len)`-th smallest value,
    /// never above the maximum. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        // The rank of the value sought, 1-based: at least the first.
        #[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bounds(i);
                return Some((low + (width - 1) / 2).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_whose_bounds_hold_it() {
        let mut v = 1u64;
        let mut samples = vec![0, 1, 127, 128, 129, 255, 256, u64::MAX];
        while v < u64::MAX / 8 {
            samples.extend([v, v + 1, v * 3 / 2, v.saturating_mul(2) - 1]);
            v = v * 7 / 5 + 1;
        }
        for s in samples {
            let i = bucket(s);
            assert!(i < BUCKETS, "{s} -> bucket {i} of {BUCKETS}");
            let (low, width) = bounds(i);
            assert!(
                low <= s && s - low < width,
                "{s} not in bucket {i} [{low}, +{width})"
            );
            // The bucket is at most 1/64 of its value wide.
            assert!(width == 1 || width <= low / 64, "{s}: width {width}");
        }
    }

    #[test]
    fn quantiles_are_within_two_percent_of_the_exact_ones() {
        let mut h = Histogram::new();
        // 1..=100_000 ns: the exact p50 is 50_000 and the p99 99_000.
        for v in 1..=100_000u64 {
            h.record(v);
        }
        assert_eq!(h.len(), 100_000);
        assert_eq!(h.max(), 100_000);
        for (q, exact) in [(0.5, 50_000.0), (0.99, 99_000.0), (1.0, 100_000.0)] {
            #[allow(clippy::cast_precision_loss)]
            let got = h.quantile(q).unwrap() as f64;
            assert!((got - exact).abs() / exact < 0.02, "q{q}: {got} vs {exact}");
        }
    }

    #[test]
    fn an_empty_histogram_has_no_quantiles() {
        assert_eq!(Histogram::new().quantile(0.5), None);
        assert_eq!(Histogram::new().len(), 0);
    }

    #[test]
    fn merged_histograms_count_both_and_keep_the_larger_maximum() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for _ in 0..99 {
            a.record(10);
        }
        b.record(5_000_000);
        a.merge(&b);
        assert_eq!(a.len(), 100);
        assert_eq!(a.max(), 5_000_000);
        assert_eq!(a.quantile(0.5), Some(10));
        assert_eq!(a.quantile(1.0), Some(5_000_000));
    }
}
