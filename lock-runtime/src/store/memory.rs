//! `MemoryStore`: locks in this process only, for tests, examples and single-process apps.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Attempt, Caps, HeldAs, Kind, Lease, Release, Replicas, Request, Store, shared_key};
use crate::error::BoxError;
use crate::info::{LockInfo, token_prefix};
use crate::time::later;

struct Entry {
    token: String,
    expires: Instant,
}

/// A key held by leases (a semaphore's permits, a read/write lock's readers or writer).
#[derive(Default)]
struct Shared {
    /// Each lease (`tag:token`) and when it lapses.
    leases: HashMap<String, Instant>,
    /// The writers waiting, and when each one's intent lapses.
    writers: HashMap<String, Instant>,
}

impl Shared {
    fn trim(&mut self, now: Instant) {
        self.leases.retain(|_, t| *t > now);
        self.writers.retain(|_, t| *t > now);
    }

    fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.writers.is_empty()
    }
}

/// The tag of a lease's name (`s3` of `s3:token`).
fn tag_of(member: &str) -> &str {
    member.split(':').next().unwrap_or(member)
}

struct State {
    entries: HashMap<String, Entry>,
    shared: HashMap<String, Shared>,
    /// One counter for every key: strictly increasing per key, and no memory per key.
    fence: u64,
    /// Expired entries are swept when the map grows past this.
    sweep_at: usize,
}

/// Locks held in a map in this process. Time is tokio's, so paused test time drives expiry.
pub(crate) struct MemoryStore {
    state: Mutex<State>,
}

/// The registry's entry: `LOCK_STORE=memory`, and the store when nothing is set.
pub(crate) const ENTRY: super::registry::Entry = super::registry::Entry {
    name: "memory",
    help: "in this process only (tests, development): locks are not shared",
    schemes: &[],
    url_vars: &[],
    other_vars: &[],
    url_example: "",
    feature: None,
    implied: super::registry::Implied::Fallback,
    open_from_env: Some(|_, _| Ok(MemoryStore::new().into())),
};

const MIN_SWEEP: usize = 64;

impl MemoryStore {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                entries: HashMap::new(),
                shared: HashMap::new(),
                fence: 0,
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State, Instant) -> R) -> R {
        // A panic while the lock was held cannot leave the map half-written (every
        // mutation is one insert or remove), so a poisoned mutex is safe to reuse.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state, Instant::now())
    }

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
            for key in keys {
                s.entries.insert(
                    key.clone(),
                    Entry {
                        token: token.to_owned(),
                        expires,
                    },
                );
            }
            let fence = fencing.then(|| {
                s.fence += 1;
                s.fence
            });
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
    fn with_lease<R>(
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

    /// How many live leases `key` has (1 for a held lock).
    pub(crate) fn holders_now(&self, key: &str) -> u64 {
        self.with(|s, now| {
            let lock = s.entries.get(key).is_some_and(|e| e.expires > now);
            let leases = s
                .shared
                .get(key)
                .map_or(0, |sh| sh.leases.values().filter(|t| **t > now).count());
            u64::from(lock) + leases as u64
        })
    }

    pub(crate) fn exists_now(&self, key: &str) -> bool {
        self.holders_now(key) > 0
    }

    pub(crate) fn force_release_now(&self, key: &str) -> bool {
        let held = self.exists_now(key);
        self.with(|s, _| {
            s.entries.remove(key);
            if let Some(sh) = s.shared.get_mut(key) {
                sh.leases.clear();
                if sh.is_empty() {
                    s.shared.remove(key);
                }
            }
        });
        held
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn k() -> [String; 1] {
        ["k".to_owned()]
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_several_keys_is_all_or_nothing() {
        let store = MemoryStore::new();
        let ab = ["a".to_owned(), "b".to_owned()];
        let bc = ["b".to_owned(), "c".to_owned()];
        assert!(matches!(
            store.acquire_now(&ab, "t1", 1000, false),
            Attempt::Acquired { .. }
        ));
        assert!(matches!(
            store.acquire_now(&bc, "t2", 1000, false),
            Attempt::Held { .. }
        ));
        assert!(
            !store.exists_now("c"),
            "a refused multi-key acquire must take nothing"
        );
        assert_eq!(store.release_now(&ab, "t1"), Release::Released);
        assert!(matches!(
            store.acquire_now(&bc, "t2", 1000, false),
            Attempt::Acquired { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_held_key_is_refused_until_expiry() {
        let store = MemoryStore::new();
        assert_eq!(
            store.acquire_now(&k(), "a", 100, false),
            Attempt::Acquired { fence: None }
        );
        assert!(matches!(
            store.acquire_now(&k(), "b", 100, false),
            Attempt::Held { .. }
        ));
        tokio::time::advance(Duration::from_millis(101)).await;
        assert_eq!(
            store.acquire_now(&k(), "b", 100, false),
            Attempt::Acquired { fence: None }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn release_with_foreign_token_keeps_lock() {
        let store = MemoryStore::new();
        store.acquire_now(&k(), "a", 1000, false);
        assert_eq!(store.release_now(&k(), "b"), Release::Foreign);
        assert!(!store.extend_now(&k(), "b", 5000));
        assert!(store.exists_now("k"));
        assert_eq!(store.release_now(&k(), "a"), Release::Released);
        assert!(!store.exists_now("k"));
    }

    #[tokio::test(start_paused = true)]
    async fn extend_keeps_lock_past_first_ttl() {
        let store = MemoryStore::new();
        store.acquire_now(&k(), "a", 100, false);
        tokio::time::advance(Duration::from_millis(80)).await;
        assert!(store.extend_now(&k(), "a", 100));
        tokio::time::advance(Duration::from_millis(80)).await;
        assert!(store.exists_now("k"));
        assert_eq!(
            store.remaining_now(&k(), "a"),
            Some(Duration::from_millis(20))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fencing_tokens_strictly_increase() {
        let store = MemoryStore::new();
        let mut last = 0;
        for i in 0..100 {
            let Attempt::Acquired { fence: Some(f) } =
                store.acquire_now(&k(), &i.to_string(), 1, true)
            else {
                panic!("not acquired")
            };
            assert!(f > last);
            last = f;
            tokio::time::advance(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_removes_expired_one_off_keys() {
        let store = MemoryStore::new();
        for i in 0..1000 {
            store.acquire_now(&[format!("k{i}")], "t", 1, false);
            tokio::time::advance(Duration::from_millis(2)).await;
        }
        let len = store.with(|s, _| s.entries.len());
        assert!(len <= MIN_SWEEP, "{len} entries kept");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire(usize, u64),
        Release(usize),
        Extend(usize, u64),
        Advance(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0..3usize, 1..50u64).prop_map(|(t, ttl)| Op::Acquire(t, ttl)),
            (0..3usize).prop_map(Op::Release),
            (0..3usize, 1..50u64).prop_map(|(t, ttl)| Op::Extend(t, ttl)),
            (0..60u64).prop_map(Op::Advance),
        ]
    }

    proptest::proptest! {
        /// The store against a model: at most one holder, and a token that does not hold
        /// the lock changes nothing.
        #[test]
        fn memory_store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let store = MemoryStore::new();
                let tokens = ["t0", "t1", "t2"];
                // The model: (holder, expiry in ms since start).
                let mut model: Option<(usize, u64)> = None;
                let mut now = 0u64;
                for op in ops {
                    let live = model.filter(|(_, exp)| *exp > now);
                    match op {
                        Op::Acquire(t, ttl) => {
                            let got = matches!(store.acquire_now(&k(), tokens[t], ttl, false), Attempt::Acquired { .. });
                            // Free, or already ours (a re-sent acquire): taken.
                            let free = live.is_none_or(|(h, _)| h == t);
                            assert_eq!(got, free, "acquire by {t} with {live:?}");
                            if got {
                                model = Some((t, now + ttl));
                            }
                        }
                        Op::Release(t) => {
                            let released = store.release_now(&k(), tokens[t]) == Release::Released;
                            let owner = live.is_some_and(|(h, _)| h == t);
                            assert_eq!(released, owner, "release by {t} with {live:?}");
                            if model.is_some_and(|(h, _)| h == t) {
                                model = None;
                            }
                        }
                        Op::Extend(t, ttl) => {
                            let extended = store.extend_now(&k(), tokens[t], ttl);
                            let owner = live.is_some_and(|(h, _)| h == t);
                            assert_eq!(extended, owner, "extend by {t} with {live:?}");
                            if owner {
                                model = Some((t, now + ttl));
                            }
                        }
                        Op::Advance(ms) => {
                            tokio::time::advance(Duration::from_millis(ms)).await;
                            now += ms;
                        }
                    }
                    let live = model.filter(|(_, exp)| *exp > now).is_some();
                    assert_eq!(store.exists_now("k"), live);
                }
            });
        }
    }
}
