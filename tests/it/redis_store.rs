//! What only a real Redis shows: the stored format, an unreachable or restarted server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use locked::{LockOptions, Locker};
use locked_test_support::{RedisServer, free_port};
use tokio::time::Instant;

#[tokio::test]
async fn run_stores_token_with_px_ttl_under_prefixed_key() {
    let server = RedisServer::start();
    let locker = server.locker();
    let opts = LockOptions::default().ttl(Duration::from_secs(30));
    let resource = locked::resource_key("order", 123);
    let (token, pttl, keys) = locker
        .run(&resource, opts, || async {
            let mut c = server.client();
            let token: String = redis::cmd("GET")
                .arg("lock:order:123")
                .query(&mut c)
                .unwrap();
            let pttl: i64 = redis::cmd("PTTL")
                .arg("lock:order:123")
                .query(&mut c)
                .unwrap();
            let keys: Vec<String> = redis::cmd("KEYS").arg("lock:*").query(&mut c).unwrap();
            (token, pttl, keys)
        })
        .await
        .unwrap();
    assert_eq!(token.len(), 32, "token {token:?}");
    assert!(
        token.bytes().all(|b| b.is_ascii_hexdigit()),
        "token {token:?}"
    );
    assert!(pttl > 25_000 && pttl <= 30_000, "PTTL {pttl}");
    assert_eq!(keys, ["lock:order:123"]);
    let mut c = server.client();
    let gone: Option<String> = redis::cmd("GET")
        .arg("lock:order:123")
        .query(&mut c)
        .unwrap();
    assert_eq!(gone, None);

    locker
        .run("my-task", opts, || async {
            let mut c = server.client();
            let exists: i64 = redis::cmd("EXISTS")
                .arg("lock:my-task")
                .query(&mut c)
                .unwrap();
            assert_eq!(exists, 1);
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn acquire_tokens_differ_per_acquisition() {
    let server = RedisServer::start();
    let locker = server.locker();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let guard = locker.acquire("t", LockOptions::default()).await.unwrap();
        let token: String = redis::cmd("GET")
            .arg("lock:t")
            .query(&mut server.client())
            .unwrap();
        assert!(seen.insert(token), "a token was reused");
        guard.release().await.unwrap();
    }
}

#[tokio::test]
async fn release_key_overwritten_by_foreign_token_is_left_alone() {
    let server = RedisServer::start();
    let locker = server.locker();
    let guard = locker
        .acquire("shared", LockOptions::default())
        .await
        .unwrap();
    let mut c = server.client();
    let _: () = redis::cmd("SET")
        .arg("lock:shared")
        .arg("someone-else")
        .query(&mut c)
        .unwrap();
    assert!(
        guard
            .extend(Duration::from_secs(60))
            .await
            .unwrap_err()
            .is_lost()
    );
    assert!(guard.release().await.unwrap_err().is_lost());
    let value: String = redis::cmd("GET").arg("lock:shared").query(&mut c).unwrap();
    assert_eq!(value, "someone-else");
}

#[tokio::test]
async fn run_unreachable_redis_fails_within_timeout_without_running_body() {
    let locker = Locker::redis(&format!("redis://127.0.0.1:{}/", free_port())).unwrap();
    let ran = AtomicBool::new(false);
    let opts = LockOptions::default().timeout(Duration::from_secs(1));
    let start = Instant::now();
    let err = locker
        .run("order:1", opts, || async {
            ran.store(true, Ordering::SeqCst)
        })
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(err.is_backend(), "{err:?}");
    assert!(!ran.load(Ordering::SeqCst), "the body ran without its lock");
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} for a 1 s timeout"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("lock:order:1") && msg.contains("Redis"),
        "{msg}"
    );

    let err = locker
        .try_run("order:1", opts, || async {
            ran.store(true, Ordering::SeqCst)
        })
        .await
        .unwrap_err();
    assert!(err.is_backend(), "{err:?}");
    assert!(!ran.load(Ordering::SeqCst));
}

#[tokio::test]
async fn run_killed_server_gives_backend_then_restart_recovers() {
    let mut server = RedisServer::start();
    let locker = server.locker();
    locker
        .run("job", LockOptions::default(), || async {})
        .await
        .unwrap();

    server.stop();
    let ran = Arc::new(AtomicBool::new(false));
    let opts = LockOptions::default().timeout(Duration::from_millis(800));
    let r = ran.clone();
    let err = locker
        .run(
            "job",
            opts,
            || async move { r.store(true, Ordering::SeqCst) },
        )
        .await
        .unwrap_err();
    assert!(err.is_backend(), "{err:?}");
    assert!(!ran.load(Ordering::SeqCst), "the body ran without its lock");

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match locker.run("job", opts, || async { 5 }).await {
            Ok(v) => {
                assert_eq!(v, 5);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert!(e.is_backend(), "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery after restart: {e}\n{}", server.log()),
        }
    }
}

#[tokio::test]
async fn from_env_with_redis_url_locks_in_that_server() {
    let server = RedisServer::start();
    let url = server.url();
    let locker = Locker::from_env_with(|name| (name == "REDIS_URL").then(|| url.clone())).unwrap();
    let guard = locker.acquire("env", LockOptions::default()).await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg("lock:env")
        .query(&mut server.client())
        .unwrap();
    assert_eq!(exists, 1);
    guard.release().await.unwrap();
}

#[tokio::test]
async fn builder_prefix_is_stored() {
    let server = RedisServer::start();
    let locker = Locker::builder()
        .prefix("billing:")
        .redis(&server.url())
        .unwrap();
    let guard = locker
        .acquire("invoice:1", LockOptions::default())
        .await
        .unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg("billing:invoice:1")
        .query(&mut server.client())
        .unwrap();
    assert_eq!(exists, 1);
    guard.release().await.unwrap();
}

#[tokio::test]
async fn fencing_counter_is_time_seeded_and_expires() {
    let server = RedisServer::start();
    let locker = server.locker();
    let fenced = LockOptions::default()
        .fencing(true)
        .ttl(Duration::from_secs(1));
    let guard = locker.acquire("fenced", fenced).await.unwrap();
    let token = guard.fencing_token().unwrap();
    assert!(
        token > 1_000_000_000_000_000,
        "token {token} is not seeded from server time"
    );
    // A failed fenced try (lock held) must not leave a counter without expiry: it leaves
    // none at all (its script counts only for a take that succeeded), or one that lapses.
    let other = server.locker();
    let _: () = redis::cmd("DEL")
        .arg("{lock:fenced}:fence")
        .query(&mut server.client())
        .unwrap();
    assert!(other.try_acquire("fenced", fenced).await.unwrap().is_none());
    let pttl: i64 = redis::cmd("PTTL")
        .arg("{lock:fenced}:fence")
        .query(&mut server.client())
        .unwrap();
    assert!(
        pttl > 0 || pttl == -2,
        "the fence counter has no expiry (PTTL {pttl})"
    );
    guard.release().await.unwrap();
    let next = locker.acquire("fenced", fenced).await.unwrap();
    assert!(next.fencing_token().unwrap() > token);
}

/// Concurrent calls on one multiplexed connection each get their own answer and their own
/// error: taken, held by another, held as a semaphore (a waiter's pipeline finds its type:
/// a `Config` error for that call alone), and each release frees only its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_one_connection_get_their_own_answers() {
    let server = RedisServer::start();
    let locker = server.locker();
    let opts = LockOptions::default().ttl(Duration::from_secs(30));
    let held = locker.acquire("gc:held", opts).await.unwrap();
    let permit = locker.semaphore("gc:sem", 2).acquire(opts).await.unwrap();
    for round in 0..20 {
        let mut tasks = Vec::new();
        for i in 0..48 {
            let locker = locker.clone();
            tasks.push(tokio::spawn(async move {
                let key = match i % 3 {
                    0 => format!("gc:free:{round}:{i}"),
                    1 => "gc:held".to_owned(),
                    _ => "gc:sem".to_owned(),
                };
                let got = if i % 3 == 2 {
                    let waiting = opts.timeout(Duration::from_secs(5));
                    locker.acquire(&key, waiting).await.map(Some)
                } else {
                    locker.try_acquire(&key, opts).await
                };
                let answer = match &got {
                    Ok(Some(_)) => "taken",
                    Ok(None) => "busy",
                    Err(e) if e.to_string().contains("semaphore") => "conflict",
                    Err(_) => "other error",
                };
                if let Ok(Some(guard)) = got {
                    guard.release().await.unwrap();
                    assert!(!locker.is_locked(&key).await.unwrap(), "{key} still held");
                }
                (i % 3, answer)
            }));
        }
        for t in tasks {
            let (class, answer) = t.await.unwrap();
            let expected = ["taken", "busy", "conflict"][class];
            assert_eq!(answer, expected, "round {round}");
        }
    }
    assert!(locker.is_locked("gc:held").await.unwrap());
    held.release().await.unwrap();
    permit.release().await.unwrap();
    let mut c = server.client();
    let left: Vec<String> = redis::cmd("KEYS").arg("lock:gc:*").query(&mut c).unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}
