//! A fine latency histogram, for judging a quantile (a canary's p99 against `max_p99`):
//! log-linear buckets, sixteen per power of two of microseconds (as HdrHistogram does with
//! four significant bits), so a quantile read from it is within 6.25 % of the truth at any
//! latency. The Prometheus histogram's few buckets are for dashboards; a bound between
//! two of them would be judged against the upper one.

/// Bits below the leading one kept per value: 2^4 = 16 buckets per power of two.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Values up to 2^40 µs (12 days); longer ones land in the last bucket.
const MAX_EXP: u32 = 39;
pub const LEN: usize = ((MAX_EXP - SUB_BITS + 1) as u64 * SUB + SUB) as usize;

/// The bucket of a latency of `micros` microseconds. Below 32 µs every value has its own.
pub fn index(micros: u64) -> usize {
    let v = micros.clamp(0, (1 << (MAX_EXP + 1)) - 1);
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The microseconds bucket `i` covers: `[low, high)`.
pub fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i + 1);
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = i % SUB;
    let shift = exp - SUB_BITS;
    ((SUB + sub) << shift, (SUB + sub + 1) << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_within_its_buckets_bounds() {
        for v in (0..5000).chain([65_535, 65_536, 1_000_000, 54_210, 99_999, 10_000_000_000]) {
            let (low, high) = bounds(index(v));
            assert!(low <= v && v < high, "{v} in [{low}, {high})");
            assert!(
                high - low <= (low / 8).max(1),
                "bucket of {v} too wide: [{low}, {high})"
            );
        }
        assert_eq!(index(u64::MAX), LEN - 1);
        assert_eq!(index(0), 0);
    }

    #[test]
    fn buckets_follow_each_other_without_gaps() {
        for i in 1..LEN {
            assert_eq!(bounds(i - 1).1, bounds(i).0, "gap before bucket {i}");
        }
    }
}
