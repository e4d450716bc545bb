//! Waiting fast and fair: a release wakes the next waiter at once, waiters are served in
//! order, and polling recovers what no message announces (expiry).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use locked::LockOptions;
use locked_test_support::{Store, eventually, on_stores};
use tokio::time::Instant;

on_stores!(
    waiter_with_slow_polling_wakes_within_100ms_of_release,
    twenty_waiters_all_served_without_overlap,
    expired_holder_is_recovered_by_polling,
    releasing_task_cannot_starve_a_waiter,
    subscription_is_dropped_when_no_one_waits,
    multi_key_waiter_wakes_on_release_of_any_key,
);

async fn waiter_with_slow_polling_wakes_within_100ms_of_release(s: Store) {
    let holder = s
        .other()
        .acquire("wake", LockOptions::default())
        .await
        .unwrap();
    let locker = s.locker.clone();
    let opts = LockOptions::default()
        .retry_interval(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    let waiter =
        tokio::spawn(async move { locker.run("wake", opts, || async { Instant::now() }).await });
    // The waiter has failed its first try and listens for the release.
    assert_woken_within_100ms(&s, &s.full("wake"), holder, waiter).await;
}

async fn twenty_waiters_all_served_without_overlap(s: Store) {
    let holder = s
        .other()
        .acquire("crowd", LockOptions::default())
        .await
        .unwrap();
    let inside = Arc::new(AtomicU32::new(0));
    let overlaps = Arc::new(AtomicU32::new(0));
    let served = Arc::new(AtomicU32::new(0));
    let opts = LockOptions::default().timeout(Duration::from_secs(60));
    let mut tasks = Vec::new();
    for i in 0..20 {
        // Half share the test's locker, half have their own (other processes, for Redis).
        let locker = if i % 2 == 0 {
            s.locker.clone()
        } else {
            s.other()
        };
        let (inside, overlaps, served) = (inside.clone(), overlaps.clone(), served.clone());
        tasks.push(tokio::spawn(async move {
            locker
                .run("crowd", opts, || async {
                    if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    served.fetch_add(1, Ordering::SeqCst);
                })
                .await
        }));
    }
    holder.release().await.unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), 20);
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
}

async fn expired_holder_is_recovered_by_polling(s: Store) {
    let ttl = Duration::from_millis(300);
    let crashed = s
        .other()
        .acquire("crash", LockOptions::default().ttl(ttl))
        .await
        .unwrap();
    std::mem::forget(crashed); // no release, no message: only expiry frees it
    let start = Instant::now();
    // A long retry interval: the wait must be bounded by the holder's remaining ttl.
    let opts = LockOptions::default()
        .retry_interval(Duration::from_secs(5))
        .timeout(Duration::from_secs(20));
    s.locker.run("crash", opts, || async {}).await.unwrap();
    let took = start.elapsed();
    assert!(
        took < s.lapse(ttl) + Duration::from_secs(2),
        "took {took:?} to notice the expiry"
    );
}

async fn releasing_task_cannot_starve_a_waiter(s: Store) {
    let first = s
        .locker
        .acquire("hot", LockOptions::default())
        .await
        .unwrap();
    let locker = s.locker.clone();
    let hog = tokio::spawn(async move {
        // Holds the lock, releases, and asks again at once, for 2 s.
        let mut guard = Some(first);
        let end = Instant::now() + Duration::from_secs(2);
        let mut rounds = 0;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Some(g) = guard.take() {
                g.release().await.unwrap();
            }
            guard = Some(
                locker
                    .acquire(
                        "hot",
                        LockOptions::default().timeout(Duration::from_secs(10)),
                    )
                    .await
                    .unwrap(),
            );
            rounds += 1;
        }
        if let Some(g) = guard {
            g.release().await.unwrap();
        }
        rounds
    });
    let asked = Instant::now();
    let opts = LockOptions::default().timeout(Duration::from_secs(10));
    s.locker.run("hot", opts, || async {}).await.unwrap();
    let waited = asked.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "the waiter waited {waited:?} while the hog looped"
    );
    assert!(hog.await.unwrap() > 1);
}

async fn subscription_is_dropped_when_no_one_waits(s: Store) {
    let holder = s
        .other()
        .acquire("sub", LockOptions::default())
        .await
        .unwrap();
    let locker = s.locker.clone();
    let waiter =
        tokio::spawn(async move { locker.run("sub", LockOptions::default(), || async {}).await });
    assert!(
        eventually(Duration::from_secs(5), async || s
            .listeners(&s.full("sub"), 1)
            == 1)
        .await
    );
    holder.release().await.unwrap();
    waiter.await.unwrap().unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || s
            .listeners(&s.full("sub"), 0)
            == 0)
        .await
    );
}

async fn multi_key_waiter_wakes_on_release_of_any_key(s: Store) {
    let holder = s
        .other()
        .acquire("{acct}:1", LockOptions::default())
        .await
        .unwrap();
    let locker = s.locker.clone();
    let opts = LockOptions::default()
        .retry_interval(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    let waiter = tokio::spawn(async move {
        locker
            .run_all(&["{acct}:1", "{acct}:2"], opts, || async { Instant::now() })
            .await
    });
    assert_woken_within_100ms(&s, &s.full("{acct}:1"), holder, waiter).await;
}

/// Waits until `waiter` listens for releases of `key`, releases `holder`, and checks the
/// waiter got the lock (the `Instant` its body returns) within 100 ms of the release.
async fn assert_woken_within_100ms(
    s: &Store,
    key: &str,
    holder: locked::LockGuard,
    waiter: tokio::task::JoinHandle<Result<Instant, locked::LockError>>,
) {
    assert!(eventually(Duration::from_secs(5), async || s.listeners(key, 1) == 1).await);
    tokio::time::sleep(Duration::from_millis(50)).await; // not an assertion: lets the memory waiter park
    holder.release().await.unwrap();
    let released = Instant::now();
    let got = waiter.await.unwrap().unwrap();
    let after = got.saturating_duration_since(released);
    assert!(
        after < Duration::from_millis(100),
        "woke {after:?} after the release"
    );
}
