//! [`LockOptions`] and their defaults, which are the original `LockService`'s.

use std::time::Duration;

use crate::store::Replicas;
use crate::time::duration_ms;

/// Default lock lifetime: 30 s.
///
/// ```
/// assert_eq!(locked::DEFAULT_TTL, std::time::Duration::from_secs(30));
/// ```
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Default longest wait for a held lock: 5 s.
///
/// ```
/// assert_eq!(locked::DEFAULT_TIMEOUT, std::time::Duration::from_secs(5));
/// ```
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default pause between attempts while waiting: 100 ms.
///
/// ```
/// assert_eq!(locked::DEFAULT_RETRY_INTERVAL, std::time::Duration::from_millis(100));
/// ```
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// How one lock is taken and held.
///
/// Built with [`Default`] and plain-named builder methods. Durations are rounded up to whole
/// milliseconds (Redis `PX`), and a zero `ttl` is raised to 1 ms.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use locked::LockOptions;
///
/// let opts = LockOptions::default()
///     .ttl(Duration::from_secs(60))
///     .timeout(Duration::from_secs(10))
///     .logging(false);
/// assert_eq!(opts.ttl_value(), Duration::from_secs(60));
/// assert_eq!(LockOptions::default().timeout_value(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    pub(crate) ttl: Duration,
    pub(crate) timeout: Duration,
    pub(crate) retry_interval: Duration,
    pub(crate) logging: bool,
    pub(crate) renew: bool,
    pub(crate) max_hold: Option<Duration>,
    pub(crate) fencing: bool,
    pub(crate) replicas: Option<Replicas>,
    pub(crate) label: &'static str,
}

impl Default for LockOptions {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            timeout: DEFAULT_TIMEOUT,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            logging: true,
            renew: true,
            max_hold: None,
            fencing: false,
            replicas: None,
            label: crate::meter::UNNAMED,
        }
    }
}

impl LockOptions {
    /// How long the lock lives in the store if its holder stops renewing it (crashes).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let opts = locked::LockOptions::default().ttl(Duration::from_secs(10));
    /// assert_eq!(opts.ttl_value(), Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long `run`/`acquire` wait for a held lock before [`LockError::Timeout`](crate::LockError::Timeout).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let opts = locked::LockOptions::default().timeout(Duration::ZERO);
    /// assert_eq!(opts.timeout_value(), Duration::ZERO);
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The pause between attempts while waiting.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let opts = locked::LockOptions::default().retry_interval(Duration::from_millis(20));
    /// assert_eq!(opts.retry_interval_value(), Duration::from_millis(20));
    /// ```
    #[must_use]
    pub fn retry_interval(mut self, retry_interval: Duration) -> Self {
        self.retry_interval = retry_interval;
        self
    }

    /// Whether this call emits its DEBUG events (acquired, busy, timeout, released).
    /// Warnings (lost, failed release) are always emitted.
    ///
    /// ```
    /// let opts = locked::LockOptions::default().logging(false);
    /// assert!(!opts.logging_value());
    /// ```
    #[must_use]
    pub fn logging(mut self, logging: bool) -> Self {
        self.logging = logging;
        self
    }

    /// Whether a watchdog extends the lock every `ttl/3` while the body runs (default on).
    ///
    /// ```
    /// let opts = locked::LockOptions::default().renew(false);
    /// assert!(!opts.renew_value());
    /// ```
    #[must_use]
    pub fn renew(mut self, renew: bool) -> Self {
        self.renew = renew;
        self
    }

    /// The longest time renewal may keep the lock; past it the body is stopped with
    /// [`LockError::Lost`](crate::LockError::Lost). Unbounded by default.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let opts = locked::LockOptions::default().max_hold(Duration::from_secs(300));
    /// assert_eq!(opts.max_hold_value(), Some(Duration::from_secs(300)));
    /// ```
    #[must_use]
    pub fn max_hold(mut self, max_hold: Duration) -> Self {
        self.max_hold = Some(max_hold);
        self
    }

    /// Whether the acquisition gets a fencing token (off by default: it costs store work).
    ///
    /// ```
    /// let opts = locked::LockOptions::default().fencing(true);
    /// assert!(opts.fencing_value());
    /// ```
    #[must_use]
    pub fn fencing(mut self, fencing: bool) -> Self {
        self.fencing = fencing;
        self
    }

    /// After the lock is written, and after each renewal, wait until `count` replicas
    /// of the Redis node that holds it acknowledge the write, at most `within` (Redis
    /// `WAIT`, in the same round trip as a single-key `SET`).
    ///
    /// If fewer acknowledge in time, the lock is released again and the attempt fails
    /// with [`LockError::Backend`](crate::LockError::Backend) naming the replica count
    /// (retried until `timeout` in wait mode; the last try may end up to `within` + 1 s after
    /// `timeout`); a renewal that too few acknowledge does not count, so the body is
    /// stopped with `Lost` before the lock could lapse.
    ///
    /// ## What it promises, and what not
    /// A Redis master acknowledges a lock before its replicas have it; if it dies in that
    /// window, the promoted replica has no lock and a second holder gets in. With
    /// `replicas(1, ..)` the body starts only once a replica has the lock, so a failover
    /// to that replica keeps it. `WAIT` is not consensus: a failover may still promote a
    /// replica that had not acknowledged (another one did), and a write is not on disk.
    /// Choose it on a Redis Cluster or a replicated Redis where a second holder after a
    /// failover would cost more than one extra wait per acquisition and renewal. Stores
    /// without replicas to wait for (memory, Redlock) refuse it with
    /// [`LockError::Config`](crate::LockError::Config) at the call.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let opts = locked::LockOptions::default().replicas(1, Duration::from_millis(200));
    /// assert_eq!(opts.replicas_value(), Some((1, Duration::from_millis(200))));
    /// ```
    #[must_use]
    pub fn replicas(mut self, count: u32, within: Duration) -> Self {
        self.replicas = (count > 0).then_some(Replicas { count, within });
        self
    }

    /// The replica acknowledgements asked for, and the bound on the wait for them.
    ///
    /// ```
    /// assert_eq!(locked::LockOptions::default().replicas_value(), None);
    /// ```
    pub fn replicas_value(&self) -> Option<(u32, Duration)> {
        self.replicas.map(|r| (r.count, r.within))
    }

    /// The name of this kind of lock in metrics (the `key` label, with the `metrics`
    /// feature): a template such as `order:{id}`, never a rendered key, so the number of
    /// series stays bounded. `#[locked]` sets it to its key template; API calls without
    /// one are labelled `unnamed`.
    ///
    /// ```
    /// let opts = locked::LockOptions::default().label("user-operation");
    /// assert_eq!(opts.label_value(), "user-operation");
    /// assert_eq!(locked::LockOptions::default().label_value(), "unnamed");
    /// ```
    #[must_use]
    pub fn label(mut self, name: &'static str) -> Self {
        self.label = name;
        self
    }

    /// The metrics label of the lock.
    ///
    /// ```
    /// assert_eq!(locked::LockOptions::default().label_value(), "unnamed");
    /// ```
    pub fn label_value(&self) -> &'static str {
        self.label
    }

    /// The lock's time to live.
    ///
    /// ```
    /// assert_eq!(locked::LockOptions::default().ttl_value(), locked::DEFAULT_TTL);
    /// ```
    pub fn ttl_value(&self) -> Duration {
        self.ttl
    }

    /// The longest wait.
    ///
    /// ```
    /// assert_eq!(locked::LockOptions::default().timeout_value(), locked::DEFAULT_TIMEOUT);
    /// ```
    pub fn timeout_value(&self) -> Duration {
        self.timeout
    }

    /// The pause between attempts.
    ///
    /// ```
    /// assert_eq!(
    ///     locked::LockOptions::default().retry_interval_value(),
    ///     locked::DEFAULT_RETRY_INTERVAL
    /// );
    /// ```
    pub fn retry_interval_value(&self) -> Duration {
        self.retry_interval
    }

    /// Whether per-call DEBUG events are on.
    ///
    /// ```
    /// assert!(locked::LockOptions::default().logging_value());
    /// ```
    pub fn logging_value(&self) -> bool {
        self.logging
    }

    /// Whether renewal is on.
    ///
    /// ```
    /// assert!(locked::LockOptions::default().renew_value());
    /// ```
    pub fn renew_value(&self) -> bool {
        self.renew
    }

    /// The bound on renewal, if any.
    ///
    /// ```
    /// assert_eq!(locked::LockOptions::default().max_hold_value(), None);
    /// ```
    pub fn max_hold_value(&self) -> Option<Duration> {
        self.max_hold
    }

    /// Whether a fencing token is asked for.
    ///
    /// ```
    /// assert!(!locked::LockOptions::default().fencing_value());
    /// ```
    pub fn fencing_value(&self) -> bool {
        self.fencing
    }

    /// The ttl in whole milliseconds, at least 1 (what Redis `PX` takes).
    pub(crate) fn ttl_ms(&self) -> u64 {
        duration_ms(self.ttl).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_ms_zero_ttl_is_one_millisecond() {
        assert_eq!(LockOptions::default().ttl(Duration::ZERO).ttl_ms(), 1);
    }
}
