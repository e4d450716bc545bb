//! Exclusive locks in the memory store: one token takes every key or none, and only that
//! token releases or extends them.

use std::time::Duration;

use tokio::time::Instant;

use super::MemoryStore;
use super::state::{Entry, MIN_SWEEP, State, tag_of};
use crate::store::{Attempt, HeldAs, Release};
use crate::time::later;

impl MemoryStore {
    /// Takes every key or none: all are checked and set under one mutex.
    pub(crate) fn acquire_now(
        &self,
        keys: &[String],
        token: &str,
        ttl_ms: u64,
        fencing: bool,
    ) -> Attempt {
        self.with(|s, now| {
            let shared = keys.iter().find_map(|k| {
                let sh = s.shared.get(k)?;
                let member = sh.leases.iter().find(|(_, t)| **t > now)?.0;
                Some(HeldAs::from_tag(tag_of(member)))
            });
            if let Some(held_as) = shared {
                return Attempt::Conflict { held_as };
            }
            let held = keys
                .iter()
                .filter_map(|k| s.entries.get(k))
                .filter(|e| e.expires > now && e.token != token)
                .map(|e| e.expires - now)
                .max();
            if let Some(left) = held {
                return Attempt::Held {
                    remaining: Some(left),
                };
            }
            if s.entries.len() >= s.sweep_at {
                s.entries.retain(|_, e| e.expires > now);
                s.sweep_at = (s.entries.len() * 2).max(MIN_SWEEP);
            }
            let expires = later(now, Duration::from_millis(ttl_ms));
            let fence = fencing.then(|| {
                s.fence += 1;
                s.fence
            });
            for key in keys {
                s.entries.insert(
                    key.clone(),
                    Entry {
                        token: token.to_owned(),
                        expires,
                        fence,
                    },
                );
            }
            Attempt::Acquired { fence }
        })
    }

    /// Deletes the keys `token` owns: `Released` when it owned them all, unexpired.
    pub(crate) fn release_now(&self, keys: &[String], token: &str) -> Release {
        self.with(|s, now| {
            let mut outcome = Release::Released;
            for key in keys {
                match s.entries.get(key) {
                    Some(e) if e.token == token => {
                        if e.expires <= now && outcome == Release::Released {
                            outcome = Release::Gone;
                        }
                        s.entries.remove(key);
                    }
                    Some(e) if e.expires > now => outcome = Release::Foreign,
                    _ if outcome == Release::Released => outcome = Release::Gone,
                    _ => {}
                }
            }
            outcome
        })
    }

    fn owns_all(s: &State, keys: &[String], token: &str, now: Instant) -> bool {
        keys.iter().all(|k| {
            s.entries
                .get(k)
                .is_some_and(|e| e.token == token && e.expires > now)
        })
    }

    pub(crate) fn extend_now(&self, keys: &[String], token: &str, ttl_ms: u64) -> bool {
        self.with(|s, now| {
            if !Self::owns_all(s, keys, token, now) {
                return false;
            }
            for key in keys {
                if let Some(e) = s.entries.get_mut(key) {
                    e.expires = later(now, Duration::from_millis(ttl_ms));
                }
            }
            true
        })
    }

    pub(crate) fn remaining_now(&self, keys: &[String], token: &str) -> Option<Duration> {
        self.with(|s, now| {
            if !Self::owns_all(s, keys, token, now) {
                return None;
            }
            keys.iter()
                .filter_map(|k| s.entries.get(k))
                .map(|e| e.expires - now)
                .min()
        })
    }
}
