//! Holding a lock while a body runs: the renewal watchdog, cancellation on loss, and the
//! task-local context that catches nested acquisitions and carries the fencing token.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::error::LockError;
use crate::guard::LockGuard;
use crate::options::{LockOptions, later};
use crate::telemetry;

/// What the running body holds: its keys (to refuse nested acquisition) and fencing token.
#[derive(Debug, Clone, Default)]
pub(crate) struct HoldContext {
    keys: Vec<String>,
    fence: Option<u64>,
}

tokio::task_local! {
    static CONTEXT: HoldContext;
}

impl HoldContext {
    /// Whether the current task runs inside a body that holds `key`.
    pub(crate) fn holds(key: &str) -> bool {
        CONTEXT
            .try_with(|ctx| ctx.keys.iter().any(|k| k == key))
            .unwrap_or(false)
    }

    fn enter(guard: &LockGuard) -> Self {
        let mut ctx = CONTEXT.try_with(Clone::clone).unwrap_or_default();
        ctx.keys.extend(guard.keys().iter().cloned());
        ctx.fence = guard.fencing_token();
        ctx
    }
}

/// The fencing token of the innermost lock the current task's body holds, when that lock
/// was taken with `fencing`; `None` outside a locked body or without fencing.
///
/// Pass it to the storage the body writes to, so that storage can refuse a write carrying
/// a token lower than one it has already seen: a holder that paused past its ttl (a long
/// GC pause, a stalled VM) and woke up after another holder took the lock can then do no
/// harm, even though it still believes it holds the lock.
///
/// Tokens of one key strictly increase across acquisitions, also after the lock key (and,
/// on Redis, the fence counter) expired and was re-created.
///
/// # Examples
///
/// A store that keeps the highest token it has seen and refuses older writers:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// use std::sync::Mutex;
///
/// #[derive(Default)]
/// struct Ledger {
///     highest_token: Mutex<u64>,
///     balance: Mutex<i64>,
/// }
///
/// impl Ledger {
///     /// Applies a write only if it carries the newest token seen so far.
///     fn write(&self, token: u64, balance: i64) -> Result<(), &'static str> {
///         let mut highest = self.highest_token.lock().unwrap();
///         if token < *highest {
///             return Err("stale lock holder: write refused");
///         }
///         *highest = token;
///         *self.balance.lock().unwrap() = balance;
///         Ok(())
///     }
/// }
///
/// let ledger = Ledger::default();
/// let locker = locked::Locker::memory();
/// let fenced = locker.options().fencing(true);
///
/// // An early holder takes its token, then stalls...
/// let stale = locker.acquire("ledger", fenced).await?.fencing_token().unwrap();
/// locker.force_release("ledger").await?; // (its lock expires meanwhile)
/// // ...a new holder writes with a newer token...
/// locker
///     .run("ledger", fenced, || async {
///         ledger.write(locked::fencing_token().unwrap(), 100).unwrap();
///     })
///     .await?;
/// // ...and the stale holder's late write is refused.
/// assert!(ledger.write(stale, 50).is_err());
/// assert_eq!(*ledger.balance.lock().unwrap(), 100);
/// # Ok(()) }
/// ```
///
/// Inside and outside a body:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// let locker = locked::Locker::memory();
/// assert_eq!(locked::fencing_token(), None);
/// let token = locker
///     .run("ledger", locker.options().fencing(true), || async { locked::fencing_token() })
///     .await?;
/// assert!(token.is_some());
/// # Ok(()) }
/// ```
pub fn fencing_token() -> Option<u64> {
    CONTEXT.try_with(|ctx| ctx.fence).ok().flatten()
}

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
    let mut valid_until = later(guard.acquired_at(), ttl);
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
                valid_until = later(sent, ttl);
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
