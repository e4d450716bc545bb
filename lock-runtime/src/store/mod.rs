//! The stores a [`Locker`](crate::Locker) can sit on, behind one internal interface.
//!
//! Every operation is atomic in its store: acquire is `SET NX PX`, and release, extend and
//! remaining compare the owner's token before they touch the key.

pub(crate) mod memory;
pub(crate) mod redis;

use std::time::Duration;

use crate::error::BoxError;

/// The outcome of one acquisition attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The lock is ours, with a fencing token when one was asked for.
    Acquired { fence: Option<u64> },
    /// Someone else holds it.
    Held,
}

/// A lock store: memory (one process) or Redis (shared).
pub(crate) enum Store {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

impl Store {
    /// What the store is, for logs and `Debug`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Store::Memory(_) => "memory".to_owned(),
            Store::Redis(s) => format!("redis({})", s.url()),
        }
    }

    pub(crate) async fn try_acquire(
        &self,
        key: &str,
        token: &str,
        ttl_ms: u64,
        fencing: bool,
    ) -> Result<Attempt, BoxError> {
        match self {
            Store::Memory(s) => Ok(s.try_acquire(key, token, ttl_ms, fencing)),
            Store::Redis(s) => s.try_acquire(key, token, ttl_ms, fencing).await,
        }
    }

    /// Deletes the key if `token` owns it; false when it did not.
    pub(crate) async fn release(&self, key: &str, token: &str) -> Result<bool, BoxError> {
        match self {
            Store::Memory(s) => Ok(s.release(key, token)),
            Store::Redis(s) => s.release(key, token).await,
        }
    }

    /// Resets the key's expiry to `ttl_ms` if `token` owns it; false when it did not.
    pub(crate) async fn extend(
        &self,
        key: &str,
        token: &str,
        ttl_ms: u64,
    ) -> Result<bool, BoxError> {
        match self {
            Store::Memory(s) => Ok(s.extend(key, token, ttl_ms)),
            Store::Redis(s) => s.extend(key, token, ttl_ms).await,
        }
    }

    /// The time left on the key if `token` owns it.
    pub(crate) async fn remaining(
        &self,
        key: &str,
        token: &str,
    ) -> Result<Option<Duration>, BoxError> {
        match self {
            Store::Memory(s) => Ok(s.remaining(key, token)),
            Store::Redis(s) => s.remaining(key, token).await,
        }
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, BoxError> {
        match self {
            Store::Memory(s) => Ok(s.exists(key)),
            Store::Redis(s) => s.exists(key).await,
        }
    }

    /// Deletes the key whoever owns it; true when there was one.
    pub(crate) async fn force_release(&self, key: &str) -> Result<bool, BoxError> {
        match self {
            Store::Memory(s) => Ok(s.force_release(key)),
            Store::Redis(s) => s.force_release(key).await,
        }
    }
}
