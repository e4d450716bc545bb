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
    /// Someone else holds it, for this long when the store said.
    Held { remaining: Option<Duration> },
}

/// A lock store: memory (one process) or Redis (shared). It lives once per `Locker`, in
/// an `Arc`, so the variants' size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
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

    /// Whether every call to this store ends (answer or error) within `limit` by itself.
    pub(crate) fn bounds_calls_within(&self, limit: Duration) -> bool {
        match self {
            Store::Memory(_) => true,
            Store::Redis(s) => s.bounds_calls_within(limit),
        }
    }

    /// Takes every key in `keys` for `token`, or none of them. With `waiting` (a queued
    /// waiter's try), a refusal also tells how long the holder has left (Redis pipelines a
    /// `PTTL`).
    pub(crate) async fn try_acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl_ms: u64,
        fencing: bool,
        waiting: bool,
    ) -> Result<Attempt, BoxError> {
        match self {
            Store::Memory(s) => Ok(s.try_acquire(keys, token, ttl_ms, fencing)),
            Store::Redis(s) => s.try_acquire(keys, token, ttl_ms, fencing, waiting).await,
        }
    }

    /// Deletes the keys `token` owns; false when it did not own them all.
    pub(crate) async fn release(&self, keys: &[String], token: &str) -> Result<bool, BoxError> {
        match self {
            Store::Memory(s) => Ok(s.release(keys, token)),
            Store::Redis(s) => s.release(keys, token).await,
        }
    }

    /// Resets the keys' expiry to `ttl_ms` if `token` owns them all; false otherwise.
    pub(crate) async fn extend(
        &self,
        keys: &[String],
        token: &str,
        ttl_ms: u64,
    ) -> Result<bool, BoxError> {
        match self {
            Store::Memory(s) => Ok(s.extend(keys, token, ttl_ms)),
            Store::Redis(s) => s.extend(keys, token, ttl_ms).await,
        }
    }

    /// The least time left on the keys if `token` owns them all.
    pub(crate) async fn remaining(
        &self,
        keys: &[String],
        token: &str,
    ) -> Result<Option<Duration>, BoxError> {
        match self {
            Store::Memory(s) => Ok(s.remaining(keys, token)),
            Store::Redis(s) => s.remaining(keys, token).await,
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
