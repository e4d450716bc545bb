//! [`RwLock`]: many readers or one writer of one key, writers first.

use std::fmt;
use std::future::Future;

use crate::error::LockError;
use crate::guard::LockGuard;
use crate::locker::Locker;
use crate::options::LockOptions;
use crate::store::Kind;
use crate::take::Take;

/// A read/write lock on one key, across every process on the store: many readers at
/// once, or one writer. Made by [`Locker::rw`]; cheap to make and to clone.
///
/// ## Behavior
/// - Writer-preferring: once a writer waits, new readers wait behind it, so a stream of
///   readers cannot starve a writer. The waiting writer's intent is stored with a lease
///   of its own (renewed on each of its tries, at least its `ttl` long) and withdrawn
///   when it gives up, so a writer that crashed while waiting holds readers off for at
///   most that long.
/// - Each reader and the writer has its own token and lease, renewed while its body runs
///   and released when it ends; a crashed holder's lease lapses after its `ttl`.
/// - Waiting is fair among the waiters of one `Locker` and woken by releases, as for
///   locks. A key is used as one kind: a read/write key asked for as a lock or a
///   semaphore is a [`LockError::Config`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// let locker = locked::Locker::memory();
/// let doc = locker.rw("doc:42");
/// let r1 = doc.acquire_read(locker.options()).await?;
/// let r2 = doc.acquire_read(locker.options()).await?;
/// assert!(doc.try_acquire_write(locker.options()).await?.is_none(), "readers hold it");
/// r1.release().await?;
/// r2.release().await?;
/// let saved = doc.write(locker.options(), || async { "saved" }).await?;
/// assert_eq!(saved, "saved");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RwLock {
    locker: Locker,
    key: String,
}

impl fmt::Debug for RwLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Locker {
    /// A read/write lock on `key` (prefixed as lock keys are). Nothing is sent until it
    /// is used.
    ///
    /// # Examples
    ///
    /// ```
    /// let locker = locked::Locker::memory();
    /// let doc = locker.rw("doc:1");
    /// assert_eq!(doc.key().unwrap(), "lock:doc:1");
    /// ```
    pub fn rw(&self, key: &str) -> RwLock {
        RwLock {
            locker: self.clone(),
            key: key.to_owned(),
        }
    }
}

impl RwLock {
    /// The key as stored, prefix included.
    ///
    /// # Errors
    /// [`LockError::InvalidKey`] for an empty or too long key.
    ///
    /// ```
    /// assert!(locked::Locker::memory().rw("").key().is_err());
    /// ```
    pub fn key(&self) -> Result<String, LockError> {
        self.locker.full_key(&self.key)
    }

    fn take(&self, kind: Kind, site: &'static str) -> Result<Take<'_>, LockError> {
        Ok(Take {
            core: &self.locker.inner,
            keys: vec![self.key()?],
            kind,
            site,
        })
    }

    /// Runs `f` as a reader: waits up to `timeout` (behind any waiting writer), renews
    /// while `f` runs, releases on every exit.
    ///
    /// # Errors
    /// As [`Locker::run`]; [`LockError::Config`] when the key is held as another kind.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let text = locker.rw("doc:1").read(locker.options(), || async { "text" }).await?;
    /// assert_eq!(text, "text");
    /// # Ok(()) }
    /// ```
    pub async fn read<F, Fut, T>(&self, opts: LockOptions, f: F) -> Result<T, LockError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.take(Kind::Read, "RwLock::read")?.run(opts, f).await
    }

    /// Runs `f` as the writer: waits up to `timeout` for every reader and writer to
    /// leave (keeping new readers out meanwhile), renews, releases.
    ///
    /// # Errors
    /// As [`RwLock::read`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// locker.rw("doc:1").write(locker.options(), || async { /* save */ }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write<F, Fut, T>(&self, opts: LockOptions, f: F) -> Result<T, LockError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.take(Kind::Write, "RwLock::write")?.run(opts, f).await
    }

    /// Runs `f` as a reader if no writer holds or waits now; `Ok(None)` at once if one does.
    ///
    /// # Errors
    /// As [`RwLock::read`], but never [`LockError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let doc = locker.rw("doc:1");
    /// let writer = doc.acquire_write(locker.options()).await?;
    /// assert_eq!(doc.try_read(locker.options(), || async { 1 }).await?, None);
    /// writer.release().await?;
    /// assert_eq!(doc.try_read(locker.options(), || async { 1 }).await?, Some(1));
    /// # Ok(()) }
    /// ```
    pub async fn try_read<F, Fut, T>(&self, opts: LockOptions, f: F) -> Result<Option<T>, LockError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.take(Kind::Read, "RwLock::try_read")?
            .try_run(opts, f)
            .await
    }

    /// Runs `f` as the writer if no one holds the key now; `Ok(None)` at once otherwise.
    /// A refused `try_write` leaves no intent behind: readers are not held off by it.
    ///
    /// # Errors
    /// As [`RwLock::write`], but never [`LockError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let doc = locker.rw("doc:1");
    /// let reader = doc.acquire_read(locker.options()).await?;
    /// assert_eq!(doc.try_write(locker.options(), || async { 1 }).await?, None);
    /// # drop(reader);
    /// # Ok(()) }
    /// ```
    pub async fn try_write<F, Fut, T>(
        &self,
        opts: LockOptions,
        f: F,
    ) -> Result<Option<T>, LockError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.take(Kind::Write, "RwLock::try_write")?
            .try_run(opts, f)
            .await
    }

    /// Waits up to `timeout` for a reader's lease and returns its guard.
    ///
    /// # Errors
    /// As [`RwLock::read`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let reader = locker.rw("doc:1").acquire_read(locker.options()).await?;
    /// reader.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire_read(&self, opts: LockOptions) -> Result<LockGuard, LockError> {
        self.take(Kind::Read, "RwLock::acquire_read")?
            .acquire(opts)
            .await
    }

    /// Waits up to `timeout` for the writer's lease and returns its guard.
    ///
    /// # Errors
    /// As [`RwLock::write`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let writer = locker.rw("doc:1").acquire_write(locker.options()).await?;
    /// writer.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire_write(&self, opts: LockOptions) -> Result<LockGuard, LockError> {
        self.take(Kind::Write, "RwLock::acquire_write")?
            .acquire(opts)
            .await
    }

    /// A reader's lease if no writer holds or waits now; `Ok(None)` at once otherwise.
    ///
    /// # Errors
    /// As [`RwLock::acquire_read`], but never [`LockError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// assert!(locker.rw("doc:1").try_acquire_read(locker.options()).await?.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire_read(
        &self,
        opts: LockOptions,
    ) -> Result<Option<LockGuard>, LockError> {
        self.take(Kind::Read, "RwLock::try_acquire_read")?
            .try_acquire(opts)
            .await
    }

    /// The writer's lease if no one holds the key now; `Ok(None)` at once otherwise.
    ///
    /// # Errors
    /// As [`RwLock::acquire_write`], but never [`LockError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// assert!(locker.rw("doc:1").try_acquire_write(locker.options()).await?.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire_write(
        &self,
        opts: LockOptions,
    ) -> Result<Option<LockGuard>, LockError> {
        self.take(Kind::Write, "RwLock::try_acquire_write")?
            .try_acquire(opts)
            .await
    }
}
