//! The seam itself: [`Store`], which every store implements, what a store can do
//! ([`Caps`]), and whom its wake-up feed wakes ([`WakeTarget`]).

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::oneshot;

use super::lease::{Attempt, Lease, Release, Replicas, Request};
use crate::error::BoxError;
use crate::info::LockInfo;

/// What a store can do; the engine refuses what it cannot before sending anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// Fencing tokens that strictly increase per key.
    pub(crate) fencing: bool,
    /// Writes can wait for replicas (`WAIT`).
    pub(crate) replica_sync: bool,
    /// The store announces releases to every `Locker` by itself (pub/sub). Without it, the
    /// releasing `Locker` wakes its own waiters.
    pub(crate) announces_releases: bool,
}

/// Whom a wake-up feed wakes: the per-key queues of one `Locker`.
pub(crate) trait WakeTarget: Send + Sync {
    /// A release of `key` was announced.
    fn wake(&self, key: &str);
    /// Announcements may have been missed (a reconnect): every waiter should try again.
    fn wake_all(&self);
}

/// One lock store. Implemented by every store and by [`AnyStore`](super::AnyStore), which delegates to the
/// one a `Locker` was built with (static dispatch: no boxed future per call).
pub(crate) trait Store: Send + Sync + 'static {
    /// What the store is, for logs, `Debug` and errors (no credentials).
    fn describe(&self) -> String;

    /// What an operator checks when it fails, as a reader knows it: `Redis`, `PostgreSQL`
    /// (a [`LockError::Backend`](crate::LockError::Backend) says "check that {this} is
    /// reachable").
    fn product(&self) -> &'static str;

    /// What the store can do.
    fn caps(&self) -> Caps;

    /// How long a lock granted (or extended) for `ttl` stays valid, counted from when its
    /// request was sent, so the time the request took is already taken off. A store
    /// whose nodes' clocks may drift apart (Redlock) answers less than `ttl`. Renewal and
    /// loss detection use this figure, never the raw ttl. By default `ttl`: one clock
    /// counts it from when the request arrived, after the send.
    fn validity(&self, ttl: Duration) -> Duration {
        ttl
    }

    /// Whether every call ends (answer or error) within `limit` by itself, so the engine
    /// can skip its own timer.
    fn bounds_calls_within(&self, limit: Duration) -> bool;

    /// Whether waiters keep their place in a queue in the store itself (etcd): a waiting
    /// call's tries then carry [`Request::intent_ms`] whatever their kind (how long a
    /// place lasts without a try), and a call that gives up without the lock releases its
    /// token, which withdraws its place. By default no: waiters of different `Locker`s
    /// race for a freed key.
    fn queues_waiters(&self) -> bool {
        false
    }

    /// How often a waiter tries again when nothing woke it, for a caller's
    /// `retry_interval`: by default that. A store whose feed reports every release,
    /// expiry and change of turn (etcd's watch) polls less, as a fallback only.
    fn poll_interval(&self, retry_interval: Duration) -> Duration {
        retry_interval
    }

    /// Whether `keys` can be taken together; the error says why not and how to fix it.
    /// By default any keys can.
    fn check_keys(&self, _keys: &[String]) -> Result<(), String> {
        Ok(())
    }

    /// Takes every key for the token, or none of them. Idempotent: a re-sent attempt that
    /// finds the keys already held by the same token reports them acquired.
    fn try_acquire(
        &self,
        req: &Request<'_>,
    ) -> impl Future<Output = Result<Attempt, BoxError>> + Send;

    /// Ends the lease (and a waiting writer's intent), and announces the release.
    fn release(&self, lease: Lease<'_>) -> impl Future<Output = Result<Release, BoxError>> + Send;

    /// Resets the lease's expiry to `ttl_ms` if it is still held; false otherwise.
    fn extend(
        &self,
        lease: Lease<'_>,
        ttl_ms: u64,
        replicas: Option<Replicas>,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// The least time left on the lease if it is still held.
    fn remaining(
        &self,
        lease: Lease<'_>,
    ) -> impl Future<Output = Result<Option<Duration>, BoxError>> + Send;

    /// Whether anyone holds `key` now: by default, whether it has holders.
    fn exists(&self, key: &str) -> impl Future<Output = Result<bool, BoxError>> + Send {
        async move { Ok(self.holders(key).await? > 0) }
    }

    /// How many leases `key` has now (0 or 1 for a lock; on Redlock, the most any
    /// master counts, so `permits - holders` never overstates what is free).
    fn holders(&self, key: &str) -> impl Future<Output = Result<u64, BoxError>> + Send;

    /// Deletes the key whoever owns it and announces it; true when there was one.
    fn force_release(&self, key: &str) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// What the store has of `key` now, for operators.
    fn inspect(&self, key: &str) -> impl Future<Output = Result<LockInfo, BoxError>> + Send;

    /// The stored lock keys matching a Redis glob `pattern` (companions left out), found
    /// with `SCAN`, never `KEYS` (on a Cluster, on every master).
    fn scan(&self, pattern: &str) -> impl Future<Output = Result<Vec<String>, BoxError>> + Send;

    /// Connects the store's wake-up feed to the `Locker`'s queues (once, at build). A
    /// store without a feed (see [`Caps::announces_releases`]) has nothing to connect.
    fn attach(&self, _target: Weak<dyn WakeTarget>) {}

    /// Starts listening for releases of `key` (counted: every `watch` is paired with an
    /// `unwatch`). Returns a receiver that resolves once the subscription is in place,
    /// when this call started it.
    fn watch(&self, _key: &str) -> Option<oneshot::Receiver<()>> {
        None
    }

    /// Stops one `watch` of `key`; the subscription ends with the last one.
    fn unwatch(&self, _key: &str) {}
}
