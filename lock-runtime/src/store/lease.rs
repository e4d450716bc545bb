//! The words the engine and the stores share: a lease (borrowed and owned), a request to
//! take one, and what came of taking or releasing it.

use std::time::Duration;

use super::kind::{HeldAs, Kind};
use crate::error::BoxError;

/// One holder's lease on its keys: what release, extend and remaining act on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease<'a> {
    /// Every key, sorted and deduplicated (one, except for `Kind::Lock`).
    pub(crate) keys: &'a [String],
    pub(crate) token: &'a str,
    pub(crate) kind: Kind,
}

/// The one key of a semaphore's or read/write lock's lease (`keys` of a [`Lease`] or a
/// [`Request`]): the rule lives here, and the engine refuses anything else before a store
/// sees it.
pub(crate) fn shared_key(keys: &[String]) -> Result<&String, BoxError> {
    match keys {
        [key] => Ok(key),
        _ => Err("a semaphore or read/write lease is on exactly one key".into()),
    }
}

/// A lease owned: what a guard, a background release or a detached try keeps of a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnedLease {
    /// Every key, sorted and deduplicated (one, except for `Kind::Lock`).
    pub(crate) keys: Vec<String>,
    pub(crate) token: String,
    pub(crate) kind: Kind,
}

impl OwnedLease {
    /// The lease, borrowed, as the store takes it.
    pub(crate) fn lease(&self) -> Lease<'_> {
        Lease {
            keys: &self.keys,
            token: &self.token,
            kind: self.kind,
        }
    }
}

/// The outcome of one acquisition attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The lock is ours, with a fencing token when one was asked for.
    Acquired { fence: Option<u64> },
    /// Someone else holds it, for this long when the store said.
    Held { remaining: Option<Duration> },
    /// The key is held as something this request cannot share it with (a lock asked of a
    /// semaphore, or another permit count).
    Conflict { held_as: HeldAs },
}

/// The outcome of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// The keys were ours and are deleted.
    Released,
    /// The keys are gone already: expired, force-released, or deleted by an earlier send
    /// of this same release that the client re-sent.
    Gone,
    /// Some key is held by another token; it was left alone.
    Foreign,
}

/// Wait for `count` replicas to acknowledge a write, at most `within` (Redis `WAIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replicas {
    pub(crate) count: u32,
    pub(crate) within: Duration,
}

/// One acquisition attempt, as the engine asks it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// Every key, sorted and deduplicated.
    pub(crate) keys: &'a [String],
    pub(crate) token: &'a str,
    pub(crate) ttl_ms: u64,
    pub(crate) fencing: bool,
    /// A queued waiter's try: a refusal should say how long the holder has left.
    pub(crate) waiting: bool,
    pub(crate) replicas: Option<Replicas>,
    pub(crate) kind: Kind,
    /// A writer that will wait: when refused, it registers its intent for this long, so
    /// that new readers queue behind it (0: no intent, e.g. try mode). On a store that
    /// [queues waiters](super::Store::queues_waiters), any waiting call's place in the
    /// store's queue, for this long after each try.
    pub(crate) intent_ms: u64,
}

impl<'a> Request<'a> {
    /// The lease this request asks for.
    pub(crate) fn lease(&self) -> Lease<'a> {
        Lease {
            keys: self.keys,
            token: self.token,
            kind: self.kind,
        }
    }
}
