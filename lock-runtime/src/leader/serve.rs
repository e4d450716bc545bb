//! Leading: one term ([`Election::lead`]), terms for as long as the service lives
//! ([`Election::lead_forever`]), and stepping down ([`Election::resign`]).

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::campaign::MAX_BACKOFF;
use super::campaign::resign_asked;
use super::term::{RESIGNED, STEPPED_DOWN};
use super::{Election, Term};
use crate::error::LockError;
use crate::guard::LockGuard;
use crate::meter;
use crate::renew::{self, End, StopLine};
use crate::telemetry;
use crate::time::{CALL_LIMIT, jittered};

/// What the clones of one [`Election`] share: the resignations asked for, the calls of
/// `lead` and `lead_forever` under way, and how many terms a resign has ended.
pub(super) struct Shared {
    pub(super) resign: watch::Sender<u64>,
    calls: watch::Sender<usize>,
    resigned_terms: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            resign: watch::Sender::new(0),
            calls: watch::Sender::new(0),
            resigned_terms: AtomicU64::new(0),
        }
    }
}

/// One call of `lead` or `lead_forever`, counted while it is under way (campaigning or
/// leading), so that `resign` can wait for every one of them to end.
struct Call<'a>(&'a Shared);

impl<'a> Call<'a> {
    fn start(shared: &'a Shared) -> Self {
        shared.calls.send_modify(|n| *n += 1);
        Self(shared)
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.0.calls.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One term, counted in the `locked_leader` gauge while it lasts.
struct Leading(&'static str);

impl Leading {
    fn start(label: &'static str) -> Self {
        meter::leader(label, true);
        meter::leadership(label, "gained");
        Self(label)
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        meter::leader(self.0, false);
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
        let _call = Call::start(&self.shared);
        let mut resigned = self.shared.resign.subscribe();
        let guard = self.campaign(&mut resigned, "Election::lead").await?;
        self.serve(guard, f, &mut resigned).await
    }

    /// Leads for the life of the service: campaigns, leads, and after a loss (or a body
    /// that returns [`ControlFlow::Continue`], which steps down) campaigns again, after a
    /// pause of `retry_interval` (so that a standby can take its turn; doubling, up to
    /// 10 s, while terms keep being lost early), and with backoff while the store fails.
    /// Returns when the body returns
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
        let _call = Call::start(&self.shared);
        let mut resigned = self.shared.resign.subscribe();
        let mut backoff = Backoff::new(self.opts.retry_interval);
        loop {
            let guard = self
                .campaign(&mut resigned, "Election::lead_forever")
                .await?;
            let began = tokio::time::Instant::now();
            let pause = match self.serve(guard, &mut f, &mut resigned).await {
                Ok(ControlFlow::Break(out)) => return Ok(out),
                // Stepped down: a pause before campaigning again, so that a standby
                // (woken by the release) can take its turn.
                Ok(ControlFlow::Continue(())) => backoff.first(),
                // Lost: campaign again after a pause that doubles while terms keep
                // ending early (a ttl too short for this store must not spin).
                Err(LockError::Lost { .. }) => backoff.after(began.elapsed() < self.opts.ttl),
                Err(other) => return Err(other),
            };
            tokio::select! {
                biased;
                () = resign_asked(&mut resigned) => {
                    return Err(LockError::Resigned { key: self.full_key() });
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Steps down at once: every term of this election (and its clones) in this process
    /// is stopped at its body's next `.await` and its key released, so a standby takes
    /// over without waiting for the ttl; their `lead` and `lead_forever` calls, and
    /// campaigns still waiting, return [`LockError::Resigned`]. Returns, once its terms
    /// have released the key, whether a term was running. A campaign whose try has just
    /// taken the key, before its term began, gives the key back as it stops (in the
    /// background, at once) and does not count: no term of it ever ran. Made for graceful
    /// shutdown; calls made afterwards campaign as usual.
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
        let before = self.shared.resigned_terms.load(Ordering::Acquire);
        let mut calls = self.shared.calls.subscribe();
        self.shared.resign.send_modify(|n| *n = n.wrapping_add(1));
        // Every call under way ends at its next poll, a term after releasing its key; a
        // call whose future nobody polls any more releases when it is dropped.
        let _ = tokio::time::timeout(CALL_LIMIT, calls.wait_for(|n| *n == 0)).await;
        self.shared.resigned_terms.load(Ordering::Acquire) > before
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
        let line = Arc::new(StopLine::for_guard(&guard));
        let (ended, ended_rx) = watch::channel(None);
        let term = Term {
            key: key.clone(),
            identity: self.identity.clone(),
            fence,
            ended: ended_rx,
            line: line.clone(),
        };
        let _leading = Leading::start(opts.label);
        telemetry::leading(&key, &self.identity, fence);
        let stop = async {
            resign_asked(resigned).await;
            LockError::Resigned {
                key: key.to_string(),
            }
        };
        // Told before the key is released, so that work the body spawned stops first.
        let mut event = "lost";
        let tell = |end: End<'_>| {
            let reason = match end {
                End::Returned => {
                    event = "stepped_down";
                    STEPPED_DOWN
                }
                End::Asked => {
                    event = "resigned";
                    self.shared.resigned_terms.fetch_add(1, Ordering::AcqRel);
                    RESIGNED
                }
                End::Lost(reason) => reason,
            };
            ended.send_replace(Some(reason.to_owned()));
        };
        // `f` is called inside the hold: its synchronous part too runs under the gate.
        let body = async move { f(term).await };
        let out = renew::hold_until(guard, &opts, body, stop, tell, &line).await;
        let reason = ended.borrow().clone().unwrap_or_default();
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

/// The pause before a new campaign of `lead_forever`: `retry_interval` after a term that
/// stepped down or lasted, doubling (up to [`MAX_BACKOFF`]) while terms keep being lost
/// early.
struct Backoff {
    base: Duration,
    next: Duration,
    rounds: u64,
}

impl Backoff {
    fn new(base: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Self {
            base,
            next: base,
            rounds: 0,
        }
    }

    fn first(&mut self) -> Duration {
        self.next = self.base;
        self.after(false)
    }

    fn after(&mut self, early: bool) -> Duration {
        self.rounds += 1;
        if !early {
            self.next = self.base;
        }
        let pause = jittered(self.next, self.rounds);
        if early {
            self.next = self.next.saturating_mul(2).min(MAX_BACKOFF);
        }
        pause
    }
}
