//! Leadership: of every instance that campaigns for a key, one leads at a time and runs the
//! job; the others stand by, and one of them leads once the leader resigns, returns, crashes,
//! pauses past its lease or is cut off from the store.
//!
//! It rides on the lock of the key: a term is a hold of it, renewed while the body runs,
//! with the fencing token as the term's number where the store fences. So it is on every
//! store, with the lock's guarantees.
//!
//! - Here: [`Election`], the handle, and its settings.
//! - `serve`: leading (`lead`, `lead_forever`) and stepping down (`resign`).
//! - `campaign`: waiting to lead, in rounds, with backoff while the store fails.
//! - `term`: [`Term`], what a leader's body gets.
//! - `observe`: [`Leader`] and [`Observer`], who leads now and when that changes.
//! - `identity`: the name a leader publishes.
//! - `attribute`: the campaign `#[locked(leader)]` drives.

pub(crate) mod attribute;
mod campaign;
mod identity;
mod observe;
mod serve;
mod term;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::locker::Locker;
use crate::options::LockOptions;

pub use observe::{Leader, Observer};
pub use term::Term;

/// A campaign for the leadership of one key: [`Election::lead`] waits until this instance
/// leads, then runs a body for as long as it does. Made by [`Locker::election`]; cheap to
/// make and to clone (clones share [`Election::resign`]).
///
/// ## Behavior
/// - **One leader at a time.** A term is a hold of the key's lock, renewed every `ttl/3`
///   while the body runs. If the lease is lost (expired, taken, force-released, the store
///   unreachable until it would lapse), the body is stopped at its next `.await`, a tenth
///   of the ttl before anyone else can lead, and the call returns
///   [`LockError::Lost`](crate::LockError::Lost). A process that did not run past that
///   point (SIGSTOP, a blocked runtime) is not resumed when it wakes: it ends `Lost` without
///   another step of the body.
/// - **Terms are numbered** by the fencing token on stores that fence (all but Redlock):
///   each leader's number is greater than every earlier leader's. Pass it to the storage
///   the job writes to, so a deposed leader that still runs is refused.
/// - **Standbys wait quietly.** They are woken by the store's release announcements and
///   try again when the leader's lease would lapse, polling at most every `ttl/2` (or
///   `retry_interval`, when longer) as the fallback. Failover after a crash takes at most
///   the ttl; after [`Election::resign`] or a body that returns, a moment.
/// - **No timeout by default**: a standby waits for as long as it takes; set one with
///   [`Election::timeout`].
/// - **The leader publishes who it is** ([`Election::identity`]; by default host name and
///   process id), which [`Election::leader`], [`Election::observe`], `locked list` and
///   [`LockInfo::owner`](crate::LockInfo::owner) show.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// let locker = locked::Locker::memory();
/// let election = locker.election("scheduler").identity("worker-1");
/// let ran = election
///     .lead(|term| async move {
///         // Only the leader gets here; `term.fencing_token()` numbers the term.
///         assert!(term.fencing_token().is_some());
///         "ran the schedule"
///     })
///     .await?;
/// assert_eq!(ran, "ran the schedule");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Election {
    locker: Locker,
    key: String,
    identity: Arc<str>,
    opts: LockOptions,
    timeout: Option<Duration>,
    shared: Arc<serve::Shared>,
}

impl fmt::Debug for Election {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Election")
            .field("key", &self.key)
            .field("identity", &self.identity)
            .field("ttl", &self.opts.ttl)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Locker {
    /// A campaign for the leadership of `key` (prefixed as lock keys are), with this
    /// locker's default options and no timeout. Nothing is sent until it is used.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let locker = locked::Locker::memory();
    /// let election = locker
    ///     .election("outbox-relay")
    ///     .options(locker.options().ttl(Duration::from_secs(10)));
    /// assert_eq!(election.key(), "outbox-relay");
    /// ```
    pub fn election(&self, key: &str) -> Election {
        Election {
            locker: self.clone(),
            key: key.to_owned(),
            identity: identity::default_identity(),
            opts: self.options(),
            timeout: None,
            shared: Arc::default(),
        }
    }

    /// Waits until this instance leads `key`, then runs `f` for as long as it leads:
    /// `locker.election(key).options(opts).lead(f)`, with no timeout unless `opts` carries
    /// one other than this locker's default, which then bounds the campaign
    /// ([`Election::timeout`]). A locker's default timeout is meant for locks; a standby
    /// waits for as long as the leader leads. See [`Election`] for the identity, the loop
    /// form and resigning.
    ///
    /// # Errors
    /// As [`Election::lead`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// use std::time::Duration;
    /// let locker = locked::Locker::memory();
    /// let term = locker.lead("cache-warmer", locker.options(), |term| async move {
    ///     term.fencing_token()
    /// }).await?;
    /// assert!(term.is_some());
    ///
    /// // A timeout of its own bounds the campaign.
    /// let _held = locker.acquire("cache-warmer", locker.options()).await?;
    /// let bounded = locker.options().timeout(Duration::from_millis(50));
    /// let err = locker.lead("cache-warmer", bounded, |_| async {}).await.unwrap_err();
    /// assert!(err.is_timeout());
    /// # Ok(()) }
    /// ```
    pub async fn lead<F, Fut, T>(
        &self,
        key: &str,
        opts: LockOptions,
        f: F,
    ) -> Result<T, crate::LockError>
    where
        F: FnOnce(Term) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let mut election = self.election(key).options(opts);
        if opts.timeout != self.inner.defaults.timeout {
            election = election.timeout(opts.timeout);
        }
        election.lead(f).await
    }
}

impl Election {
    /// The name this instance publishes while it leads (by default `host:pid`): 1 to 200
    /// bytes, no control or direction-changing characters, checked when a campaign starts.
    ///
    /// ```
    /// let locker = locked::Locker::memory();
    /// let election = locker.election("scheduler").identity("eu-west-1a/worker-3");
    /// assert_eq!(election.identity_value(), "eu-west-1a/worker-3");
    /// assert!(locker.election("scheduler").identity_value().contains(':'));
    /// ```
    #[must_use]
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = identity.into().into();
        self
    }

    /// The options of each term: its `ttl` (failover after a crash takes at most this
    /// long), `max_hold` (a term limit), `retry_interval`, `logging`, `label` and
    /// `replicas`. Renewal is always on and fencing on where the store offers it; the
    /// options' `timeout` is not used (see [`Election::timeout`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let locker = locked::Locker::memory();
    /// let election = locker.election("scheduler").options(locker.options().ttl(Duration::from_secs(5)));
    /// assert_eq!(election.options_value().ttl_value(), Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn options(mut self, opts: LockOptions) -> Self {
        self.opts = opts;
        self
    }

    /// The longest a campaign waits to lead before [`Election::lead`] fails with
    /// [`LockError::Timeout`](crate::LockError::Timeout). Unbounded by default.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// use std::time::Duration;
    /// let locker = locked::Locker::memory();
    /// let _held = locker.acquire("scheduler", locker.options()).await?;
    /// let standby = locker.election("scheduler").timeout(Duration::from_millis(50));
    /// let err = standby.lead(|_| async {}).await.unwrap_err();
    /// assert!(err.is_timeout());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The key, as given.
    ///
    /// ```
    /// assert_eq!(locked::Locker::memory().election("scheduler").key(), "scheduler");
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The identity this instance publishes while it leads.
    ///
    /// ```
    /// let election = locked::Locker::memory().election("scheduler").identity("a");
    /// assert_eq!(election.identity_value(), "a");
    /// ```
    pub fn identity_value(&self) -> &str {
        &self.identity
    }

    /// The options of each term, as given to [`Election::options`].
    ///
    /// ```
    /// let locker = locked::Locker::memory();
    /// assert_eq!(locker.election("k").options_value().ttl_value(), locked::DEFAULT_TTL);
    /// ```
    pub fn options_value(&self) -> LockOptions {
        self.opts
    }
}
