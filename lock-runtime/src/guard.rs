//! [`LockGuard`]: proof that a lock is held, and the way to give it back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::Core;
use crate::error::LockError;
use crate::meter;
use crate::options::LockOptions;
use crate::store::{Lease, OwnedLease, Release, Store};
use crate::telemetry;
use crate::ticket::Ticket;
use crate::time::{CALL_LIMIT, duration_ms, stop_before};

/// A held lock. Release it with [`LockGuard::release`]; if the guard is dropped instead
/// (an early return, a panic, a cancelled future), it is released in the background on
/// the runtime it was made on. `Drop` never blocks.
///
/// A guard from [`Locker::acquire`](crate::Locker::acquire) is not renewed unless asked:
/// call [`LockGuard::auto_renew`] (then [`LockGuard::lost`] tells when it is lost anyway),
/// [`LockGuard::extend`] by hand, or use [`Locker::run`](crate::Locker::run) / `#[locked]`,
/// which renew and stop the body on loss for you.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// use std::time::Duration;
/// let locker = locked::Locker::memory();
/// let guard = locker.acquire("order:7", locker.options().ttl(Duration::from_secs(5))).await?;
/// guard.extend(Duration::from_secs(60)).await?;
/// assert!(guard.remaining().await? > Duration::from_secs(5));
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    core: Arc<Core>,
    /// Every key held (one, or several for `keys = [...]`, sorted), the owner's token and
    /// what kind of hold it is.
    held: OwnedLease,
    /// The keys joined for messages and events.
    key: String,
    fence: Option<u64>,
    acquired_at: Instant,
    /// Until when the store promised the lock, as of its acquisition.
    valid_until: Instant,
    opts: LockOptions,
    span: tracing::Span,
    runtime: Option<tokio::runtime::Handle>,
    released: bool,
    /// Background renewal, when asked for ([`LockGuard::auto_renew`]).
    pub(crate) renewal: Option<Renewal>,
    /// Counted in the `locked_held` gauge (a shadow copy is not).
    counted: bool,
}

/// A guard's background renewal: it stops when this is dropped, and reports a loss.
pub(crate) struct Renewal {
    /// Dropping it stops the renewal task.
    pub(crate) _stop: tokio::sync::oneshot::Sender<()>,
    /// Why the lock was lost, once it is.
    pub(crate) lost: tokio::sync::watch::Receiver<Option<String>>,
}

impl fmt::Debug for LockGuard {
    // The token stays out of Debug: it is the only proof of ownership.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("keys", &self.held.keys)
            .field("fencing_token", &self.fence)
            .field("held_ms", &duration_ms(self.acquired_at.elapsed()))
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        core: Arc<Core>,
        held: OwnedLease,
        key: String,
        fence: Option<u64>,
        acquired_at: Instant,
        valid_until: Instant,
        opts: LockOptions,
        span: tracing::Span,
    ) -> Self {
        Self {
            core,
            key,
            held,
            fence,
            acquired_at,
            valid_until,
            opts,
            span,
            runtime: tokio::runtime::Handle::try_current().ok(),
            released: false,
            renewal: None,
            counted: {
                meter::held(opts.label);
                true
            },
        }
    }

    /// A copy that can renew and be asked about the lock but never releases it (for a
    /// background renewal task).
    pub(crate) fn shadow(&self) -> Self {
        Self {
            core: self.core.clone(),
            held: self.held.clone(),
            key: self.key.clone(),
            fence: self.fence,
            acquired_at: self.acquired_at,
            valid_until: self.valid_until,
            opts: self.opts,
            span: self.span.clone(),
            runtime: None,
            released: true,
            renewal: None,
            counted: false,
        }
    }

    /// What a hand-off carries of this lock.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket {
            store: self.core.store.describe(),
            keys: self.held.keys.clone(),
            token: self.held.token.clone(),
            fence: self.fence,
            ttl_ms: self.opts.ttl_ms(),
            kind: self.held.kind,
        }
    }

    /// The lock now belongs to whoever restores the hand-off: this guard neither renews
    /// nor releases it any more.
    pub(crate) fn handed_off(&mut self) {
        self.renewal = None;
        self.released = true;
    }

    /// The options the lock was taken with.
    pub(crate) fn options(&self) -> &LockOptions {
        &self.opts
    }

    /// The runtime the guard was made on, else the current one.
    pub(crate) fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
    }

    /// The full key, prefix included, e.g. `lock:order:123` (for several keys, all of them
    /// joined by `, `).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let guard = locker.acquire("order:123", locker.options()).await?;
    /// assert_eq!(guard.key(), "lock:order:123");
    /// # Ok(()) }
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Every key held, prefix included, in the order they were taken (sorted).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let guard = locker.acquire_all(&["account:2", "account:1"], locker.options()).await?;
    /// assert_eq!(guard.keys(), ["lock:account:1", "lock:account:2"]);
    /// # Ok(()) }
    /// ```
    pub fn keys(&self) -> &[String] {
        &self.held.keys
    }

    /// The fencing token, when the lock was taken with `fencing` on; `None` otherwise.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let plain = locker.acquire("a", locker.options()).await?;
    /// assert_eq!(plain.fencing_token(), None);
    /// let fenced = locker.acquire("b", locker.options().fencing(true)).await?;
    /// assert!(fenced.fencing_token().is_some());
    /// # Ok(()) }
    /// ```
    pub fn fencing_token(&self) -> Option<u64> {
        self.fence
    }

    /// What the store knows this hold by.
    pub(crate) fn lease(&self) -> Lease<'_> {
        self.held.lease()
    }

    /// When the lock was taken (the moment the winning request was sent).
    pub(crate) fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    /// Until when the store promised the lock when it was taken.
    pub(crate) fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// When a body run under this guard must stop, unless renewal moves it: a tenth of the
    /// ttl before the lock would lapse, so the body's next await point comes before anyone
    /// else can take the lock.
    pub(crate) fn stops_at(&self) -> Instant {
        stop_before(self.valid_until, self.opts.ttl)
    }

    /// The core the lock was taken on, for renewal's store calls.
    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Sets the lock's remaining time to `ttl`, if this guard still owns it.
    ///
    /// # Errors
    /// [`LockError::Lost`] when the lock expired or passed to someone else;
    /// [`LockError::Backend`] when the store failed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// # use std::time::Duration;
    /// let locker = locked::Locker::memory();
    /// let guard = locker.acquire("a", locker.options()).await?;
    /// guard.extend(Duration::from_secs(120)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        let ttl_ms = duration_ms(ttl).max(1);
        let store = &self.core.store;
        if self
            .core
            .call(
                &self.key,
                CALL_LIMIT,
                store.extend(self.lease(), ttl_ms, self.opts.replicas),
            )
            .await?
        {
            Ok(())
        } else {
            Err(self.lost_error("expired or taken by another holder before extend"))
        }
    }

    /// The time left before the lock expires, as the store counts it (Redis `PTTL`).
    ///
    /// # Errors
    /// [`LockError::Lost`] when the lock expired or passed to someone else;
    /// [`LockError::Backend`] when the store failed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// # use std::time::Duration;
    /// let locker = locked::Locker::memory();
    /// let guard = locker.acquire("a", locker.options().ttl(Duration::from_secs(30))).await?;
    /// assert!(guard.remaining().await? <= Duration::from_secs(30));
    /// # Ok(()) }
    /// ```
    pub async fn remaining(&self) -> Result<Duration, LockError> {
        let store = &self.core.store;
        match self
            .core
            .call(&self.key, CALL_LIMIT, store.remaining(self.lease()))
            .await?
        {
            Some(left) => Ok(left),
            None => Err(self.lost_error("expired or taken by another holder")),
        }
    }

    /// Gives the lock back now.
    ///
    /// Releasing twice (or a release the cluster client re-sent after an I/O error)
    /// deletes nothing that is not ours: the second finds no lock and reports `Lost`, on
    /// the safe side, since it cannot tell a re-send from an expiry.
    ///
    /// # Errors
    /// [`LockError::Lost`] when the lock had already expired or passed to someone else
    /// (nothing was deleted); [`LockError::Backend`] when the store failed (the lock then
    /// expires after its ttl).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let guard = locker.acquire("a", locker.options()).await?;
    /// guard.release().await?;
    /// assert!(!locker.is_locked("a").await?);
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<(), LockError> {
        self.renewal = None; // stops a background renewal first
        let store = &self.core.store;
        let held = self.acquired_at.elapsed();
        // `released` is set only once the store answered: a caller dropped while the
        // release is out (a timeout around `run`) leaves the guard to release in the
        // background, since this request may never have been sent. A second release
        // compares tokens, so it deletes nothing that is not ours.
        let outcome = self
            .core
            .call(&self.key, CALL_LIMIT, store.release(self.lease()))
            .await;
        self.released = true;
        let outcome = outcome?;
        match outcome {
            Release::Released => {
                self.core.released(&self.held.keys);
            }
            Release::Gone => {
                return Err(self.lost_error("expired or force-released before release"));
            }
            Release::Foreign => {
                return Err(self.lost_error("taken by another holder before release"));
            }
        }
        telemetry::released(self.opts.logging, &self.key, held);
        Ok(())
    }

    /// Releases after a body finished: failures are logged, not returned, because the
    /// body's result is what the caller wants.
    pub(crate) async fn finish(self) {
        let key = self.key.clone();
        let held = self.acquired_at.elapsed();
        match self.release().await {
            Ok(()) => {}
            Err(LockError::Lost { .. }) => telemetry::expired_before_release(&key, held),
            Err(e) => telemetry::release_failed(&key, &e),
        }
    }

    pub(crate) fn lost_error(&self, reason: &str) -> LockError {
        LockError::Lost {
            key: self.key.clone(),
            reason: reason.to_owned(),
        }
    }

    /// Sends one extension; `Ok(false)` when the lock is no longer ours.
    pub(crate) async fn try_extend(&self, limit: Duration) -> Result<bool, LockError> {
        let store = &self.core.store;
        let ttl_ms = self.opts.ttl_ms();
        self.core
            .call(
                &self.key,
                limit,
                store.extend(self.lease(), ttl_ms, self.opts.replicas),
            )
            .await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.counted {
            meter::let_go(self.opts.label, self.acquired_at.elapsed());
        }
        if !self.released {
            let held = OwnedLease {
                keys: std::mem::take(&mut self.held.keys),
                token: std::mem::take(&mut self.held.token),
                kind: self.held.kind,
            };
            self.core.release_in_background(self.runtime.as_ref(), held);
        }
    }
}
