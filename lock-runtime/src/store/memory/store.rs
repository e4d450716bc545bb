//! The memory store's `Store` impl: each call answered at once from the state under the
//! mutex.

use std::time::Duration;

use super::MemoryStore;
use crate::error::BoxError;
use crate::info::{LockInfo, token_prefix};
use crate::store::{Attempt, Caps, Kind, Lease, Release, Replicas, Request, Store, shared_key};
use crate::time::later;

/// ## Behavior
/// - Every call answers at once: no I/O, no timer.
/// - Fencing tokens come from one counter per store: strictly increasing per key.
/// - Releases are not announced by the store: the releasing `Locker` wakes its own waiters.
impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn product(&self) -> &'static str {
        "the memory store"
    }

    fn caps(&self) -> Caps {
        Caps {
            fencing: true,
            replica_sync: false,
            announces_releases: false,
        }
    }

    fn bounds_calls_within(&self, _limit: Duration) -> bool {
        true
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        Ok(match (req.kind, req.keys) {
            (Kind::Lock, keys) => self.acquire_now(keys, req.token, req.ttl_ms, req.fencing),
            (kind, keys) => {
                let key = shared_key(keys)?;
                self.acquire_shared(key, req.token, kind, req.ttl_ms, req.intent_ms)
            }
        })
    }

    async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        Ok(match (lease.kind, lease.keys) {
            (Kind::Lock, keys) => self.release_now(keys, lease.token),
            (kind, [key]) => self.release_shared(key, &kind.member(lease.token)),
            (_, _) => Release::Gone,
        })
    }

    async fn extend(
        &self,
        lease: Lease<'_>,
        ttl_ms: u64,
        _replicas: Option<Replicas>,
    ) -> Result<bool, BoxError> {
        Ok(match (lease.kind, lease.keys) {
            (Kind::Lock, keys) => self.extend_now(keys, lease.token, ttl_ms),
            (kind, [key]) => self
                .with_lease(key, &kind.member(lease.token), |t, now| {
                    *t = later(now, Duration::from_millis(ttl_ms));
                })
                .is_some(),
            (_, _) => false,
        })
    }

    async fn remaining(&self, lease: Lease<'_>) -> Result<Option<Duration>, BoxError> {
        Ok(match (lease.kind, lease.keys) {
            (Kind::Lock, keys) => self.remaining_now(keys, lease.token),
            (kind, [key]) => self.with_lease(key, &kind.member(lease.token), |t, now| *t - now),
            (_, _) => None,
        })
    }

    async fn holders(&self, key: &str) -> Result<u64, BoxError> {
        Ok(self.holders_now(key))
    }

    async fn force_release(&self, key: &str) -> Result<bool, BoxError> {
        Ok(self.force_release_now(key))
    }

    async fn inspect(&self, key: &str) -> Result<LockInfo, BoxError> {
        Ok(self.with(|s, now| match s.entries.get(key) {
            Some(e) if e.expires > now => LockInfo {
                held: true,
                remaining: Some(e.expires - now),
                holder: Some(token_prefix(&e.token)),
                fence: e.fence,
                ..LockInfo::free(key)
            },
            _ => match s.shared.get(key).and_then(|sh| sh.leases.values().max()) {
                Some(last) if *last > now => LockInfo {
                    held: true,
                    remaining: Some(*last - now),
                    ..LockInfo::free(key)
                },
                _ => LockInfo::free(key),
            },
        }))
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, BoxError> {
        let pattern = glob::Pattern::new(pattern)?;
        Ok(self.with(|s, now| {
            let locks = s.entries.iter().filter(|(_, e)| e.expires > now);
            let shared = s
                .shared
                .iter()
                .filter(|(_, sh)| sh.leases.values().any(|t| *t > now));
            let mut keys: Vec<String> = locks
                .map(|(k, _)| k)
                .chain(shared.map(|(k, _)| k))
                .filter(|k| pattern.matches(k))
                .cloned()
                .collect();
            keys.sort_unstable();
            keys
        }))
    }
}
