//! Leading: one term ([`Election::lead`]), terms for as long as the service lives
//! ([`Election::lead_forever`]), and stepping down ([`Election::resign`]).

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;

use tokio::sync::watch;

use super::campaign::resign_asked;
use super::term::{RESIGNED, STEPPED_DOWN};
use super::{Election, Term};
use crate::error::LockError;
use crate::guard::LockGuard;
use crate::meter;
use crate::renew;
use crate::telemetry;
use crate::time::{CALL_LIMIT, jittered};

/// What the clones of one [`Election`] share: the resignations asked for, and how many
/// terms they lead now.
pub(super) struct Shared {
    pub(super) resign: watch::Sender<u64>,
    leading: watch::Sender<usize>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            resign: watch::Sender::new(0),
            leading: watch::Sender::new(0),
        }
    }
}

/// One term counted while it lasts: the `leading` count and the `locked_leader` gauge.
struct Leading<'a> {
    shared: &'a Shared,
    label: &'static str,
}

impl<'a> Leading<'a> {
    fn start(shared: &'a Shared, label: &'static str) -> Self {
        shared.leading.send_modify(|n| *n += 1);
        meter::leader(label, true);
        meter::leadership(label, "gained");
        Self { shared, label }
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        meter::leader(self.label, false);
        self.shared
            .leading
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Election {
    /// Waits until this instance leads, then runs `f` for as long as it leads, and steps
    /// down (releases the key) when `f` returns.
    ///
    /// If leadership is lost while `f` runs, `f` is stopped at its next `.await` and the
    /// call returns [`LockError::Lost`], a tenth of the ttl before another instance can
    /// lead, exactly as [`Locker::run`](crate::Locker::run) does; after
    /// [`Election::resign`], it returns [`LockError::Resigned`].
    ///
    /// # Errors
    /// [`LockError::Lost`]; [`LockError::Resigned`]; [`LockError::Timeout`] when
    /// [`Election::timeout`] passed first; [`LockError::Backend`] when the store failed
    /// until that timeout; [`LockError::Config`] for a bad identity or an option the
    /// store refuses; [`LockError::InvalidKey`]; [`LockError::Nested`] when this task
    /// already holds the key.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let election = locker.election("nightly-report");
    /// let term = election.lead(|term| async move { term.fencing_token() }).await?;
    /// assert!(term.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn lead<F, Fut, T>(&self, f: F) -> Result<T, LockError>
    where
        F: FnOnce(Term) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut resigned = self.shared.resign.subscribe();
        let guard = self.campaign(&mut resigned, "Election::lead").await?;
        self.serve(guard, f, &mut resigned).await
    }

    /// Leads for the life of the service: campaigns, leads, and after a loss (or a body
    /// that returns [`ControlFlow::Continue`], which steps down) campaigns again, pausing
    /// with backoff while the store fails. Returns when the body returns
    /// [`ControlFlow::Break`], after [`Election::resign`] (with [`LockError::Resigned`]),
    /// or on an error that retrying cannot mend; drop the future to stop it.
    ///
    /// # Errors
    /// [`LockError::Resigned`]; [`LockError::Timeout`] when [`Election::timeout`] passed in
    /// one campaign; [`LockError::Config`], [`LockError::InvalidKey`],
    /// [`LockError::Nested`]. A loss is not an error here: it starts a new campaign.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// use std::ops::ControlFlow;
    /// let locker = locked::Locker::memory();
    /// let mut terms = 0;
    /// let last = locker
    ///     .election("outbox-relay")
    ///     .lead_forever(|term| {
    ///         terms += 1;
    ///         let done = terms == 3;
    ///         async move {
    ///             // Relay a batch; stepping down lets another instance take a turn.
    ///             if done { ControlFlow::Break(term.fencing_token()) } else { ControlFlow::Continue(()) }
    ///         }
    ///     })
    ///     .await?;
    /// assert_eq!(terms, 3);
    /// assert!(last.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn lead_forever<F, Fut, T>(&self, mut f: F) -> Result<T, LockError>
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = ControlFlow<T>>,
    {
        let mut resigned = self.shared.resign.subscribe();
        let mut losses = 0u64;
        loop {
            let guard = self
                .campaign(&mut resigned, "Election::lead_forever")
                .await?;
            match self.serve(guard, &mut f, &mut resigned).await {
                Ok(ControlFlow::Break(out)) => return Ok(out),
                Ok(ControlFlow::Continue(())) => {}
                Err(LockError::Lost { .. }) => {
                    // A pause before campaigning again, so that a ttl too short for this
                    // store does not spin.
                    losses += 1;
                    let pause = jittered(self.opts.retry_interval, losses);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = resign_asked(&mut resigned) => {
                            return Err(LockError::Resigned { key: self.full_key() });
                        }
                    }
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Steps down at once: every term of this election (and its clones) in this process
    /// is stopped at its body's next `.await` and its key released, so a standby takes
    /// over without waiting for the ttl; their `lead` and `lead_forever` calls, and
    /// campaigns still waiting, return [`LockError::Resigned`]. Returns whether this
    /// process was leading, once the key is released. Made for graceful shutdown; calls
    /// made afterwards campaign as usual.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// use std::time::Duration;
    /// let locker = locked::Locker::memory();
    /// let election = locker.election("scheduler");
    /// let leader = tokio::spawn({
    ///     let election = election.clone();
    ///     async move { election.lead(|_| std::future::pending::<()>()).await }
    /// });
    /// while !locker.is_locked("scheduler").await? {
    ///     tokio::time::sleep(Duration::from_millis(1)).await;
    /// }
    /// assert!(election.resign().await);
    /// assert!(leader.await.unwrap().unwrap_err().is_resigned());
    /// assert!(!locker.is_locked("scheduler").await?, "released at once, not after the ttl");
    /// # Ok(()) }
    /// ```
    pub async fn resign(&self) -> bool {
        let mut leading = self.shared.leading.subscribe();
        let was = *leading.borrow_and_update() > 0;
        self.shared.resign.send_modify(|n| *n = n.wrapping_add(1));
        // The terms end at their next poll, and release before they count down; a term
        // whose future nobody polls any more is released when it is dropped.
        let _ = tokio::time::timeout(CALL_LIMIT, leading.wait_for(|n| *n == 0)).await;
        was
    }

    /// One term: runs `f` while `guard` holds the key, then releases it.
    pub(super) async fn serve<F, Fut, T>(
        &self,
        guard: LockGuard,
        f: F,
        resigned: &mut watch::Receiver<u64>,
    ) -> Result<T, LockError>
    where
        F: FnOnce(Term) -> Fut,
        Fut: Future<Output = T>,
    {
        let opts = *guard.options();
        let key: Arc<str> = guard.key().into();
        let fence = guard.fencing_token();
        let (ended, ended_rx) = watch::channel(None);
        let term = Term {
            key: key.clone(),
            identity: self.identity.clone(),
            fence,
            ended: ended_rx,
        };
        let _leading = Leading::start(&self.shared, opts.label);
        telemetry::leading(&key, &self.identity, fence);
        let stop = async {
            resign_asked(resigned).await;
            LockError::Resigned {
                key: key.to_string(),
            }
        };
        let tell = |reason: &str| {
            ended.send_replace(Some(reason.to_owned()));
        };
        let out = renew::hold_until(guard, &opts, f(term), stop, tell).await;
        let (event, reason) = match &out {
            Ok(_) => ("stepped_down", STEPPED_DOWN.to_owned()),
            Err(LockError::Resigned { .. }) => ("resigned", RESIGNED.to_owned()),
            Err(LockError::Lost { reason, .. }) => ("lost", reason.clone()),
            Err(other) => ("lost", other.to_string()),
        };
        if ended.borrow().is_none() {
            ended.send_replace(Some(reason.clone()));
        }
        meter::leadership(opts.label, event);
        telemetry::not_leading(&key, &self.identity, fence, event, &reason);
        out
    }

    /// The key as stored, or the key as given when it is invalid (the error says so
    /// elsewhere).
    pub(super) fn full_key(&self) -> String {
        self.locker
            .full_key(&self.key)
            .unwrap_or_else(|_| self.key.clone())
    }
}
