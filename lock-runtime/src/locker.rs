//! [`Locker`]: a cheap, cloneable handle to one lock store, and its builder.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::error::LockError;
use crate::guard::LockGuard;
use crate::keys::{DEFAULT_PREFIX, full_key};
use crate::options::{LockOptions, later};
use crate::renew::{self, HoldContext};
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{Attempt, Store};
use crate::telemetry;
use crate::token::new_token;
use crate::wait::{Waits, jittered};

/// How long one store call may take in try mode, when no wait deadline bounds it.
const TRY_MODE_CALL_LIMIT: Duration = Duration::from_secs(5);

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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    prefix: String,
    defaults: LockOptions,
    waits: Arc<Waits>,
}

impl fmt::Debug for Locker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locker")
            .field("store", &self.inner.store.describe())
            .field("prefix", &self.inner.prefix)
            .field("defaults", &self.inner.defaults)
            .finish()
    }
}

/// Builds a [`Locker`] with a key prefix and default options.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use locked::{LockOptions, Locker};
///
/// let locker = Locker::builder()
///     .prefix("billing:")
///     .defaults(LockOptions::default().ttl(Duration::from_secs(10)))
///     .memory();
/// assert_eq!(locker.prefix(), "billing:");
/// assert_eq!(locker.options().ttl_value(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone)]
pub struct LockerBuilder {
    prefix: String,
    defaults: LockOptions,
}

impl LockerBuilder {
    /// The prefix of every stored key (default `lock:`).
    ///
    /// ```
    /// assert_eq!(locked::Locker::builder().prefix("app:").memory().prefix(), "app:");
    /// ```
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The options used where a call (or `#[locked]` argument) does not set one.
    ///
    /// ```
    /// let opts = locked::LockOptions::default().logging(false);
    /// let locker = locked::Locker::builder().defaults(opts).memory();
    /// assert!(!locker.options().logging_value());
    /// ```
    #[must_use]
    pub fn defaults(mut self, defaults: LockOptions) -> Self {
        self.defaults = defaults;
        self
    }

    /// A locker on the in-process memory store.
    ///
    /// ```
    /// let locker = locked::Locker::builder().memory();
    /// assert_eq!(locker.prefix(), "lock:");
    /// ```
    pub fn memory(self) -> Locker {
        self.build(Store::Memory(MemoryStore::new()))
    }

    /// A locker on one Redis server. The URL is checked now; the connection is opened on
    /// first use.
    ///
    /// # Errors
    /// [`LockError::Config`] when the URL does not parse.
    ///
    /// ```
    /// let locker = locked::Locker::builder().prefix("app:").redis("redis://127.0.0.1:6379/");
    /// assert!(locker.is_ok());
    /// assert!(locked::Locker::builder().redis("http://nope").is_err());
    /// ```
    pub fn redis(self, url: &str) -> Result<Locker, LockError> {
        let store = RedisStore::open(url).map_err(|e| {
            LockError::config(
                "redis url",
                format!(
                    "`{}` is not a Redis URL ({e}); write `redis://host:6379/0`",
                    crate::url::RedactedUrl::new(url)
                ),
            )
        })?;
        Ok(self.build(Store::Redis(store)))
    }

    fn build(self, store: Store) -> Locker {
        Locker {
            inner: Arc::new(Inner {
                waits: Waits::new(match &store {
                    Store::Redis(r) => Some(r.client().clone()),
                    Store::Memory(_) => None,
                }),
                store,
                prefix: self.prefix,
                defaults: self.defaults,
            }),
        }
    }
}

impl Locker {
    /// A builder for a prefix and default options.
    ///
    /// ```
    /// let locker = locked::Locker::builder().prefix("jobs:").memory();
    /// assert_eq!(locker.prefix(), "jobs:");
    /// ```
    pub fn builder() -> LockerBuilder {
        LockerBuilder {
            prefix: DEFAULT_PREFIX.to_owned(),
            defaults: LockOptions::default(),
        }
    }

    /// A locker on the in-process memory store: locks exclude callers in this process only.
    ///
    /// ```
    /// let locker = locked::Locker::memory();
    /// assert_eq!(locker.prefix(), "lock:");
    /// ```
    pub fn memory() -> Self {
        Self::builder().memory()
    }

    /// A locker on one Redis server, e.g. `redis://127.0.0.1:6379/0`.
    ///
    /// # Errors
    /// [`LockError::Config`] when the URL does not parse. Nothing is connected yet.
    ///
    /// ```
    /// let locker = locked::Locker::redis("redis://127.0.0.1:6379/0").unwrap();
    /// assert_eq!(locker.prefix(), "lock:");
    /// ```
    pub fn redis(url: &str) -> Result<Self, LockError> {
        Self::builder().redis(url)
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
        let guard = self
            .lock(self.full_keys(&[key])?, &opts, true, "Locker::run")
            .await?;
        renew::hold(guard, &opts, f()).await
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
        match self
            .lock(self.full_keys(&[key])?, &opts, false, "Locker::try_run")
            .await
        {
            Ok(guard) => renew::hold(guard, &opts, f()).await.map(Some),
            Err(LockError::Busy { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` for the lock and returns a guard that holds it.
    ///
    /// The guard does not renew the lock: it lives `ttl` unless [`LockGuard::extend`]ed.
    /// Release it with [`LockGuard::release`]; a dropped guard is released in the
    /// background.
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
        self.lock(self.full_keys(&[key])?, &opts, true, "Locker::acquire")
            .await
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
        match self
            .lock(self.full_keys(&[key])?, &opts, false, "Locker::try_acquire")
            .await
        {
            Ok(guard) => Ok(Some(guard)),
            Err(LockError::Busy { .. }) => Ok(None),
            Err(e) => Err(e),
        }
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
        let guard = self
            .lock(self.full_keys(keys)?, &opts, true, "Locker::run_all")
            .await?;
        renew::hold(guard, &opts, f()).await
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
        self.lock(self.full_keys(keys)?, &opts, true, "Locker::acquire_all")
            .await
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
        self.call(&key, TRY_MODE_CALL_LIMIT, self.inner.store.exists(&key))
            .await
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
            .call(
                &key,
                TRY_MODE_CALL_LIMIT,
                self.inner.store.force_release(&key),
            )
            .await?;
        telemetry::force_release(&key, existed);
        self.released(std::slice::from_ref(&key));
        Ok(existed)
    }

    /// One store call, bounded in time, its error tied to the key.
    ///
    /// The bound is skipped where the store already keeps it, which saves a timer per
    /// call on the hot path: memory operations never wait, and a connected Redis client
    /// fails every command after its own response timeout.
    pub(crate) async fn call<T>(
        &self,
        key: &str,
        limit: Duration,
        op: impl Future<Output = Result<T, crate::error::BoxError>>,
    ) -> Result<T, LockError> {
        if self.inner.store.bounds_calls_within(limit) {
            return op.await.map_err(|e| LockError::backend(key, e));
        }
        match tokio::time::timeout(limit, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(LockError::backend(key, e)),
            Err(_) => Err(LockError::backend(
                key,
                format!("the store did not answer within {limit:?}"),
            )),
        }
    }

    /// The stored keys of `keys`, sorted and without duplicates.
    pub(crate) fn full_keys<S: AsRef<str>>(&self, keys: &[S]) -> Result<Vec<String>, LockError> {
        let mut full = keys
            .iter()
            .map(|k| self.full_key(k.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if full.is_empty() {
            return Err(LockError::InvalidKey {
                key: String::new(),
                reason: "no keys were given; lock at least one".to_owned(),
            });
        }
        full.sort_unstable();
        full.dedup();
        Ok(full)
    }

    /// Takes the lock on every key: at once (`wait == false`) or retrying until `opts.timeout`.
    pub(crate) async fn lock(
        &self,
        keys: Vec<String>,
        opts: &LockOptions,
        wait: bool,
        site: &'static str,
    ) -> Result<LockGuard, LockError> {
        let key = keys.join(", ");
        if let Some(held) = keys.iter().find(|k| HoldContext::holds(k)) {
            return Err(LockError::Nested { key: held.clone() });
        }
        let mode = if wait { "wait" } else { "try" };
        let span = telemetry::lock_span(&key, mode, opts.ttl, opts.timeout, site);
        self.lock_in(keys, key, opts, wait, span.clone())
            .instrument(span)
            .await
    }

    async fn lock_in(
        &self,
        keys: Vec<String>,
        key: String,
        opts: &LockOptions,
        wait: bool,
        span: tracing::Span,
    ) -> Result<LockGuard, LockError> {
        let token = new_token(&key)?;
        let start = Instant::now();
        let mut ask = Ask {
            locker: self,
            keys,
            key,
            token,
            opts,
            start,
            deadline: later(start, opts.timeout),
            attempts: 0,
            span,
        };
        let waits = &self.inner.waits;
        // Uncontended (no one of this locker waits for the key): try at once. Otherwise
        // queue behind the earlier waiters, so that a task that just released cannot
        // take the lock again ahead of them. A store failure is retried until the deadline
        // (the client reconnects meanwhile); only try mode reports it at once.
        let mut failure = None;
        if !wait || !ask.keys.iter().any(|k| waits.has_waiters(k)) {
            match ask.attempt(false, !wait).await {
                Ok(Ok(guard)) => return Ok(guard),
                Ok(Err(_)) if !wait => {
                    telemetry::busy(opts.logging, &ask.key);
                    return Err(LockError::Busy { key: ask.key });
                }
                Err(e) if !wait => return Err(e),
                Ok(Err(_)) => {}
                Err(e) => failure = Some(e),
            }
        }
        // The contended path lives in its own boxed future, so that the uncontended one
        // stays small (it is moved through a few layers on every call).
        Box::pin(ask.wait_in_queue(failure)).await
    }
}

impl Ask<'_> {
    /// Queues for the key, and as the head of the queue tries on every release (and on
    /// each poll) until the deadline. Several keys: no queue (a place in several queues
    /// could deadlock), but woken by a release of any of them.
    async fn wait_in_queue(mut self, failure: Option<LockError>) -> Result<LockGuard, LockError> {
        let ask = &mut self;
        let opts = ask.opts;
        let waits = &ask.locker.inner.waits;
        telemetry::waiting(opts.logging, &ask.key);
        let mut tickets: Vec<_> = ask.keys.iter().map(|k| waits.join(k)).collect();
        let _head = match tickets.as_slice() {
            [one] => {
                let queue = one.queue.clone();
                match tokio::time::timeout_at(ask.deadline, queue.acquire_owned()).await {
                    Ok(Ok(permit)) => Some(permit),
                    _ => return Err(ask.timed_out(failure)),
                }
            }
            _ => None,
        };
        // Head of the queue: subscribe to releases, then try before every sleep.
        for ticket in &mut tickets {
            ticket
                .subscribed(ask.deadline.saturating_duration_since(Instant::now()))
                .await;
        }
        loop {
            // Registered before the try, so a release during it is not missed.
            let mut released: Vec<_> = tickets
                .iter()
                .map(|t| Box::pin(t.notify.notified()))
                .collect();
            for notified in &mut released {
                notified.as_mut().enable();
            }
            let (remaining, failure) = match ask.attempt(true, false).await {
                Ok(Ok(guard)) => return Ok(guard),
                Ok(Err(remaining)) => (remaining, None),
                Err(e) => (None, Some(e)),
            };
            let now = Instant::now();
            if now >= ask.deadline {
                return Err(ask.timed_out(failure));
            }
            // Polling is the fallback (expiry, a lost message): every retry_interval, and
            // no later than the holder's ttl runs out. The jitter's seed differs per
            // waiter (its random token) and per try.
            let seed = u64::from_str_radix(ask.token.get(..16).unwrap_or("0"), 16).unwrap_or(0);
            let mut pause = jittered(
                opts.retry_interval.max(Duration::from_millis(1)),
                seed ^ u64::from(ask.attempts),
            );
            if let Some(left) = remaining {
                pause = pause.min(left.saturating_add(Duration::from_millis(1)));
            }
            tokio::select! {
                _ = futures_util::future::select_all(released.iter_mut()) => {}
                _ = tokio::time::sleep_until(later(now, pause).min(ask.deadline)) => {}
            }
        }
    }
}

impl Locker {
    /// Wakes this locker's waiters for `keys` after a release. Redis releases are
    /// announced by the store itself (pub/sub), so only the memory store needs this.
    pub(crate) fn released(&self, keys: &[String]) {
        if let Store::Memory(_) = self.inner.store {
            for key in keys {
                self.inner.waits.wake(key);
            }
        }
    }

    /// Releases `token`'s hold on `keys` without waiting, on `runtime` or else the current
    /// one. With no runtime at all, the lock expires after its ttl.
    pub(crate) fn release_in_background(
        &self,
        runtime: Option<&tokio::runtime::Handle>,
        keys: Vec<String>,
        token: String,
    ) {
        let handle = runtime
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        if let Some(handle) = handle {
            let locker = self.clone();
            handle.spawn(async move {
                let key = keys.join(", ");
                let release = locker.inner.store.release(&keys, &token);
                if let Ok(true) = locker.call(&key, TRY_MODE_CALL_LIMIT, release).await {
                    locker.released(&keys);
                }
            });
        }
    }
}

/// One call's attempts to take its lock.
struct Ask<'a> {
    locker: &'a Locker,
    keys: Vec<String>,
    key: String,
    token: String,
    opts: &'a LockOptions,
    start: Instant,
    deadline: Instant,
    attempts: u32,
    span: tracing::Span,
}

impl Ask<'_> {
    /// One try: `Ok(Ok(guard))` taken, `Ok(Err(remaining))` held by someone else.
    async fn attempt(
        &mut self,
        waiting: bool,
        once: bool,
    ) -> Result<Result<LockGuard, Option<Duration>>, LockError> {
        self.attempts += 1;
        let sent = Instant::now();
        let limit = if once {
            TRY_MODE_CALL_LIMIT
        } else {
            self.deadline
                .saturating_duration_since(sent)
                .max(Duration::from_millis(50))
        };
        let store = &self.locker.inner.store;
        let ttl_ms = self.opts.ttl_ms();
        let attempt =
            store.try_acquire(&self.keys, &self.token, ttl_ms, self.opts.fencing, waiting);
        match self.locker.call(&self.key, limit, attempt).await {
            Ok(Attempt::Acquired { fence }) => {
                telemetry::acquired(
                    self.opts.logging,
                    &self.key,
                    sent - self.start,
                    self.attempts,
                    fence,
                );
                let guard = LockGuard::new(
                    self.locker.clone(),
                    std::mem::take(&mut self.keys),
                    std::mem::take(&mut self.token),
                    fence,
                    sent,
                    *self.opts,
                    self.span.clone(),
                );
                Ok(Ok(guard))
            }
            Ok(Attempt::Held { remaining }) => Ok(Err(remaining)),
            Err(e) => {
                // The SET may have landed although its answer did not: free it, in the
                // background, so a lost reply costs no one a whole ttl.
                self.locker
                    .release_in_background(None, self.keys.clone(), self.token.clone());
                Err(e)
            }
        }
    }

    /// The error when the deadline passes: the store's, if the last try failed, else Timeout.
    fn timed_out(&self, failure: Option<LockError>) -> LockError {
        match failure {
            Some(backend) => backend,
            None => {
                let waited = self.start.elapsed();
                telemetry::timeout(self.opts.logging, &self.key, waited, self.attempts);
                LockError::Timeout {
                    key: self.key.clone(),
                    waited,
                }
            }
        }
    }
}
