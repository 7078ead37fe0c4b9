//! A latency histogram the subscribers record into: log-linear buckets (64 per power of two,
//! so a percentile is within 1.6% of the truth), one counter each.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Buckets per power of two (as a shift).
const SUB_BITS: u32 = 6;
/// Buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any u64.
const BUCKETS: usize = ((64 - SUB_BITS as usize) * SUB as usize) + SUB as usize;

/// Counts of values (nanoseconds), bucketed.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one value.
    pub fn record(&self, value: u64) {
        bump(&self.buckets[index(value)], 1);
        bump(&self.count, 1);
        if value > self.max.load(Relaxed) {
            self.max.store(value, Relaxed);
        }
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The largest value recorded (0 if none).
    pub fn max(&self) -> u64 {
        self.max.load(Relaxed)
    }

    /// The value at quantile `q` (0.5 for the median, 0.99 for p99): the middle of its
    /// bucket, never above the maximum; 0 if nothing was recorded.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        // The rank of the value wanted, 1-based.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Relaxed);
            if seen >= rank {
                return middle(i).min(self.max());
            }
        }
        self.max()
    }
}

/// Adds `n` to `counter` with a plain load and store, not `fetch_add`: every task of a run
/// shares one thread (a current-thread runtime), so this is exact, and it spares the hot path
/// (several counters per message, millions of messages a second) a locked instruction each.
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed) + n, Relaxed);
}

/// The bucket of `value`: values below 2·SUB have one each; above, SUB per power of two.
fn index(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    let shift = 63 - value.leading_zeros() - SUB_BITS;
    (u64::from(shift) * SUB + (value >> shift)) as usize
}

/// The middle of bucket `i`'s range.
fn middle(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let mantissa = i % SUB + SUB;
    (mantissa << shift) + ((1 << shift) >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut last = 0;
        for value in (0..100_000).chain([u64::MAX / 3, u64::MAX]) {
            let i = index(value);
            assert!(i >= last && i < BUCKETS, "{value}");
            last = i;
            let mid = middle(i) as f64;
            assert!(
                (mid - value as f64).abs() <= value as f64 / SUB as f64 + 1.0,
                "{value}"
            );
        }
        assert_eq!(index(2 * SUB), 2 * SUB as usize);
    }

    #[test]
    fn quantiles() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.99), 0);
        for v in 1..=1000 {
            h.record(v * 1000);
        }
        let near = |got: u64, want: u64| (got as f64 / want as f64 - 1.0).abs() < 0.02;
        assert!(near(h.quantile(0.5), 500_000), "{}", h.quantile(0.5));
        assert!(near(h.quantile(0.99), 990_000), "{}", h.quantile(0.99));
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.max(), 1_000_000);
        assert_eq!(h.count(), 1000);
    }
}
