//! The runtime API, as a user calls it, on every store of the list: every check runs once
//! per store (memory, a `redis-server` of its own, the shared Cluster, three Redlock
//! masters, PostgreSQL).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use locked::{LockError, LockOptions};
use locked_test_support::{Backend, Store, eventually, on_stores};
use tokio::time::Instant;

on_stores!(
    run_free_lock_returns_body_value_and_releases,
    try_run_held_lock_returns_none_at_once,
    run_held_lock_times_out_with_contract_message,
    run_panicking_body_releases_lock,
    run_dropped_caller_releases_lock,
    run_concurrent_callers_never_overlap,
    release_with_foreign_token_keeps_lock,
    guard_expired_lock_frees_itself,
    guard_extend_and_remaining_follow_the_store,
    force_release_deletes_any_holder,
    run_invalid_key_is_rejected_before_store,
    acquire_dropped_guard_releases_in_background,
    extreme_durations_never_panic,
    acquisitions_dropped_at_random_points_leave_no_lock,
    replicas_are_waited_for_refused_or_missing_clearly,
    inspect_and_list_show_what_the_store_holds,
);

async fn run_free_lock_returns_body_value_and_releases(s: Store) {
    let locker = &s.locker;
    let out = locker
        .run("my-task", locker.options(), || async {
            assert!(locker.is_locked("my-task").await.unwrap());
            7
        })
        .await
        .unwrap();
    assert_eq!(out, 7);
    assert!(!locker.is_locked("my-task").await.unwrap());
}

async fn try_run_held_lock_returns_none_at_once(s: Store) {
    let holder = s
        .other()
        .acquire("cron:daily-report", LockOptions::default())
        .await
        .unwrap();
    let start = Instant::now();
    let ran = s
        .locker
        .try_run("cron:daily-report", LockOptions::default(), || async {
            unreachable!("ran while held")
        })
        .await
        .unwrap();
    assert_eq!(ran, None::<()>);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "try mode waited {:?}",
        start.elapsed()
    );
    assert!(
        s.locker
            .try_acquire("cron:daily-report", LockOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    holder.release().await.unwrap();
    assert_eq!(
        s.locker
            .try_run("cron:daily-report", LockOptions::default(), || async { 1 })
            .await
            .unwrap(),
        Some(1)
    );
}

async fn run_held_lock_times_out_with_contract_message(s: Store) {
    let _holder = s
        .other()
        .acquire("payment:123", LockOptions::default())
        .await
        .unwrap();
    let opts = LockOptions::default()
        .timeout(Duration::from_millis(300))
        .retry_interval(Duration::from_millis(20));
    let start = Instant::now();
    let err = s
        .locker
        .run("payment:123", opts, || async {
            unreachable!("ran while held")
        })
        .await
        .unwrap_err();
    let waited = start.elapsed();
    let msg = err.to_string();
    assert!(err.is_timeout(), "{err:?}");
    assert!(msg.contains("Unable to acquire lock"), "{msg}");
    assert!(msg.contains(&s.full("payment:123")), "{msg}");
    assert!(
        waited >= Duration::from_millis(300),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

async fn run_panicking_body_releases_lock(s: Store) {
    let locker = s.locker.clone();
    let task = tokio::spawn(async move {
        locker
            .run("panicky", LockOptions::default(), || async {
                panic!("body failed")
            })
            .await
    });
    assert!(task.await.unwrap_err().is_panic());
    let locker = &s.locker;
    assert!(
        eventually(Duration::from_secs(5), async || !locker
            .is_locked("panicky")
            .await
            .unwrap())
        .await,
        "the lock outlived its panicking body"
    );
}

async fn run_dropped_caller_releases_lock(s: Store) {
    let locker = &s.locker;
    let entered = Arc::new(tokio::sync::Notify::new());
    let e = entered.clone();
    let call = locker.run("long-job", LockOptions::default(), || async move {
        e.notify_one();
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    tokio::select! {
        _ = call => unreachable!("the body sleeps for an hour"),
        _ = entered.notified() => {}
    }
    // `call` is dropped here, mid-body.
    assert!(
        eventually(Duration::from_secs(5), async || !locker
            .is_locked("long-job")
            .await
            .unwrap())
        .await,
        "the lock outlived its cancelled caller"
    );
}

async fn run_concurrent_callers_never_overlap(s: Store) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 15;
    let counter = Arc::new(AtomicUsize::new(0));
    let holders = Arc::new(AtomicUsize::new(0));
    let max_holders = Arc::new(AtomicUsize::new(0));
    let opts = LockOptions::default()
        .timeout(Duration::from_secs(60))
        .retry_interval(Duration::from_millis(5));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let locker = s.other();
        let (counter, holders, max_holders) =
            (counter.clone(), holders.clone(), max_holders.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                locker
                    .run("counter", opts, || async {
                        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        max_holders.fetch_max(now, Ordering::SeqCst);
                        // A non-atomic read-await-write: loses updates unless excluded.
                        let read = counter.load(Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        counter.store(read + 1, Ordering::SeqCst);
                        holders.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        counter.load(Ordering::SeqCst),
        TASKS * ROUNDS,
        "an update was lost"
    );
    assert_eq!(max_holders.load(Ordering::SeqCst), 1);
}

async fn release_with_foreign_token_keeps_lock(s: Store) {
    let short = LockOptions::default().ttl(Duration::from_millis(100));
    let stale = s.locker.acquire("order:9", short).await.unwrap();
    let other = s.other();
    let fresh = loop {
        // The stale guard's lock expires; another holder takes it.
        if let Some(g) = other
            .try_acquire("order:9", LockOptions::default())
            .await
            .unwrap()
        {
            break g;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        stale
            .extend(Duration::from_secs(60))
            .await
            .unwrap_err()
            .is_lost()
    );
    assert!(stale.release().await.unwrap_err().is_lost());
    assert!(
        s.locker.is_locked("order:9").await.unwrap(),
        "a stale holder released the new holder's lock"
    );
    fresh.release().await.unwrap();
    assert!(!s.locker.is_locked("order:9").await.unwrap());
}

async fn guard_expired_lock_frees_itself(s: Store) {
    let guard = s
        .locker
        .acquire(
            "crashed",
            LockOptions::default().ttl(Duration::from_millis(150)),
        )
        .await
        .unwrap();
    std::mem::forget(guard); // a crashed holder never releases
    let locker = &s.locker;
    assert!(
        eventually(Duration::from_secs(5), async || !locker
            .is_locked("crashed")
            .await
            .unwrap())
        .await
    );
}

async fn guard_extend_and_remaining_follow_the_store(s: Store) {
    let guard = s
        .locker
        .acquire(
            "extend-me",
            LockOptions::default().ttl(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    let left = guard.remaining().await.unwrap();
    assert!(
        left <= Duration::from_secs(2) && left > Duration::from_millis(500),
        "{left:?}"
    );
    guard.extend(Duration::from_secs(60)).await.unwrap();
    let left = guard.remaining().await.unwrap();
    assert!(left > Duration::from_secs(30), "{left:?}");
    guard.release().await.unwrap();
}

async fn force_release_deletes_any_holder(s: Store) {
    let guard = s
        .other()
        .acquire("stuck-task", LockOptions::default())
        .await
        .unwrap();
    assert!(s.locker.is_locked("stuck-task").await.unwrap());
    assert!(s.locker.force_release("stuck-task").await.unwrap());
    assert!(!s.locker.is_locked("stuck-task").await.unwrap());
    assert!(!s.locker.force_release("stuck-task").await.unwrap());
    assert!(guard.release().await.unwrap_err().is_lost());
}

async fn run_invalid_key_is_rejected_before_store(s: Store) {
    let err = s
        .locker
        .run("", LockOptions::default(), || async { unreachable!() })
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::InvalidKey { .. }), "{err:?}");
    let long = "k".repeat(2000);
    let err = s
        .locker
        .run(&long, LockOptions::default(), || async { unreachable!() })
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::InvalidKey { .. }), "{err:?}");
    assert!(err.to_string().contains("1024-byte limit"), "{err}");
}

async fn acquire_dropped_guard_releases_in_background(s: Store) {
    {
        let _guard = s
            .locker
            .acquire("scoped", LockOptions::default())
            .await
            .unwrap();
        assert!(s.locker.is_locked("scoped").await.unwrap());
    }
    let locker = &s.locker;
    assert!(
        eventually(Duration::from_secs(5), async || !locker
            .is_locked("scoped")
            .await
            .unwrap())
        .await
    );
}

async fn extreme_durations_never_panic(s: Store) {
    let huge = LockOptions::default()
        .ttl(Duration::from_secs(3600))
        .timeout(Duration::MAX)
        .retry_interval(Duration::MAX)
        .max_hold(Duration::MAX);
    assert_eq!(s.locker.run("huge", huge, || async { 1 }).await.unwrap(), 1);
    let max_ttl = LockOptions::default()
        .ttl(Duration::MAX)
        .timeout(Duration::ZERO);
    // Memory takes it; Redis refuses a PX that large: either way, no panic and no body
    // run without its lock.
    match s.locker.run("max-ttl", max_ttl, || async { 2 }).await {
        Ok(v) => assert_eq!(v, 2),
        Err(e) => assert!(e.is_backend(), "{e:?}"),
    }
    let held = s
        .other()
        .acquire("busy", LockOptions::default())
        .await
        .unwrap();
    let zero = LockOptions::default()
        .timeout(Duration::ZERO)
        .retry_interval(Duration::ZERO);
    assert!(
        s.locker
            .run("busy", zero, || async {})
            .await
            .unwrap_err()
            .is_timeout()
    );
    held.release().await.unwrap();
}

/// Repro of issue 9's report: an `acquire` dropped after its `SET` reached the store but
/// before the answer came back left the lock held for its whole ttl. 1,000 acquisitions
/// under timeouts of 0-400 µs, 50 at a time, on 20 keys with a 60 s ttl: once the
/// background releases have run, no key may remain.
async fn acquisitions_dropped_at_random_points_leave_no_lock(s: Store) {
    let opts = LockOptions::default()
        .ttl(Duration::from_secs(60))
        .timeout(Duration::from_secs(2));
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..50u64 {
        let locker = if t % 2 == 0 {
            s.locker.clone()
        } else {
            s.other()
        };
        let dropped = dropped.clone();
        tasks.push(tokio::spawn(async move {
            // splitmix64, seeded per task: the same points on every run.
            let mut seed = t.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut next = move || {
                seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = seed;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            };
            for _ in 0..20 {
                let key = format!("dropped:{}", next() % 20);
                let limit = Duration::from_micros(next() % 400);
                match tokio::time::timeout(limit, locker.acquire(&key, opts)).await {
                    Ok(guard) => drop(guard), // released in the background
                    Err(_) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let locker = &s.locker;
    let all_free = eventually(Duration::from_secs(10), async || {
        for k in 0..20 {
            if locker.is_locked(&format!("dropped:{k}")).await.unwrap() {
                return false;
            }
        }
        true
    })
    .await;
    let dropped = dropped.load(Ordering::Relaxed);
    assert!(
        all_free,
        "a dropped acquisition left a lock behind ({dropped} dropped)"
    );
    if !matches!(s.backend, Backend::Memory) {
        assert!(
            dropped > 0,
            "no acquisition was dropped in flight: the test tests nothing"
        );
    }
}

/// `replicas(1, ..)`: a Cluster (one replica per master) waits for it and holds; one Redis
/// without replicas fails with the replica count and leaves no lock; stores without
/// replicas at all (memory, Redlock) refuse it before sending anything.
async fn replicas_are_waited_for_refused_or_missing_clearly(s: Store) {
    let opts = LockOptions::default()
        .replicas(1, Duration::from_millis(100))
        .timeout(Duration::from_millis(500));
    let out = s.locker.acquire("durable", opts).await;
    match &s.backend {
        Backend::Cluster(_) => out.unwrap().release().await.unwrap(),
        Backend::Redis(_) => {
            let err = out.unwrap_err();
            assert!(err.is_backend(), "{err:?}");
            assert!(err.to_string().contains("0 of 1 replica"), "{err}");
        }
        Backend::Memory | Backend::Redlock(_) => {
            let err = out.unwrap_err();
            assert!(matches!(err, LockError::Config { .. }), "{err:?}");
            assert!(err.to_string().contains("replicas"), "{err}");
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres(..) => {
            let err = out.unwrap_err();
            assert!(matches!(err, LockError::Config { .. }), "{err:?}");
            assert!(err.to_string().contains("replicas"), "{err}");
        }
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(..) => {
            let err = out.unwrap_err();
            assert!(matches!(err, LockError::Config { .. }), "{err:?}");
            assert!(err.to_string().contains("replicas"), "{err}");
        }
        #[cfg(feature = "mysql")]
        Backend::Mysql(..) => {
            let err = out.unwrap_err();
            assert!(matches!(err, LockError::Config { .. }), "{err:?}");
            assert!(err.to_string().contains("replicas"), "{err}");
        }
        #[cfg(feature = "etcd")]
        Backend::Etcd(..) => {
            let err = out.unwrap_err();
            assert!(matches!(err, LockError::Config { .. }), "{err:?}");
            assert!(err.to_string().contains("replicas"), "{err}");
        }
    }
    let locker = &s.locker;
    assert!(
        eventually(Duration::from_secs(5), async || !locker
            .is_locked("durable")
            .await
            .unwrap())
        .await,
        "a lock was left behind"
    );
}

/// What an operator sees: `list` finds the held keys by pattern (SCAN; on a Cluster, on
/// every master), `inspect` shows the holder, the time left, the fence and the waiters.
async fn inspect_and_list_show_what_the_store_holds(s: Store) {
    let ttl = Duration::from_secs(30);
    let opts = LockOptions::default().ttl(ttl).fencing(s.fences());
    let mut guards = Vec::new();
    for i in 0..6 {
        guards.push(
            s.locker
                .acquire(&format!("report:{i}"), opts)
                .await
                .unwrap(),
        );
    }
    let _other = s.locker.acquire("cron:daily", opts).await.unwrap();
    let listed = s.locker.list("report:*").await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|i| i.key.as_str()).collect();
    let expected: Vec<String> = (0..6).map(|i| s.full(&format!("report:{i}"))).collect();
    assert_eq!(keys, expected);
    for info in &listed {
        assert!(info.held);
        assert!(
            info.remaining.is_some_and(|r| r <= ttl && r > ttl / 2),
            "{info:?}"
        );
        assert_eq!(info.holder.as_ref().map(String::len), Some(8), "{info:?}");
        // Every store with fencing reports it, the memory store too (it keeps each
        // holder's token since leaders are observed by theirs).
        assert_eq!(info.fence.is_some(), s.fences(), "{info:?}");
    }
    assert!(!s.locker.inspect("report:none").await.unwrap().held);
    if let Backend::Redlock(_) = s.backend {
        let info = s.locker.inspect("report:0").await.unwrap();
        assert_eq!(info.masters.len(), 3);
        assert!(info.masters.iter().all(|m| m.held), "{info:?}");
    }
    // A waiter listens for the release (on Redis stores, where it can be seen).
    let waiter = {
        let locker = s.other();
        tokio::spawn(async move {
            let opts = LockOptions::default().timeout(Duration::from_secs(20));
            locker.run("report:0", opts, || async {}).await
        })
    };
    if !matches!(s.backend, Backend::Memory) {
        let locker = &s.locker;
        assert!(
            eventually(Duration::from_secs(5), async || locker
                .inspect("report:0")
                .await
                .unwrap()
                .waiters
                >= 1)
            .await,
            "the waiter is not seen"
        );
    }
    for guard in guards {
        guard.release().await.unwrap();
    }
    waiter.await.unwrap().unwrap();
}
