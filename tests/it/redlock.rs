//! What only Redlock can show: the format on each master, a minority of masters down (it
//! keeps working) and a majority down (a clear error, no body, nothing left behind). Every
//! other promise runs on three masters through the store list of the behaviour tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use locked::{LockError, LockOptions};
use locked_test_support::{RedisServer, eventually, redlock_locker};
use tokio::time::Instant;

fn masters() -> Vec<RedisServer> {
    (0..3).map(|_| RedisServer::start()).collect()
}

fn get(server: &RedisServer, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut server.client())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_master_holds_the_token_in_the_single_server_format() {
    let masters = masters();
    let locker = redlock_locker(&masters);
    let guard = locker
        .acquire("order:1", LockOptions::default())
        .await
        .unwrap();
    // A quorum answered before `acquire` returned; the last master's `SET` lands in the
    // background.
    assert!(
        eventually(Duration::from_secs(5), async || masters
            .iter()
            .all(|m| get(m, "lock:order:1").is_some()))
        .await
    );
    let tokens: Vec<Option<String>> = masters.iter().map(|m| get(m, "lock:order:1")).collect();
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "one token: {tokens:?}"
    );
    for m in &masters {
        let pttl: i64 = redis::cmd("PTTL")
            .arg("lock:order:1")
            .query(&mut m.client())
            .unwrap();
        assert!(pttl > 0 && pttl <= 30_000, "PTTL {pttl}");
    }
    guard.release().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || masters
            .iter()
            .all(|m| get(m, "lock:order:1").is_none()))
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_down_still_acquires_and_serialises() {
    let mut masters = masters();
    masters[2].stop();
    let inside = Arc::new(AtomicU32::new(0));
    let overlaps = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let locker = redlock_locker(&masters);
        let (inside, overlaps) = (inside.clone(), overlaps.clone());
        tasks.push(tokio::spawn(async move {
            let opts = LockOptions::default().timeout(Duration::from_secs(30));
            for _ in 0..5 {
                locker
                    .run("minority", opts, || async {
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_down_fails_clearly_runs_no_body_and_leaves_nothing() {
    let mut masters = masters();
    masters[1].stop();
    masters[2].stop();
    let locker = redlock_locker(&masters);
    let ran = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let opts = LockOptions::default().timeout(Duration::from_secs(1));
    let err = locker
        .run("majority", opts, || async {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap_err();
    let took = start.elapsed();
    let msg = err.to_string();
    assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
    assert!(
        msg.contains("only 1 of 3 redlock masters answered"),
        "{msg}"
    );
    assert!(msg.contains("quorum is 2"), "{msg}");
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a body ran without its lock");
    // Retried at `retry_interval` (100 ms), not in a loop that hammers the live master
    // (undoing a failed try must not announce a release that wakes the caller itself).
    let attempts: u32 = msg
        .split(" attempt")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(attempts < 40, "{attempts} attempts in 1 s: {msg}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    // No partial lock on the live master: the failed tries were undone.
    assert!(
        eventually(Duration::from_secs(5), async || get(
            &masters[0],
            "lock:majority"
        )
        .is_none())
        .await,
        "a partial lock was left on the live master"
    );
    println!("majority down: failed in {took:?}: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_at_construction() {
    let cases: [(&[&str], &str); 4] = [
        (&[], "empty"),
        (
            &["redis://127.0.0.1:1", "nope://x", "redis://127.0.0.1:3"],
            "not a Redis URL",
        ),
        (
            &[
                "redis://127.0.0.1:1",
                "redis://127.0.0.1:1",
                "redis://127.0.0.1:3",
            ],
            "twice",
        ),
        (
            &["redis://127.0.0.1:1", "redis://127.0.0.1:2"],
            "odd number",
        ),
    ];
    for (urls, says) in cases {
        let err = locked::Locker::redlock(urls).unwrap_err();
        assert!(matches!(err, LockError::Config { .. }), "{err:?}");
        assert!(err.to_string().contains(says), "{urls:?}: {err}");
    }
}
