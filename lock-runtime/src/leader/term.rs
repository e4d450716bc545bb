//! [`Term`]: what a leader's body gets: the term's number and a way to learn it ended.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::LockError;
use crate::renew::StopLine;

/// One term of leadership, given to the body of [`Election::lead`](super::Election::lead).
///
/// The body itself is stopped at its next `.await` when leadership is lost; work it
/// spawned is not, so hand it [`Term::lost`] (or a clone of the term) to stop on.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// use std::time::Duration;
/// let locker = locked::Locker::memory();
/// let identity = locker.election("scheduler").identity_value().to_owned();
/// locker.lead("scheduler", locker.options(), |term| async move {
///     let worker = tokio::spawn({
///         let term = term.clone();
///         async move {
///             tokio::select! {
///                 _ = term.lost() => "stopped: leadership lost",
///                 _ = tokio::time::sleep(Duration::from_millis(10)) => "batch done",
///             }
///         }
///     });
///     assert_eq!(worker.await.unwrap(), "batch done");
///     assert_eq!(term.identity(), identity);
/// }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Term {
    pub(super) key: Arc<str>,
    pub(super) identity: Arc<str>,
    pub(super) fence: Option<u64>,
    /// The reason, once the term is over.
    pub(super) ended: watch::Receiver<Option<String>>,
    /// The point past which the term's lease may be someone else's, as renewal moves it.
    pub(super) line: Arc<StopLine>,
}

impl fmt::Debug for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Term")
            .field("key", &self.key)
            .field("identity", &self.identity)
            .field("fencing_token", &self.fence)
            .finish_non_exhaustive()
    }
}

impl Term {
    /// The term's number: the fencing token of this leader's hold, greater than every
    /// earlier leader's; `None` on a store without fencing (Redlock).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let first = locker.lead("job", locker.options(), |t| async move { t.fencing_token() }).await?;
    /// let second = locker.lead("job", locker.options(), |t| async move { t.fencing_token() }).await?;
    /// assert!(second > first);
    /// # Ok(()) }
    /// ```
    pub fn fencing_token(&self) -> Option<u64> {
        self.fence
    }

    /// The key led, prefix included (`lock:scheduler`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let key = locker.lead("job", locker.options(), |t| async move { t.key().to_owned() }).await?;
    /// assert_eq!(key, "lock:job");
    /// # Ok(()) }
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The identity this leader publishes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let election = locker.election("job").identity("w1");
    /// assert_eq!(election.lead(|t| async move { t.identity().to_owned() }).await?, "w1");
    /// # Ok(()) }
    /// ```
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether the term is over: lost, resigned, its body returned or was dropped, or its
    /// lease past the point where the body must stop (the process was paused, say) even
    /// before renewal has noticed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let over = locker.lead("job", locker.options(), |t| async move { t.is_over() }).await?;
    /// assert!(!over);
    /// # Ok(()) }
    /// ```
    pub fn is_over(&self) -> bool {
        self.ended.borrow().is_some()
            || self.ended.has_changed().is_err()
            || Instant::now() >= self.line.get()
    }

    /// Resolves once the term is over (see [`Term::is_over`]), before its key is released:
    /// with [`LockError::Lost`] when leadership was lost or the lease passed its stop point,
    /// [`LockError::Resigned`] after [`Election::resign`](super::Election::resign), or when
    /// the body returned or was dropped (it stepped down). Made for `tokio::select!` in
    /// work the body spawned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let term = locker.lead("job", locker.options(), |t| async move { t }).await?;
    /// assert!(term.lost().await.is_resigned(), "the body returned: the term is over");
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) -> LockError {
        let mut ended = self.ended.clone();
        let reason = loop {
            if let Some(reason) = ended.borrow_and_update().clone() {
                break reason;
            }
            let line = self.line.get();
            if Instant::now() >= line {
                break PAST_LINE.to_owned();
            }
            tokio::select! {
                changed = ended.changed() => {
                    if changed.is_err() {
                        // The sender is gone only once the call ended (or was dropped).
                        break ended
                            .borrow()
                            .clone()
                            .unwrap_or_else(|| STEPPED_DOWN.to_owned());
                    }
                }
                // Renewal may have moved the line meanwhile: looked at again above.
                () = tokio::time::sleep_until(line) => {}
            }
        };
        if reason == RESIGNED || reason == STEPPED_DOWN {
            LockError::Resigned {
                key: self.key.to_string(),
            }
        } else {
            LockError::Lost {
                key: self.key.to_string(),
                reason,
            }
        }
    }
}

/// The reason a term's spawned work hears when the lease passed its stop point before the
/// term ended (the process did not run for a while).
const PAST_LINE: &str = "the lease passed the point where the term must stop (the process \
                         was paused, or renewal is late)";

/// The reason a term over by [`Election::resign`](super::Election::resign) carries.
pub(super) const RESIGNED: &str = "resigned";
/// The reason a term whose body returned carries.
pub(super) const STEPPED_DOWN: &str = "stepped down: the body returned";
