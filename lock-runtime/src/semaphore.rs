//! [`Semaphore`]: at most N holders of one key at once, each with its own lease.

use std::fmt;
use std::future::Future;

use crate::error::LockError;
use crate::guard::LockGuard;
use crate::locker::Locker;
use crate::options::LockOptions;
use crate::store::{Kind, Store};
use crate::take::Take;
use crate::time::CALL_LIMIT;

/// A semaphore: at most `permits` holders of one key at once, across every process on
/// the store. Made by [`Locker::semaphore`]; cheap to make and to clone.
///
/// ## Behavior
/// - Each holder has its own permit: a fresh token and lease, renewed while its body runs
///   and released when it ends, so a crashed holder's permit lapses after its `ttl`.
/// - Waiting is as for locks: fair (first come, first served) among the waiters of one
///   `Locker`, woken at once by a release, polling as the fallback.
/// - Every caller of one key must give the same `permits`. A call that finds the key held
///   with another count fails with [`LockError::Config`] naming both, rather than letting
///   one caller admit more holders than the others expect. The count is the holders'
///   while any hold; once all have released, the next caller may start a new count.
/// - `permits = 1` behaves as a lock (stored as a semaphore: a key is used as one kind).
/// - On Redlock a permit needs `N*P/(P+1) + 1` masters, not a majority: a majority
///   cannot keep the bound (see the README's Safety section).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// let locker = locked::Locker::memory();
/// let exports = locker.semaphore("export:tenant-7", 2);
/// let a = exports.acquire(locker.options()).await?;
/// let b = exports.acquire(locker.options()).await?;
/// assert!(exports.try_acquire(locker.options()).await?.is_none(), "both permits are taken");
/// a.release().await?;
/// assert_eq!(exports.available().await?, 1);
/// # drop(b);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    locker: Locker,
    key: String,
    permits: u32,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("key", &self.key)
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

impl Locker {
    /// A semaphore of `permits` on `key` (prefixed as lock keys are). Nothing is sent until
    /// it is used.
    ///
    /// # Examples
    ///
    /// ```
    /// let locker = locked::Locker::memory();
    /// let calls = locker.semaphore("partner-api", 10);
    /// assert_eq!(calls.permits(), 10);
    /// ```
    pub fn semaphore(&self, key: &str, permits: u32) -> Semaphore {
        Semaphore {
            locker: self.clone(),
            key: key.to_owned(),
            permits,
        }
    }
}

impl Semaphore {
    /// The number of permits.
    ///
    /// ```
    /// assert_eq!(locked::Locker::memory().semaphore("s", 3).permits(), 3);
    /// ```
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// The key as stored, prefix included.
    ///
    /// # Errors
    /// [`LockError::InvalidKey`] for an empty or too long key.
    ///
    /// ```
    /// let locker = locked::Locker::memory();
    /// assert_eq!(locker.semaphore("s", 3).key().unwrap(), "lock:s");
    /// ```
    pub fn key(&self) -> Result<String, LockError> {
        self.locker.full_key(&self.key)
    }

    fn take(&self, site: &'static str) -> Result<Take<'_>, LockError> {
        if self.permits == 0 {
            return Err(LockError::config(
                "permits",
                format!(
                    "the semaphore `{}` has 0 permits, so it admits no one",
                    self.key
                ),
                "give it at least 1",
            ));
        }
        Ok(Take {
            core: &self.locker.inner,
            keys: vec![self.key()?],
            kind: Kind::Permit {
                permits: self.permits,
            },
            site,
        })
    }

    /// Runs `f` holding a permit: waits up to `timeout` for one, renews it while `f` runs
    /// (stopping `f` if it is lost), releases it on every exit.
    ///
    /// # Errors
    /// As [`Locker::run`]; [`LockError::Config`] when the key is held with another
    /// permit count, or as another kind of lock.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let sent = locker.semaphore("smtp", 5).run(locker.options(), || async { "sent" }).await?;
    /// assert_eq!(sent, "sent");
    /// # Ok(()) }
    /// ```
    pub async fn run<F, Fut, T>(&self, opts: LockOptions, f: F) -> Result<T, LockError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.take("Semaphore::run")?.run(opts, f).await
    }

    /// Runs `f` holding a permit if one is free now; `Ok(None)` at once if not.
    ///
    /// # Errors
    /// As [`Semaphore::run`], but never [`LockError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let one = locker.semaphore("report", 1);
    /// let held = one.acquire(locker.options()).await?;
    /// assert_eq!(one.try_run(locker.options(), || async { 1 }).await?, None);
    /// held.release().await?;
    /// assert_eq!(one.try_run(locker.options(), || async { 1 }).await?, Some(1));
    /// # Ok(()) }
    /// ```
    pub async fn try_run<F, Fut, T>(&self, opts: LockOptions, f: F) -> Result<Option<T>, LockError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.take("Semaphore::try_run")?.try_run(opts, f).await
    }

    /// Waits up to `timeout` for a permit and returns its guard (not renewed unless
    /// [`LockGuard::auto_renew`] is called; released on drop).
    ///
    /// # Errors
    /// As [`Semaphore::run`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let permit = locker.semaphore("gpu", 4).acquire(locker.options()).await?;
    /// assert_eq!(permit.key(), "lock:gpu");
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self, opts: LockOptions) -> Result<LockGuard, LockError> {
        self.take("Semaphore::acquire")?.acquire(opts).await
    }

    /// Takes a permit if one is free now; `Ok(None)` at once if not.
    ///
    /// # Errors
    /// As [`Semaphore::acquire`], but never [`LockError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let permit = locker.semaphore("gpu", 1).try_acquire(locker.options()).await?;
    /// assert!(permit.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&self, opts: LockOptions) -> Result<Option<LockGuard>, LockError> {
        self.take("Semaphore::try_acquire")?.try_acquire(opts).await
    }

    /// How many permits are free now (a snapshot: another process may take one the
    /// next moment). On Redlock it counts the busiest master, so it never overstates.
    ///
    /// # Errors
    /// [`LockError::InvalidKey`], [`LockError::Backend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let pool = locker.semaphore("pool", 3);
    /// assert_eq!(pool.available().await?, 3);
    /// let _one = pool.acquire(locker.options()).await?;
    /// assert_eq!(pool.available().await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn available(&self) -> Result<u32, LockError> {
        let key = self.key()?;
        let core = &self.locker.inner;
        let held = core
            .call(&key, CALL_LIMIT, core.store.holders(&key))
            .await?;
        Ok(self
            .permits
            .saturating_sub(u32::try_from(held).unwrap_or(u32::MAX)))
    }
}
