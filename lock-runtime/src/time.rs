//! Time arithmetic every layer shares, and nothing else: deadlines that never overflow,
//! durations in whole milliseconds, jittered retry intervals. A leaf: it imports nothing of
//! the crate.

use std::time::Duration;

/// How long one store call may take in try mode, or from a guard, when no wait deadline
/// bounds it.
pub(crate) const CALL_LIMIT: Duration = Duration::from_secs(5);

/// `t + d`, or a time so far ahead (30 years) that it never comes when `d` is too large to
/// add: a `Duration::MAX` timeout or ttl must not panic.
pub(crate) fn later(t: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    t.checked_add(d.min(FAR)).unwrap_or(t)
}

/// Thirty years: the most any deadline is put ahead.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `d`, or thirty years if longer: the span `later` can put ahead, for arithmetic on
/// spans (a third of a `Duration::MAX` ttl) that must agree with it.
pub(crate) fn capped(d: Duration) -> Duration {
    d.min(FAR)
}

/// When a holder must stop using a lock that the store promised until `valid_until`: a
/// tenth of its `ttl` before, a margin for the holder's next await point and for clocks
/// that run a little apart.
pub(crate) fn stop_before(
    valid_until: tokio::time::Instant,
    ttl: Duration,
) -> tokio::time::Instant {
    // Capped as `later` caps: a tenth of `Duration::MAX` would reach back before boot.
    valid_until
        .checked_sub((ttl / 10).min(FAR / 10))
        .unwrap_or(valid_until)
}

/// Whole milliseconds, rounded up, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// `retry_interval` with ±20% jitter, so waiters of many processes do not poll in step.
pub(crate) fn jittered(interval: Duration, seed: u64) -> Duration {
    // splitmix64: a well-spread value from the token and attempt number.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let permille = 800 + (z % 401); // 0.800 ..= 1.200
    // Saturating: a `Duration::MAX` interval must not panic.
    interval.saturating_mul(permille as u32) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_ms_rounds_up_partial_milliseconds() {
        assert_eq!(duration_ms(Duration::from_micros(1500)), 2);
        assert_eq!(duration_ms(Duration::from_millis(7)), 7);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn stop_before_a_huge_ttl_is_still_ahead() {
        let now = tokio::time::Instant::now();
        let until = later(now, Duration::MAX);
        assert!(stop_before(until, Duration::MAX) > now);
        let second = Duration::from_secs(1);
        assert_eq!(
            stop_before(later(now, second), second),
            now + second / 10 * 9
        );
    }

    #[test]
    fn jittered_stays_within_twenty_percent() {
        let base = Duration::from_millis(100);
        let values: Vec<Duration> = (0..200).map(|i| jittered(base, i)).collect();
        assert!(
            values
                .iter()
                .all(|d| *d >= Duration::from_millis(80) && *d <= Duration::from_millis(120))
        );
        assert!(values.iter().any(|d| *d < Duration::from_millis(95)));
        assert!(values.iter().any(|d| *d > Duration::from_millis(105)));
    }
}
