//! The store type and its `Store` impl over the operations in `ops`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use super::conn::Conn;
use super::endpoints::Endpoints;
use super::feed::Feed;
use super::leases::{Leases, secs};
use super::ops;
use crate::error::BoxError;
use crate::info::{LockInfo, token_prefix};
use crate::store::{
    Attempt, Caps, Kind, Lease, Release, Replicas, Request, Store, WakeTarget, shared_key,
};

/// The least time between a waiter's tries when nothing woke it.
const POLL_FLOOR: Duration = Duration::from_secs(1);

/// The etcd store (see the module doc).
pub(crate) struct EtcdStore {
    conn: Arc<Conn>,
    leases: Leases,
    feed: Arc<Feed>,
}

impl EtcdStore {
    /// The store on checked endpoints (no I/O).
    pub(super) fn open(endpoints: Endpoints) -> Self {
        let feed = Arc::new(Feed::new(endpoints.hosts()));
        Self {
            conn: Arc::new(Conn::new(endpoints)),
            leases: Leases::default(),
            feed,
        }
    }
}

impl Store for EtcdStore {
    fn describe(&self) -> String {
        format!("etcd({})", self.conn.endpoints.hosts())
    }

    fn product(&self) -> &'static str {
        "etcd"
    }

    fn caps(&self) -> Caps {
        Caps {
            fencing: true,
            replica_sync: false,
            // Every `Locker` on the cluster watches the keys its waiters wait for.
            announces_releases: true,
        }
    }

    fn validity(&self, ttl: Duration) -> Duration {
        // etcd's leases are whole seconds, rounded up (a server minimum only lengthens it).
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Duration::from_secs(u64::try_from(secs(ms)).unwrap_or(u64::MAX))
    }

    fn queues_waiters(&self) -> bool {
        true
    }

    fn poll_interval(&self, retry_interval: Duration) -> Duration {
        // The watch reports every release, expiry, and place withdrawn or taken (a broken
        // watch wakes everyone once remade), and every try of a queued head is a write
        // through the raft log: polling is a slow fallback, which also renews the place.
        retry_interval.max(POLL_FLOOR)
    }

    fn bounds_calls_within(&self, _limit: Duration) -> bool {
        false
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        // Only the head of a `Locker`'s queue takes a place in etcd's: a caller queued
        // behind it in the process (which does not try) must not hold a place older than
        // the head's, or the head would wait for it.
        let queue_ms = if req.waiting { req.intent_ms } else { 0 };
        if req.kind == Kind::Lock {
            let out = ops::acquire(
                &self.conn,
                &self.leases,
                req.keys,
                req.token,
                req.ttl_ms,
                queue_ms,
            )
            .await?;
            return Ok(match out {
                Attempt::Acquired { fence } => Attempt::Acquired {
                    fence: fence.filter(|_| req.fencing),
                },
                other => other,
            });
        }
        let key = shared_key(req.keys)?;
        let out = ops::acquire_shared(
            &self.conn,
            &self.leases,
            key,
            req.token,
            req.kind,
            req.ttl_ms,
            queue_ms,
        )
        .await?;
        Ok(match out {
            Attempt::Acquired { fence } => Attempt::Acquired {
                fence: fence.filter(|_| req.fencing),
            },
            other => other,
        })
    }

    async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        ops::release(
            &self.conn,
            &self.leases,
            lease.keys,
            lease.token,
            lease.kind,
        )
        .await
    }

    async fn extend(
        &self,
        lease: Lease<'_>,
        ttl_ms: u64,
        _replicas: Option<Replicas>,
    ) -> Result<bool, BoxError> {
        ops::extend(
            &self.conn,
            &self.leases,
            lease.keys,
            lease.token,
            lease.kind,
            ttl_ms,
        )
        .await
    }

    async fn remaining(&self, lease: Lease<'_>) -> Result<Option<Duration>, BoxError> {
        ops::remaining(
            &self.conn,
            &self.leases,
            lease.keys,
            lease.token,
            lease.kind,
        )
        .await
    }

    async fn holders(&self, key: &str) -> Result<u64, BoxError> {
        ops::holders(&self.conn, key).await
    }

    async fn force_release(&self, key: &str) -> Result<bool, BoxError> {
        ops::force_release(&self.conn, key).await
    }

    async fn inspect(&self, key: &str) -> Result<LockInfo, BoxError> {
        let seen = ops::inspect(&self.conn, key).await?;
        Ok(LockInfo {
            held: seen.held,
            remaining: seen.left,
            holder: seen.token.as_deref().map(token_prefix),
            fence: seen.fence,
            // Every process's waiters are in the queue; this one's may not be yet.
            waiters: seen.queued.max(self.feed.waiters(key)),
            ..LockInfo::free(key)
        })
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, BoxError> {
        ops::scan(&self.conn, pattern).await
    }

    fn attach(&self, target: Weak<dyn WakeTarget>) {
        self.feed.attach(target);
    }

    fn watch(&self, key: &str) -> Option<oneshot::Receiver<()>> {
        self.feed.watch(&self.conn, key)
    }

    fn unwatch(&self, key: &str) {
        self.feed.unwatch(key);
    }
}
