//! The memory store's unit tests: its answers, its sweep, and a model of one key.

use std::time::Duration;

use super::MemoryStore;
use super::state::MIN_SWEEP;
use crate::store::{Attempt, Release};

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
        let Attempt::Acquired { fence: Some(f) } = store.acquire_now(&k(), &i.to_string(), 1, true)
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
