//! A monotonic clock for timeouts, read without the time-stamp counter.
//!
//! Timeouts here are counted in seconds (header and idle timeouts, pool idle timeout,
//! response deadlines swept every 100 ms, the file cache's 1 s): the kernel's coarse
//! monotonic clock (resolution one tick, 1-4 ms) is plenty, and reading it is a load from
//! the vDSO page instead of `rdtsc` plus arithmetic. A proxied request read the clock about
//! seven times; only the latency measured for metrics and the access log needs the precise
//! one. std's `Instant` cannot be built from this clock, hence a plain `Duration` since boot.

use std::time::Duration;

/// Time since boot, coarse (same base as CLOCK_MONOTONIC).
pub fn now() -> Duration {
    read(libc::CLOCK_MONOTONIC_COARSE)
        .or_else(|| read(libc::CLOCK_MONOTONIC))
        .unwrap_or_default()
}

fn read(clock: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    (rc == 0).then(|| Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_moves_forward_with_the_precise_clock() {
        let (a, precise) = (now(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(30));
        let (b, waited) = (now(), precise.elapsed());
        assert!(b >= a);
        let measured = b - a;
        // Within a few coarse ticks of the precise clock.
        assert!(
            measured + Duration::from_millis(12) >= waited,
            "{measured:?} {waited:?}"
        );
        assert!(
            measured <= waited + Duration::from_millis(12),
            "{measured:?} {waited:?}"
        );
    }
}
