//! Shared leases in the memory store: a semaphore's permits and a read/write lock's
//! readers and writer on one key, and the intents of waiting writers.

use std::time::Duration;

use tokio::time::Instant;

use super::MemoryStore;
use super::state::tag_of;
use crate::store::{Attempt, HeldAs, Kind, Release};
use crate::time::later;

impl MemoryStore {
    /// Takes a lease of a semaphore or read/write lock (see `shared.lua` for the rules).
    pub(crate) fn acquire_shared(
        &self,
        key: &str,
        token: &str,
        kind: Kind,
        ttl_ms: u64,
        intent_ms: u64,
    ) -> Attempt {
        self.with(|s, now| {
            if s.entries.get(key).is_some_and(|e| e.expires > now) {
                return Attempt::Conflict {
                    held_as: HeldAs::Kind(Kind::Lock),
                };
            }
            if s.shared.len() >= s.sweep_at {
                s.shared.retain(|_, sh| {
                    sh.trim(now);
                    !sh.is_empty()
                });
                s.sweep_at = (s.shared.len() * 2).max(s.sweep_at);
            }
            let member = kind.member(token);
            let sh = s.shared.entry(key.to_owned()).or_default();
            sh.trim(now);
            let expires = later(now, Duration::from_millis(ttl_ms));
            if let Some(t) = sh.leases.get_mut(&member) {
                // A re-sent acquire that landed.
                *t = expires;
                return Attempt::Acquired { fence: None };
            }
            if let Some(other) = sh.leases.keys().next().map(|m| tag_of(m))
                && !kind.agrees_with(other)
            {
                return Attempt::Conflict {
                    held_as: HeldAs::from_tag(other),
                };
            }
            let free = match kind {
                Kind::Write => sh.leases.is_empty(),
                Kind::Read => sh.writers.is_empty() && !sh.leases.keys().any(|m| tag_of(m) == "w"),
                _ => sh.leases.len() < kind.limit() as usize,
            };
            if free {
                sh.writers.remove(&member);
                sh.leases.insert(member, expires);
                return Attempt::Acquired { fence: None };
            }
            if intent_ms > 0 {
                sh.writers
                    .insert(member, later(now, Duration::from_millis(intent_ms)));
            }
            Attempt::Held {
                remaining: sh.leases.values().min().map(|t| *t - now),
            }
        })
    }

    /// Ends a lease and withdraws its intent; `Released` when the lease was live.
    pub(crate) fn release_shared(&self, key: &str, member: &str) -> Release {
        self.with(|s, now| {
            let Some(sh) = s.shared.get_mut(key) else {
                return Release::Gone;
            };
            sh.trim(now);
            sh.writers.remove(member);
            let live = sh.leases.remove(member).is_some();
            if sh.is_empty() {
                s.shared.remove(key);
            }
            if live {
                Release::Released
            } else {
                Release::Gone
            }
        })
    }

    /// The live lease's expiry, after `update` changed it.
    pub(super) fn with_lease<R>(
        &self,
        key: &str,
        member: &str,
        update: impl FnOnce(&mut Instant, Instant) -> R,
    ) -> Option<R> {
        self.with(|s, now| {
            let t = s.shared.get_mut(key)?.leases.get_mut(member)?;
            (*t > now).then(|| update(t, now))
        })
    }
}
