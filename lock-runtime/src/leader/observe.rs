//! Who leads: [`Leader`], as the store has it now, and [`Observer`], which follows it.

use std::time::Duration;

use super::Election;
use crate::error::LockError;

/// The instance that leads a key, as the store has it now.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// let locker = locked::Locker::memory();
/// let election = locker.election("scheduler").identity("worker-1");
/// assert_eq!(election.leader().await?, None);
/// let seen = election
///     .lead(|_| async { election.leader().await })
///     .await??
///     .expect("someone leads while the body runs");
/// assert_eq!(seen.identity.as_deref(), Some("worker-1"));
/// assert!(seen.term.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The identity it published ([`Election::identity`]); `None` when the key is held
    /// by a plain lock rather than a leader.
    pub identity: Option<String>,
    /// Its term's number (the fencing token), on stores that fence.
    pub term: Option<u64>,
    /// The time left on its lease before it must renew, as the store counts it.
    pub remaining: Option<Duration>,
    /// The shown part of its owner token: tells two terms of one identity apart where
    /// the store has no term numbers (Redlock).
    holder: Option<String>,
}

impl Leader {
    /// Whether `other` is the same leader in the same term (the time left aside).
    fn same_term(&self, other: &Leader) -> bool {
        self.identity == other.identity && self.term == other.term && self.holder == other.holder
    }
}

/// Follows who leads a key: each [`Observer::changed`] waits until that changes. Made by
/// [`Election::observe`].
///
/// It reads the store every [`Observer::every`] (250 ms by default): one read per
/// interval, whatever the store.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// use std::time::Duration;
/// let locker = locked::Locker::memory();
/// let election = locker.election("scheduler");
/// let mut observer = election.observe().every(Duration::from_millis(5));
/// assert_eq!(observer.changed().await?, None, "the first call answers at once");
/// let leader = tokio::spawn({
///     let election = election.clone().identity("worker-2");
///     async move { election.lead(|_| std::future::pending::<()>()).await }
/// });
/// let now = observer.changed().await?.expect("a leader");
/// assert_eq!(now.identity.as_deref(), Some("worker-2"));
/// election.resign().await;
/// # let _ = leader.await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Observer {
    election: Election,
    every: Duration,
    seen: Option<Option<Leader>>,
}

impl Election {
    /// Who leads the key now, or `None` when no one does.
    ///
    /// # Errors
    /// [`LockError::Backend`] when the store failed; [`LockError::InvalidKey`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// assert!(locker.election("scheduler").leader().await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn leader(&self) -> Result<Option<Leader>, LockError> {
        let info = self.locker.inspect(&self.key).await?;
        Ok(info.held.then(|| Leader {
            identity: info.owner().map(str::to_owned),
            term: info.fence,
            remaining: info.remaining,
            holder: info.holder.clone(),
        }))
    }

    /// An [`Observer`] of who leads the key.
    ///
    /// ```
    /// let observer = locked::Locker::memory().election("scheduler").observe();
    /// assert!(observer.current().is_none());
    /// ```
    pub fn observe(&self) -> Observer {
        Observer {
            election: self.clone(),
            every: Duration::from_millis(250),
            seen: None,
        }
    }
}

impl Observer {
    /// How often it reads the store (250 ms by default; at least 1 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// let observer = locked::Locker::memory().election("k").observe().every(Duration::from_secs(1));
    /// # drop(observer);
    /// ```
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval.max(Duration::from_millis(1));
        self
    }

    /// The leader as last seen by [`Observer::changed`]; `None` before its first answer
    /// or when no one led.
    ///
    /// ```
    /// assert!(locked::Locker::memory().election("k").observe().current().is_none());
    /// ```
    pub fn current(&self) -> Option<&Leader> {
        self.seen.as_ref().and_then(Option::as_ref)
    }

    /// The first call answers at once with who leads now; each later one waits until
    /// that changes (another leader, another term, or no leader) and answers with the new
    /// state.
    ///
    /// # Errors
    /// [`LockError::Backend`] when a read failed (the next call goes on from the last
    /// state seen); [`LockError::InvalidKey`].
    ///
    /// # Examples
    ///
    /// See [`Observer`].
    pub async fn changed(&mut self) -> Result<Option<Leader>, LockError> {
        loop {
            let now = self.election.leader().await?;
            let same = match &self.seen {
                None => false,
                Some(None) => now.is_none(),
                Some(Some(before)) => now.as_ref().is_some_and(|n| n.same_term(before)),
            };
            if !same {
                self.seen = Some(now.clone());
                return Ok(now);
            }
            tokio::time::sleep(self.every).await;
        }
    }
}
