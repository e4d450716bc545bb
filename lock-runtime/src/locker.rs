//! [`Locker`]: a cheap, cloneable handle to one lock store (its constructors and builder
//! are in `builder.rs`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::core::Core;
use crate::error::LockError;
use crate::guard::LockGuard;
use crate::info::LockInfo;
use crate::keys::full_key;
use crate::options::LockOptions;
use crate::store::{Kind, Store};
use crate::take::Take;
use crate::telemetry;
use crate::time::CALL_LIMIT;

/// A handle to one lock store: cheap to clone (an `Arc` inside), safe to share.
///
/// ## Behavior
/// - Keys get the prefix (`lock:` by default) unless they already start with it, so
///   `run("my-task", ..)` locks `lock:my-task` and `run(resource_key("order", 1), ..)`
///   locks `lock:order:1`.
/// - Each acquisition owns a fresh 128-bit random token; only that token can release or
///   extend it.
/// - Redis is reached through one self-reconnecting connection, opened on first use. A
///   call that cannot reach it keeps trying until its `timeout` and then fails with
///   [`LockError::Backend`]: no body ever runs without its lock.
/// - The memory store locks only inside this process.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// use locked::{LockOptions, Locker};
///
/// let locker = Locker::memory();
/// let total = locker
///     .run("my-task", LockOptions::default(), || async { 1 + 1 })
///     .await?;
/// assert_eq!(total, 2);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Locker {
    pub(crate) inner: Arc<Core>,
}

impl fmt::Debug for Locker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locker")
            .field("store", &self.inner.store.describe())
            // What the store can do (fencing, multi-key in one slot, sharded wake-ups,
            // replica acknowledgement), as the engine checks it.
            .field("caps", &self.inner.store.caps())
            .field("prefix", &self.inner.prefix)
            .field("defaults", &self.inner.defaults)
            .finish()
    }
}

impl Locker {
    /// The store's name, as `LOCK_STORE` names it: `memory`, `redis`, `cluster`,
    /// `redlock` or `postgres`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(locked::Locker::memory().store_name(), "memory");
    /// let redis = locked::Locker::redis("redis://127.0.0.1:6379/0").unwrap();
    /// assert_eq!(redis.store_name(), "redis");
    /// ```
    pub fn store_name(&self) -> &'static str {
        self.inner.store.entry().name
    }

    /// The prefix of stored keys.
    ///
    /// ```
    /// assert_eq!(locked::Locker::memory().prefix(), "lock:");
    /// ```
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// This locker's default options: start from them to change one setting.
    ///
    /// ```
    /// let opts = locked::Locker::memory().options().ttl(std::time::Duration::from_secs(5));
    /// assert_eq!(opts.timeout_value(), locked::DEFAULT_TIMEOUT);
    /// ```
    pub fn options(&self) -> LockOptions {
        self.inner.defaults
    }

    /// The key as stored: prefix + key, unless the key already starts with the prefix.
    ///
    /// # Errors
    /// [`LockError::InvalidKey`] when the key is empty or the result is over 1 KiB.
    ///
    /// ```
    /// let locker = locked::Locker::memory();
    /// assert_eq!(locker.full_key("my-task").unwrap(), "lock:my-task");
    /// assert_eq!(locker.full_key(&locked::resource_key("order", 1)).unwrap(), "lock:order:1");
    /// assert!(locker.full_key("").is_err());
    /// ```
    pub fn full_key(&self, key: &str) -> Result<String, LockError> {
        full_key(&self.inner.prefix, key)
    }

    /// Runs `f` under the lock: waits up to `timeout` for it, runs, releases.
    ///
    /// The lock is released on every exit: return, `?`, a panic in `f`, and the caller
    /// dropping this future. With renewal on (the default) it is extended every `ttl/3`
    /// while `f` runs; if it is lost anyway, `f` is stopped at its next `.await` and the
    /// call returns [`LockError::Lost`].
    ///
    /// # Errors
    /// [`LockError::Timeout`] (message contains `Unable to acquire lock`) when the lock
    /// stayed held; [`LockError::Backend`] when the store failed until the deadline;
    /// [`LockError::Lost`]; [`LockError::InvalidKey`]; [`LockError::Nested`] when this task
    /// already holds the key.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// use std::time::Duration;
    /// let locker = locked::Locker::memory();
    /// let opts = locker.options().ttl(Duration::from_secs(60)).timeout(Duration::from_secs(10));
    /// let paid = locker.run("payment:123", opts, || async { "paid" }).await?;
    /// assert_eq!(paid, "paid");
    /// # Ok(()) }
    /// ```
    pub async fn run<F, Fut, T>(&self, key: &str, opts: LockOptions, f: F) -> Result<T, LockError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.take(&[key], "Locker::run")?.run(opts, f).await
    }

    /// Runs `f` under the lock if it is free now; `Ok(None)` at once if it is held.
    ///
    /// # Errors
    /// As [`Locker::run`], but never [`LockError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let held = locker.acquire("cron:daily-report", locker.options()).await?;
    /// let ran = locker.try_run("cron:daily-report", locker.options(), || async { 1 }).await?;
    /// assert_eq!(ran, None);
    /// held.release().await?;
    /// let ran = locker.try_run("cron:daily-report", locker.options(), || async { 1 }).await?;
    /// assert_eq!(ran, Some(1));
    /// # Ok(()) }
    /// ```
    pub async fn try_run<F, Fut, T>(
        &self,
        key: &str,
        opts: LockOptions,
        f: F,
    ) -> Result<Option<T>, LockError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.take(&[key], "Locker::try_run")?.try_run(opts, f).await
    }

    /// Waits up to `timeout` for the lock and returns a guard that holds it.
    ///
    /// The guard does not renew the lock unless asked: it lives `ttl` unless
    /// [`LockGuard::extend`]ed, or renewed in the background after
    /// [`LockGuard::auto_renew`] (with [`LockGuard::lost`] to learn of a loss). Release it
    /// with [`LockGuard::release`]; a dropped guard is released in the background.
    ///
    /// # Errors
    /// As [`Locker::run`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let guard = locker.acquire("inventory:42", locker.options()).await?;
    /// assert_eq!(guard.key(), "lock:inventory:42");
    /// assert!(locker.is_locked("inventory:42").await?);
    /// guard.release().await?;
    /// assert!(!locker.is_locked("inventory:42").await?);
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self, key: &str, opts: LockOptions) -> Result<LockGuard, LockError> {
        self.take(&[key], "Locker::acquire")?.acquire(opts).await
    }

    /// Takes the lock if it is free now; `Ok(None)` at once if it is held.
    ///
    /// # Errors
    /// As [`Locker::acquire`], but never [`LockError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let first = locker.try_acquire("job", locker.options()).await?;
    /// assert!(first.is_some());
    /// assert!(locker.try_acquire("job", locker.options()).await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(
        &self,
        key: &str,
        opts: LockOptions,
    ) -> Result<Option<LockGuard>, LockError> {
        self.take(&[key], "Locker::try_acquire")?
            .try_acquire(opts)
            .await
    }

    /// Runs `f` holding every key in `keys`, taken all at once or not at all, so two
    /// callers locking overlapping sets in any order never deadlock.
    ///
    /// On Redis the keys are taken by one atomic script (so on a Redis Cluster they must
    /// share a hash slot). Renewal and release cover them all together.
    ///
    /// # Errors
    /// As [`Locker::run`]; [`LockError::InvalidKey`] when `keys` is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let moved = locker
    ///     .run_all(&["account:1", "account:2"], locker.options(), || async { 50 })
    ///     .await?;
    /// assert_eq!(moved, 50);
    /// # Ok(()) }
    /// ```
    pub async fn run_all<S, F, Fut, T>(
        &self,
        keys: &[S],
        opts: LockOptions,
        f: F,
    ) -> Result<T, LockError>
    where
        S: AsRef<str>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.take(keys, "Locker::run_all")?.run(opts, f).await
    }

    /// Waits up to `timeout` for every key in `keys`, taken all at once or not at all.
    ///
    /// # Errors
    /// As [`Locker::run_all`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let both = locker.acquire_all(&["a", "b"], locker.options()).await?;
    /// assert!(locker.try_acquire("b", locker.options()).await?.is_none());
    /// both.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire_all<S: AsRef<str>>(
        &self,
        keys: &[S],
        opts: LockOptions,
    ) -> Result<LockGuard, LockError> {
        self.take(keys, "Locker::acquire_all")?.acquire(opts).await
    }

    /// An exclusive hold of `keys`, to take.
    fn take<S: AsRef<str>>(&self, keys: &[S], site: &'static str) -> Result<Take<'_>, LockError> {
        Ok(Take {
            core: &self.inner,
            keys: self.inner.full_keys(keys)?,
            kind: Kind::Lock,
            site,
        })
    }

    /// Whether anyone holds the lock now.
    ///
    /// # Errors
    /// [`LockError::InvalidKey`], [`LockError::Backend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// assert!(!locker.is_locked("my-task").await?);
    /// # Ok(()) }
    /// ```
    pub async fn is_locked(&self, key: &str) -> Result<bool, LockError> {
        let key = self.full_key(key)?;
        self.inner
            .call(&key, CALL_LIMIT, self.inner.store.exists(&key))
            .await
    }

    /// What the store has of one lock now: held or not, the time left (from the store's
    /// clock), a short prefix of the holder's token, the fence counter, and how many
    /// connections wait for its release; on Redlock, each master's view too.
    ///
    /// # Errors
    /// [`LockError::InvalidKey`], [`LockError::Backend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// assert!(!locker.inspect("report").await?.held);
    /// let _guard = locker.acquire("report", locker.options()).await?;
    /// let info = locker.inspect("report").await?;
    /// assert!(info.held && info.holder.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn inspect(&self, key: &str) -> Result<LockInfo, LockError> {
        let key = self.full_key(key)?;
        self.inner
            .call(&key, CALL_LIMIT, self.inner.store.inspect(&key))
            .await
    }

    /// Every lock whose key matches `pattern` (a Redis glob, under this locker's prefix:
    /// `"order:*"` lists `lock:order:*`; `"*"` lists them all), found with `SCAN`, never
    /// `KEYS` (on a Cluster, on every master), each as [`Locker::inspect`] sees it.
    ///
    /// # Errors
    /// [`LockError::Backend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let _a = locker.acquire("order:1", locker.options()).await?;
    /// let _b = locker.acquire("order:2", locker.options()).await?;
    /// let _c = locker.acquire("cron:daily", locker.options()).await?;
    /// let orders = locker.list("order:*").await?;
    /// assert_eq!(orders.len(), 2);
    /// assert_eq!(orders[0].key, "lock:order:1");
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, pattern: &str) -> Result<Vec<LockInfo>, LockError> {
        let pattern = if pattern.starts_with(&self.inner.prefix) {
            pattern.to_owned()
        } else {
            format!("{}{pattern}", self.inner.prefix)
        };
        let keys = self
            .inner
            .call(&pattern, CALL_LIMIT, self.inner.store.scan(&pattern))
            .await?;
        let mut infos = Vec::with_capacity(keys.len());
        for key in keys {
            let info = self
                .inner
                .call(&key, CALL_LIMIT, self.inner.store.inspect(&key))
                .await?;
            // Expired between the scan and the look.
            if info.held {
                infos.push(info);
            }
        }
        Ok(infos)
    }

    /// Deletes the lock whoever holds it, and logs a warning. Use with care: the holder's
    /// body may still be running (with renewal on, it is stopped with [`LockError::Lost`]
    /// at its next renewal).
    ///
    /// Returns whether there was a lock to delete.
    ///
    /// # Errors
    /// [`LockError::InvalidKey`], [`LockError::Backend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let stuck = locker.acquire("stuck-task", locker.options()).await?;
    /// assert!(locker.force_release("stuck-task").await?);
    /// assert!(!locker.is_locked("stuck-task").await?);
    /// # drop(stuck);
    /// # Ok(()) }
    /// ```
    pub async fn force_release(&self, key: &str) -> Result<bool, LockError> {
        let key = self.full_key(key)?;
        let existed = self
            .inner
            .call(&key, CALL_LIMIT, self.inner.store.force_release(&key))
            .await?;
        telemetry::force_release(&key, existed);
        self.inner.released(std::slice::from_ref(&key));
        Ok(existed)
    }
}
