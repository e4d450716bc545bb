//! Holding a lock while a body runs: the renewal watchdog and cancellation on loss.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::context::{CONTEXT, HoldContext};
use crate::error::LockError;
use crate::guard::LockGuard;
use crate::options::{LockOptions, later};
use crate::store::Store;
use crate::telemetry;

/// Runs `body` while `guard` holds the lock, renewing it, then releases it.
///
/// Returns `Err(Lost)` (and drops `body`) if the lock is lost, renewal cannot reach the
/// store before the lock would lapse, or `max_hold` passes.
pub(crate) async fn hold<F: Future>(
    guard: LockGuard,
    opts: &LockOptions,
    body: F,
) -> Result<F::Output, LockError> {
    let span = guard.span().clone();
    let body = CONTEXT.scope(HoldContext::enter(&guard), body);
    let outcome = if opts.renew {
        tokio::select! {
            biased;
            out = body => Ok(out),
            lost = watchdog(&guard, opts) => Err(lost),
        }
    } else {
        Ok(body.await)
    };
    match outcome {
        Ok(out) => {
            guard.finish().instrument(span).await;
            Ok(out)
        }
        Err(lost) => {
            // Dropping the guard releases in the background: harmless if the lock is
            // already someone else's, since release compares tokens.
            drop(guard);
            Err(lost)
        }
    }
}

/// Extends the lock every `ttl/3` for as long as it is polled; returns only on loss.
async fn watchdog(guard: &LockGuard, opts: &LockOptions) -> LockError {
    let ttl = opts.ttl;
    let period = (ttl / 3).max(Duration::from_millis(1));
    // Stop the body a little before the store would let the lock go, so its next await
    // point comes before anyone else can take the lock.
    let margin = ttl / 10;
    let mut valid_until = guard.valid_until();
    let hard_stop = opts.max_hold.map(|m| later(guard.acquired_at(), m));
    let mut next = later(Instant::now(), period);
    loop {
        if let Some(stop) = hard_stop {
            next = next.min(stop);
        }
        tokio::time::sleep_until(next).await;
        let sent = Instant::now();
        if hard_stop.is_some_and(|stop| sent >= stop) {
            let reason = "max_hold reached";
            telemetry::lost(guard.key(), sent - guard.acquired_at(), reason);
            return guard.lost(reason);
        }
        let lapse = valid_until.checked_sub(margin).unwrap_or(valid_until);
        let budget = lapse.saturating_duration_since(sent);
        let reason = match guard.try_extend(budget.max(Duration::from_millis(1))).await {
            Ok(true) => {
                valid_until = later(sent, guard.core().store.validity(ttl));
                telemetry::renewed(opts.logging, guard.key(), sent - guard.acquired_at());
                next = later(sent, period);
                continue;
            }
            Ok(false) => "expired or taken by another holder",
            Err(_) if Instant::now() < lapse => {
                // The store failed but the lock is still valid: try again soon.
                next = Instant::now()
                    + (lapse.saturating_duration_since(Instant::now()) / 4).min(period);
                continue;
            }
            Err(_) => "the store could not be reached before the lock lapsed",
        };
        telemetry::lost(guard.key(), sent - guard.acquired_at(), reason);
        return guard.lost(reason);
    }
}
