//! The acquisition engine: checks a request against what the store can do, tries at once
//! when no one of this `Locker` waits, and otherwise queues fairly, woken by releases and
//! polling, until the deadline.
//!
//! - Here: the engine (`lock`): a call's tries (`Ask`), the queue it waits in, and
//!   one try against the store.
//! - `guards`: what a dropped call leaves in order (a writer's intent, a request still
//!   out, the waiting gauge, a release channel).
//! - `errors`: the refusals before anything is sent, the conflict of kinds, and the
//!   error of a store failure that lasted until the deadline.

mod errors;
mod guards;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::context::HoldContext;
use crate::core::Core;
use crate::error::{LockError, StoreError};
use crate::guard::LockGuard;
use crate::meter;
use crate::options::LockOptions;
use crate::store::{Attempt, Kind, OwnedLease, Request, Store};
use crate::telemetry;
use crate::time::CALL_LIMIT;
use crate::time::jittered;
use crate::time::{duration_ms, later, stop_before};
use crate::token::owned_token;
use crate::wait::Lane;
use errors::{GaveUp, conflict, refuse_unsupported};
use guards::{InFlight, Intent, Waiting, Watching};

/// How a call takes its hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Retry until `opts.timeout`.
    Wait,
    /// One try: busy is an answer.
    Try,
}

/// Which try of a call this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// The only try of try mode: bounded by the call limit, no intent registered.
    Once,
    /// A waiting call's first try, before it queues.
    First,
    /// The head of the queue's try: a refusal should say how long the holder has left.
    Queued,
}

/// How one try went. The guard is moved out at once, so its size costs nothing; a box
/// would cost an allocation per acquisition.
#[allow(clippy::large_enum_variant)]
enum Tried {
    Taken(LockGuard),
    /// Held by someone else, for this long when the store said.
    Held(Option<Duration>),
    Failed(LockError),
}

/// Takes `kind` of every key (sorted, deduplicated, prefixed): at once, or retrying until
/// `opts.timeout`.
pub(crate) async fn lock(
    core: &Arc<Core>,
    keys: Vec<String>,
    kind: Kind,
    opts: &LockOptions,
    mode: Mode,
    site: &'static str,
) -> Result<LockGuard, LockError> {
    lock_as(core, keys, kind, opts, mode, site, None).await
}

/// [`lock`], with the holder's published identity (a leader's name) in its token, where
/// [`LockInfo::owner`](crate::LockInfo::owner) shows it.
pub(crate) async fn lock_as(
    core: &Arc<Core>,
    keys: Vec<String>,
    kind: Kind,
    opts: &LockOptions,
    mode: Mode,
    site: &'static str,
    owner: Option<&str>,
) -> Result<LockGuard, LockError> {
    let key = keys.join(", ");
    if let Some(held) = keys.iter().find(|k| HoldContext::holds(k)) {
        return Err(LockError::Nested { key: held.clone() });
    }
    refuse_unsupported(core, &keys, &key, kind, opts)?;
    let name = match mode {
        Mode::Wait => "wait",
        Mode::Try => "try",
    };
    let span = telemetry::lock_span(&key, name, opts.ttl, opts.timeout, site);
    let start = Instant::now();
    let result = lock_in(core, keys, key, kind, opts, mode, span.clone(), owner)
        .instrument(span)
        .await;
    meter::acquire(opts.label, meter::outcome(&result), start.elapsed());
    result
}

#[allow(clippy::too_many_arguments)]
async fn lock_in(
    core: &Arc<Core>,
    keys: Vec<String>,
    key: String,
    kind: Kind,
    opts: &LockOptions,
    mode: Mode,
    span: tracing::Span,
    owner: Option<&str>,
) -> Result<LockGuard, LockError> {
    let held = OwnedLease {
        keys,
        token: owned_token(&key, owner)?,
        kind,
    };
    // A writer that waits registers its intent, which keeps new readers out (on a store
    // that queues waiters, any waiter takes a place); if it gives up (or is dropped)
    // without the lock, the intent is withdrawn at once.
    let registers = kind == Kind::Write || core.store.queues_waiters();
    let intent = (registers && mode == Mode::Wait).then(|| Intent {
        core,
        withdraw: Some(held.clone()),
    });
    let start = Instant::now();
    let mut ask = Ask {
        core,
        held,
        key,
        opts,
        start,
        deadline: later(start, opts.timeout),
        attempts: 0,
        span,
        intent,
        owner,
    };
    let waits = &core.waits;
    // Uncontended (no one of this locker waits for the key): try at once. Otherwise
    // queue behind the earlier waiters, so that a task that just released cannot take
    // the lock again ahead of them. A store failure is retried until the deadline (the
    // client reconnects meanwhile); only try mode reports it at once.
    let mut failure = None;
    if mode == Mode::Try || !ask.held.keys.iter().any(|k| waits.has_waiters(k)) {
        let round = match mode {
            Mode::Try => Round::Once,
            Mode::Wait => Round::First,
        };
        match ask.attempt(round).await {
            Tried::Taken(guard) => return Ok(guard),
            Tried::Held(_) if mode == Mode::Try => {
                telemetry::busy(opts.logging, &ask.key);
                return Err(LockError::Busy { key: ask.key });
            }
            Tried::Failed(e) if mode == Mode::Try || e.is_config() => return Err(e),
            Tried::Held(_) => {}
            Tried::Failed(e) => failure = Some(e),
        }
    }
    // The contended path lives in its own boxed future, so that the uncontended one
    // stays small (it is moved through a few layers on every call).
    Box::pin(ask.wait_in_queue(failure)).await
}

/// One call's attempts to take its lock.
struct Ask<'a> {
    core: &'a Arc<Core>,
    /// The keys, this call's token and the kind of hold it asks for.
    held: OwnedLease,
    key: String,
    opts: &'a LockOptions,
    start: Instant,
    deadline: Instant,
    attempts: u32,
    span: tracing::Span,
    /// A waiting writer's intent, withdrawn when the call gives up (drops it).
    intent: Option<Intent<'a>>,
    /// The identity every token of this call carries, if any.
    owner: Option<&'a str>,
}

impl Ask<'_> {
    /// Queues for the key, and as the head of the queue tries on every release (and on
    /// each poll) until the deadline. Several keys: no queue (a place in several queues
    /// could deadlock), but woken by a release of any of them.
    async fn wait_in_queue(mut self, failure: Option<LockError>) -> Result<LockGuard, LockError> {
        let ask = &mut self;
        let opts = ask.opts;
        let core = ask.core;
        telemetry::waiting(opts.logging, &ask.key);
        let _waiting = Waiting::new(opts.label);
        let keys = ask.held.keys.clone();
        let lane = match ask.held.kind {
            Kind::Read => Lane::Shared,
            _ => Lane::Exclusive,
        };
        let tickets: Vec<_> = keys.iter().map(|k| core.waits.join(k, lane)).collect();
        // Listen for releases from the moment of joining, so that the subscription lives
        // while anyone of this locker waits, not from one head to the next.
        let mut subscribed = Vec::new();
        let mut _watching = Vec::with_capacity(keys.len());
        for key in &keys {
            subscribed.extend(core.store.watch(key));
            _watching.push(Watching { core, key });
        }
        let _head = match tickets.as_slice() {
            [one] => {
                let queue = one.queue.clone();
                match tokio::time::timeout_at(ask.deadline, queue.acquire_owned()).await {
                    Ok(Ok(permit)) => Some(permit),
                    _ => {
                        // Behind a head whose store calls fail, time ran out because the
                        // store failed, not because a holder kept the lock: say so.
                        let ahead = one.noted().map(|cause| {
                            let cause =
                                format!("for the caller ahead in this process's queue: {cause}");
                            LockError::backend(
                                &ask.key,
                                StoreError::wrap(core.store.product(), cause.into()),
                            )
                        });
                        return Err(ask.timed_out(failure.or(ahead)));
                    }
                }
            }
            _ => None,
        };
        // Head of the queue: once the subscription this waiter started is in place, try
        // before every sleep.
        let limit = ask.deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(limit, futures_util::future::join_all(subscribed)).await;
        loop {
            // Registered before the try, so a release during it is not missed.
            let mut released: Vec<_> = tickets
                .iter()
                .map(|t| Box::pin(t.notify.notified()))
                .collect();
            for notified in &mut released {
                notified.as_mut().enable();
            }
            let (remaining, failure) = match ask.attempt(Round::Queued).await {
                Tried::Taken(guard) => return Ok(guard),
                Tried::Failed(e) if e.is_config() => return Err(e),
                Tried::Held(remaining) => (remaining, None),
                Tried::Failed(e) => (None, Some(e)),
            };
            let cause = failure.as_ref().and_then(LockError::backend_cause);
            for ticket in &tickets {
                ticket.note(cause.clone());
            }
            let now = Instant::now();
            if now >= ask.deadline {
                return Err(ask.timed_out(failure));
            }
            // Polling is the fallback (expiry, a lost message): every retry_interval, and
            // no later than the holder's ttl runs out. The jitter's seed differs per
            // waiter (its random token) and per try.
            let seed =
                u64::from_str_radix(ask.held.token.get(..16).unwrap_or("0"), 16).unwrap_or(0);
            let mut pause = jittered(
                core.store
                    .poll_interval(opts.retry_interval)
                    .max(Duration::from_millis(1)),
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

    /// One try: `Ok(Ok(guard))` taken, `Ok(Err(remaining))` held by someone else.
    async fn attempt(&mut self, round: Round) -> Tried {
        self.attempts += 1;
        let sent = Instant::now();
        let limit = if round == Round::Once {
            CALL_LIMIT
        } else {
            // A try that waits for replicas gets their bound, even past the deadline, so
            // its failure says what the replicas did rather than that time ran out.
            let replicas = self.opts.replicas.map_or(Duration::ZERO, |r| r.within);
            self.deadline
                .saturating_duration_since(sent)
                .max(Duration::from_millis(50))
                .max(replicas.saturating_add(CALL_LIMIT / 5))
        };
        let core = self.core;
        let kind = self.held.kind;
        let request = Request {
            keys: &self.held.keys,
            token: &self.held.token,
            ttl_ms: self.opts.ttl_ms(),
            fencing: self.opts.fencing,
            waiting: round == Round::Queued,
            replicas: self.opts.replicas,
            kind,
            intent_ms: if self.intent.is_some() && round != Round::Once {
                // Renewed by every try of the waiting writer; a writer that crashed
                // while waiting keeps readers out no longer than a holder's ttl.
                let polls = core.store.poll_interval(self.opts.retry_interval);
                self.opts.ttl_ms().max(duration_ms(polls).saturating_mul(3))
            } else {
                0
            },
        };
        // Dropped while the request is out (a caller's timeout, a cancelled task), the
        // lock may be set without anyone to hold it: this frees it in the background.
        let in_flight = InFlight {
            core,
            held: &self.held,
        };
        let outcome = core
            .call(&self.key, limit, core.store.try_acquire(&request))
            .await;
        std::mem::forget(in_flight);
        match outcome {
            Ok(Attempt::Acquired { fence }) => {
                let valid_until = later(sent, core.store.validity(self.opts.ttl));
                if Instant::now() >= stop_before(valid_until, self.opts.ttl) {
                    // The answer came so late (held up in the network, or after a pause)
                    // that the lock would lapse, or has, before its holder could use it:
                    // someone else may hold it already. Give it back and try again.
                    let late = format!(
                        "{} answered after {:?}, too late for a ttl of {:?}, so the lock \
                         was given back unused; give the ttl a margin over the store's \
                         response time",
                        core.store.describe(),
                        sent.elapsed(),
                        self.opts.ttl,
                    );
                    let late = StoreError::wrap(core.store.product(), late.into());
                    return self.failed(LockError::backend(&self.key, late));
                }
                Intent::fulfilled(self.intent.take());
                telemetry::acquired(
                    self.opts.logging,
                    &self.key,
                    sent - self.start,
                    self.attempts,
                    fence,
                );
                let held = OwnedLease {
                    keys: std::mem::take(&mut self.held.keys),
                    token: std::mem::take(&mut self.held.token),
                    kind,
                };
                Tried::Taken(LockGuard::new(
                    core.clone(),
                    held,
                    std::mem::take(&mut self.key),
                    fence,
                    sent,
                    valid_until,
                    *self.opts,
                    self.span.clone(),
                ))
            }
            Ok(Attempt::Held { remaining }) => Tried::Held(remaining),
            Ok(Attempt::Conflict { held_as }) => {
                Tried::Failed(conflict(&self.key, self.held.kind, &held_as))
            }
            Err(e) => self.failed(e),
        }
    }

    /// A try that failed, or whose answer came too late to use.
    fn failed(&mut self, e: LockError) -> Tried {
        // The SET may have landed although its answer did not: free it, in the
        // background, so a lost reply costs no one a whole ttl.
        self.core.release_in_background(None, self.held.clone());
        // That release (or, on PostgreSQL, the try itself, which runs on after its
        // caller) may land after the next try: the next try must not be ours to delete.
        // A fresh token per try after a failure (issue 16).
        let fresh = match owned_token(&self.key, self.owner) {
            Ok(token) => token,
            Err(no_token) => return Tried::Failed(no_token),
        };
        if let Some(held) = self.intent.as_mut().and_then(|i| i.withdraw.as_mut()) {
            held.token.clone_from(&fresh);
        }
        self.held.token = fresh;
        Tried::Failed(e)
    }

    /// The error when the deadline passes: the store's, if the last try failed (with how
    /// long the call waited and tried), else Timeout.
    fn timed_out(&self, failure: Option<LockError>) -> LockError {
        match failure {
            Some(LockError::Backend { key, source }) => LockError::Backend {
                key,
                source: Box::new(GaveUp {
                    waited: self.start.elapsed(),
                    attempts: self.attempts,
                    source,
                }),
            },
            Some(other) => other,
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
