//! The errors an acquisition ends with, besides the store's own: what the store cannot do
//! (refused before anything is sent), a key held as a kind this call cannot share, and a
//! store failure that lasted until the deadline ([`GaveUp`]).

use std::time::Duration;

use crate::core::Core;
use crate::error::{BoxError, LockError};
use crate::options::LockOptions;
use crate::store::{HeldAs, Kind, Store};

/// What the store cannot do is refused before anything is sent.
pub(super) fn refuse_unsupported(
    core: &Core,
    keys: &[String],
    key: &str,
    kind: Kind,
    opts: &LockOptions,
) -> Result<(), LockError> {
    let caps = core.store.caps();
    let store = || core.store.describe();
    if kind != Kind::Lock {
        if opts.fencing {
            return Err(LockError::config(
                "fencing",
                format!(
                    "fencing tokens are offered for exclusive locks only, and `{key}` is {}: \
                     its holders are concurrent, so no single token can fence them",
                    kind.describe()
                ),
                "drop `fencing`",
            ));
        }
        if keys.len() != 1 {
            return Err(LockError::InvalidKey {
                key: key.to_owned(),
                reason: "a semaphore or read/write lock takes exactly one key".to_owned(),
            });
        }
    }
    if opts.fencing && !caps.fencing {
        return Err(LockError::config(
            "fencing",
            format!(
                "the {} store cannot fence `{key}`: it cannot hand out tokens that strictly \
                 increase",
                store()
            ),
            "drop `fencing`, or use single Redis or a Redis Cluster for fenced locks",
        ));
    }
    if opts.replicas.is_some() && !caps.replica_sync {
        return Err(LockError::config(
            "replicas",
            format!(
                "the {} store cannot wait for replicas of `{key}`: it has no replicas",
                store()
            ),
            "drop `replicas`, or use Redis with replicas",
        ));
    }
    core.store
        .check_keys(keys)
        .map_err(|reason| LockError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
}

/// The error when `key` is held as something a call asking for `asked` cannot share it
/// with.
pub(super) fn conflict(key: &str, asked: Kind, held_as: &HeldAs) -> LockError {
    let (setting, fix) = match (held_as, asked) {
        (HeldAs::Kind(Kind::Permit { .. }), Kind::Permit { .. }) => (
            "permits",
            "every caller of one semaphore must give the same `permits`",
        ),
        _ => (
            "key",
            "use one kind of lock per key, or give the other kind its own key",
        ),
    };
    LockError::config(
        setting,
        format!(
            "`{key}` is held as {}, and this call asked for {}",
            held_as.describe(),
            asked.describe(),
        ),
        fix,
    )
}

/// A store failure that lasted until the caller's deadline: the last failure, and how long
/// the call spent trying.
#[derive(Debug)]
pub(super) struct GaveUp {
    pub(super) waited: Duration,
    pub(super) attempts: u32,
    pub(super) source: BoxError,
}

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; the call gave up after {:?} and {} attempt(s)",
            self.source, self.waited, self.attempts
        )
    }
}

impl std::error::Error for GaveUp {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}
