//! Handing a held lock to another process: [`LockGuard::handoff`] and [`Locker::restore`]
//! (and, inside a body, [`crate::handoff`]).

use tokio::time::Instant;

use crate::error::LockError;
use crate::guard::LockGuard;
use crate::locker::Locker;
use crate::options::LockOptions;
use crate::store::{Lease, OwnedLease, Store};
use crate::telemetry;
use crate::ticket::Ticket;
use crate::time::CALL_LIMIT;
use crate::time::later;

impl LockGuard {
    /// Gives the lock to another process: returns the string that
    /// [`Locker::restore`] takes there, and this guard lets go of the lock without
    /// releasing it (and stops renewing it).
    ///
    /// The string carries the keys, the owner's token, the store's identity and the
    /// fencing token. **Treat it as a secret**: whoever has it can release or extend the
    /// lock. It is hex-encoded, not encrypted.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let guard = locker.acquire("export:7", locker.options().fencing(true)).await?;
    /// let fence = guard.fencing_token();
    /// let handed = guard.handoff(); // e.g. put on a job queue
    /// // ... in the worker:
    /// let restored = locker.restore(&handed, locker.options()).await?;
    /// assert_eq!(restored.fencing_token(), fence);
    /// restored.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn handoff(mut self) -> String {
        let ticket = self.ticket();
        self.handed_off();
        ticket.encode()
    }
}

impl Locker {
    /// Takes over a lock handed off with [`LockGuard::handoff`] (or [`crate::handoff`] in
    /// a body), from another process on the same store. Owner-checked: the lock must
    /// still be held with the token the string carries.
    ///
    /// The restored guard keeps the lock's ttl, releases as any guard does, and, with
    /// `opts.renew` on (the default), renews in the background
    /// ([`LockGuard::auto_renew`], with [`LockGuard::lost`] to learn of a loss).
    ///
    /// # Errors
    /// [`LockError::Lost`] when the lock has expired or passed to someone else since: it
    /// is never silently taken again; [`LockError::Config`] when the string is not a
    /// hand-off, or comes from another store; [`LockError::Backend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let handed = locker.acquire("job", locker.options()).await?.handoff();
    /// let guard = locker.restore(&handed, locker.options()).await?;
    /// guard.release().await?;
    /// // Once released, the hand-off is worthless.
    /// assert!(locker.restore(&handed, locker.options()).await.unwrap_err().is_lost());
    /// # Ok(()) }
    /// ```
    pub async fn restore(&self, handoff: &str, opts: LockOptions) -> Result<LockGuard, LockError> {
        let ticket = Ticket::decode(handoff).map_err(|bad| bad.at("handoff"))?;
        let core = &self.inner;
        let store = core.store.describe();
        if ticket.store != store {
            return Err(LockError::config(
                "handoff",
                format!(
                    "the hand-off comes from the store `{}`, and this locker is on `{store}`",
                    ticket.store
                ),
                "restore it with a locker on the same store",
            ));
        }
        let Ticket {
            keys,
            token,
            fence,
            ttl_ms,
            kind,
            ..
        } = ticket;
        let key = keys.join(", ");
        let opts = opts.ttl(std::time::Duration::from_millis(ttl_ms));
        let sent = Instant::now();
        let left = core
            .call(
                &key,
                CALL_LIMIT,
                core.store.remaining(Lease {
                    keys: &keys,
                    token: &token,
                    kind,
                }),
            )
            .await?;
        let Some(left) = left else {
            return Err(LockError::Lost {
                key,
                reason: "expired or taken by another holder before it was restored".to_owned(),
            });
        };
        let span = telemetry::lock_span(&key, "restore", opts.ttl, opts.timeout, "Locker::restore");
        let guard = LockGuard::new(
            core.clone(),
            OwnedLease { keys, token, kind },
            key,
            fence,
            sent,
            later(sent, left),
            opts,
            span,
        );
        Ok(if opts.renew {
            guard.auto_renew()
        } else {
            guard
        })
    }
}
