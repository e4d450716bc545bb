//! Holding a lock while a body runs: the renewal watchdog and cancellation on loss.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::context::{CONTEXT, HoldContext};
use crate::error::LockError;
use crate::guard::{LockGuard, Renewal};
use crate::meter;
use crate::options::LockOptions;
use crate::store::Store;
use crate::telemetry;
use crate::time::{capped, later, stop_before};

/// Runs `body` while `guard` holds the lock, renewing it, then releases it.
///
/// Returns `Err(Lost)` (and drops `body`) if the lock is lost, renewal cannot reach the
/// store before the lock would lapse, or `max_hold` passes.
pub(crate) async fn hold<F: Future>(
    guard: LockGuard,
    opts: &LockOptions,
    body: F,
) -> Result<F::Output, LockError> {
    let line = StopLine::for_guard(&guard);
    hold_until(guard, opts, body, std::future::pending(), |_| {}, &line).await
}

/// How a held body ended, as [`hold_until`]'s `on_end` hears it.
pub(crate) enum End<'a> {
    /// It returned.
    Returned,
    /// `stop` resolved.
    Asked,
    /// The lock was lost (or was about to lapse), for this reason.
    Lost(&'a str),
}

/// [`hold`], but the body also stops when `stop` resolves (the lock is then released at
/// once, and `stop`'s error returned); `on_end` hears how the body ended before the lock
/// is released (a leader's term, whose spawned work listens for it); and the stop line is
/// the caller's, so that it can read it too.
pub(crate) async fn hold_until<F: Future>(
    guard: LockGuard,
    opts: &LockOptions,
    body: F,
    stop: impl Future<Output = LockError>,
    on_end: impl FnOnce(End<'_>),
    line: &StopLine,
) -> Result<F::Output, LockError> {
    if Instant::now() >= guard.stops_at() {
        // A late answer, or a restored hand-off with too little time left: the body
        // would start on a lock that may already be someone else's.
        let reason = "the lock had nearly lapsed before the body could start";
        telemetry::lost(guard.key(), guard.acquired_at().elapsed(), reason);
        meter::lost(opts.label);
        on_end(End::Lost(reason));
        return Err(guard.lost_error(reason));
    }
    let span = guard.span().clone();
    let context = HoldContext::enter(&guard);
    let handoff = context.handoff_cell();
    let body = CONTEXT.scope(context, body);
    let outcome = if opts.renew {
        tokio::select! {
            biased;
            out = gate(line, body) => match out {
                Some(out) => Ok(out),
                None => {
                    // The process did not run (a pause, a stop signal, a starved runtime)
                    // until past the point the body must stop: the lock may be someone
                    // else's already, so the body is not resumed (issue 21).
                    let reason = "the process was paused past the lock's end; the body was \
                                  not resumed";
                    telemetry::lost(guard.key(), guard.acquired_at().elapsed(), reason);
                    meter::lost(opts.label);
                    Err(Stopped::Lost(guard.lost_error(reason)))
                }
            },
            lost = watchdog(&guard, opts, Some(line)) => Err(Stopped::Lost(lost)),
            stopped = stop => Err(Stopped::Asked(stopped)),
        }
    } else {
        tokio::select! {
            biased;
            out = body => Ok(out),
            stopped = stop => Err(Stopped::Asked(stopped)),
        }
    };
    on_end(match &outcome {
        Ok(_) => End::Returned,
        Err(Stopped::Asked(_)) => End::Asked,
        Err(Stopped::Lost(LockError::Lost { reason, .. })) => End::Lost(reason),
        Err(Stopped::Lost(_)) => End::Lost("lost"),
    });
    if handoff.is_some_and(|h| h.handed()) {
        // Another process holds it now: neither release nor renew it here, whatever
        // ended the body.
        let mut guard = guard;
        guard.handed_off();
        return match outcome {
            Ok(out) => Ok(out),
            Err(Stopped::Lost(e) | Stopped::Asked(e)) => Err(e),
        };
    }
    match outcome {
        Ok(out) => {
            guard.finish().instrument(span).await;
            Ok(out)
        }
        Err(Stopped::Lost(lost)) => {
            // Dropping the guard releases in the background: harmless if the lock is
            // already someone else's, since release compares tokens.
            drop(guard);
            Err(lost)
        }
        Err(Stopped::Asked(why)) => {
            guard.finish().instrument(span).await;
            Err(why)
        }
    }
}

/// Why a held body stopped before it returned.
enum Stopped {
    /// The lock was lost (or is about to lapse).
    Lost(LockError),
    /// The caller's `stop` resolved.
    Asked(LockError),
}

/// The point past which the body must not run, as the watchdog last moved it: the gate
/// in front of the body reads it before every poll (and a leader's term, for the work
/// its body spawned). Nanoseconds after `base`, so it can be shared without a lock.
pub(crate) struct StopLine {
    base: Instant,
    after_ns: AtomicU64,
}

impl StopLine {
    /// The line of a guard just taken: a tenth of its ttl before it lapses.
    pub(crate) fn for_guard(guard: &LockGuard) -> Self {
        Self::new(guard.acquired_at(), guard.stops_at())
    }

    fn new(base: Instant, at: Instant) -> Self {
        let line = Self {
            base,
            after_ns: AtomicU64::new(0),
        };
        line.set(at);
        line
    }

    fn set(&self, at: Instant) {
        let ns = at.saturating_duration_since(self.base).as_nanos();
        self.after_ns
            .store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Release);
    }

    pub(crate) fn get(&self) -> Instant {
        later(
            self.base,
            Duration::from_nanos(self.after_ns.load(Ordering::Acquire)),
        )
    }
}

/// Polls `body` only while the stop line is ahead; `None` once it has passed. The watchdog
/// stops a body in time while the process runs; this covers the process that did not run
/// (SIGSTOP, a VM pause, a runtime blocked by other work) and wakes past the lock's end,
/// where the body's own timer could otherwise fire before the watchdog's and let it take
/// one more step on a lock that may be someone else's.
async fn gate<F: Future>(line: &StopLine, body: F) -> Option<F::Output> {
    let mut body = std::pin::pin!(body);
    std::future::poll_fn(|cx| {
        if Instant::now() >= line.get() {
            return Poll::Ready(None);
        }
        body.as_mut().poll(cx).map(Some)
    })
    .await
}

impl LockGuard {
    /// Keeps the lock renewed in the background (every `ttl/3`, as [`Locker::run`] does)
    /// until the guard is released or dropped, or the lock is lost; [`LockGuard::lost`]
    /// then says so. Calling it again changes nothing.
    ///
    /// For guards whose work does not fit one closure. Unlike `run`, nothing stops your
    /// code when the lock is lost: `select!` on [`LockGuard::lost`] to stop it.
    ///
    /// [`Locker::run`]: crate::Locker::run
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// use std::time::Duration;
    /// let locker = locked::Locker::memory();
    /// let opts = locker.options().ttl(Duration::from_millis(60));
    /// let guard = locker.acquire("report", opts).await?.auto_renew();
    /// tokio::time::sleep(Duration::from_millis(200)).await; // past the ttl, still held
    /// assert!(locker.try_acquire("report", opts).await?.is_none());
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn auto_renew(mut self) -> Self {
        if self.renewal.is_some() {
            return self;
        }
        let Some(runtime) = self.runtime() else {
            return self;
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (report, lost) = tokio::sync::watch::channel(None);
        let shadow = self.shadow();
        runtime.spawn(async move {
            let opts = *shadow.options();
            tokio::select! {
                _ = stopped => {}
                loss = watchdog(&shadow, &opts, None) => {
                    let reason = match loss {
                        LockError::Lost { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    let _ = report.send(Some(reason));
                }
            }
        });
        self.renewal = Some(Renewal { _stop: stop, lost });
        self
    }

    /// Resolves with [`LockError::Lost`] once background renewal ([`LockGuard::auto_renew`])
    /// finds the lock lost: expired, taken by another holder, force-released, past
    /// `max_hold`, or the store unreachable until it would lapse (reported a little
    /// before). Without `auto_renew` it never resolves. Made for `tokio::select!` beside
    /// the work the lock protects.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// use std::time::Duration;
    /// let locker = locked::Locker::memory();
    /// let opts = locker.options().ttl(Duration::from_millis(60));
    /// let guard = locker.acquire("export", opts).await?.auto_renew();
    /// locker.force_release("export").await?; // someone takes it away
    /// let outcome = tokio::select! {
    ///     lost = guard.lost() => Err(lost),
    ///     _ = tokio::time::sleep(Duration::from_secs(5)) => Ok("export done"),
    /// };
    /// assert!(outcome.unwrap_err().is_lost());
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) -> LockError {
        let Some(renewal) = &self.renewal else {
            return std::future::pending().await;
        };
        let mut lost = renewal.lost.clone();
        loop {
            if let Some(reason) = lost.borrow_and_update().clone() {
                return self.lost_error(&reason);
            }
            if lost.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// Extends the lock every `ttl/3` for as long as it is polled; returns only on loss.
///
/// `line`, when given, learns each new stop point (see [`gate`]).
async fn watchdog(guard: &LockGuard, opts: &LockOptions, line: Option<&StopLine>) -> LockError {
    // Capped as deadlines are: a third of a `Duration::MAX` ttl must still agree with
    // the thirty years `later` puts the lock's end ahead.
    let ttl = capped(opts.ttl);
    let period = (ttl / 3).max(Duration::from_millis(1));
    let mut valid_until = guard.valid_until();
    let hard_stop = opts.max_hold.map(|m| later(guard.acquired_at(), m));
    // Renewed once a third of the ttl is spent, counted from when the store promised the
    // lock rather than from now: a guard that came late (a slow answer, a restored
    // hand-off with little time left) is renewed at once.
    let renew_at = |valid_until: Instant| {
        valid_until
            .checked_sub(ttl.saturating_sub(period))
            .unwrap_or(valid_until)
    };
    let mut next = renew_at(valid_until);
    loop {
        if let Some(stop) = hard_stop {
            next = next.min(stop);
        }
        tokio::time::sleep_until(next).await;
        let sent = Instant::now();
        if hard_stop.is_some_and(|stop| sent >= stop) {
            let reason = "max_hold reached";
            telemetry::lost(guard.key(), sent - guard.acquired_at(), reason);
            meter::lost(opts.label);
            return guard.lost_error(reason);
        }
        // Stop the body a little before the store would let the lock go.
        let lapse = stop_before(valid_until, ttl);
        let budget = lapse.saturating_duration_since(sent);
        let reason = match guard.try_extend(budget.max(Duration::from_millis(1))).await {
            Ok(true) => {
                meter::renewal(opts.label, true);
                valid_until = later(sent, guard.core().store.validity(ttl));
                if let Some(line) = line {
                    line.set(stop_before(valid_until, ttl));
                }
                telemetry::renewed(opts.logging, guard.key(), sent - guard.acquired_at());
                next = renew_at(valid_until);
                continue;
            }
            Ok(false) => {
                meter::renewal(opts.label, false);
                "expired or taken by another holder"
            }
            Err(_) if Instant::now() < lapse => {
                meter::renewal(opts.label, false);
                // The store failed but the lock is still valid: try again soon.
                next = Instant::now()
                    + (lapse.saturating_duration_since(Instant::now()) / 4).min(period);
                continue;
            }
            Err(_) => {
                meter::renewal(opts.label, false);
                "the store could not be reached before the lock lapsed"
            }
        };
        telemetry::lost(guard.key(), sent - guard.acquired_at(), reason);
        meter::lost(opts.label);
        return guard.lost_error(reason);
    }
}
