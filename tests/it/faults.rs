//! Survival under faults on one Redis: a server killed under a holder and a queue of
//! waiters, and the errors a user reads when the store is down. Each test starts and stops
//! its own `redis-server`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use locked::{LockError, LockOptions};
use locked_test_support::{RedisServer, eventually, free_port};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_ends_holder_and_queued_waiters_with_store_errors_then_recovers() {
    let mut server = RedisServer::start();
    let locker = server.locker();
    let killed = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(tokio::sync::Notify::new());

    let ttl = Duration::from_secs(2);
    let holder = {
        let (locker, entered) = (locker.clone(), entered.clone());
        tokio::spawn(async move {
            let opts = LockOptions::default().ttl(ttl);
            locker
                .run("queue", opts, || async move {
                    entered.notify_one();
                    tokio::time::sleep(Duration::from_secs(30)).await;
                })
                .await
        })
    };
    entered.notified().await;
    let timeout = Duration::from_secs(3);
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let (locker, killed) = (locker.clone(), killed.clone());
        waiters.push(tokio::spawn(async move {
            let opts = LockOptions::default().timeout(timeout);
            let out = locker
                .run("queue", opts, || async move {
                    assert!(
                        !killed.load(Ordering::SeqCst),
                        "a body started after the kill"
                    );
                })
                .await;
            (out, Instant::now())
        }));
    }
    // The head of the queue listens for the release: everyone is queued.
    assert!(
        eventually(Duration::from_secs(5), async || {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("{lock:queue}:released")
                .query(&mut server.client())
                .unwrap();
            n == 1
        })
        .await
    );
    server.stop();
    killed.store(true, Ordering::SeqCst);
    let kill = Instant::now();

    // A call made after the kill fails too, in bounded time.
    let late = locker
        .run(
            "late",
            LockOptions::default().timeout(Duration::from_secs(1)),
            || async { unreachable!("ran with the store down") },
        )
        .await
        .unwrap_err();
    assert!(late.is_backend(), "{late:?}");

    let held = holder.await.unwrap().unwrap_err();
    let holder_took = kill.elapsed();
    assert!(held.is_lost(), "{held:?}");
    assert!(
        holder_took < ttl,
        "the holder was stopped after {holder_took:?}, past its ttl"
    );
    for waiter in waiters {
        let (out, ended) = waiter.await.unwrap();
        let err = out.unwrap_err();
        assert!(
            err.is_backend(),
            "a queued waiter must report the store, not a holder: {err}"
        );
        assert!(
            ended - kill < timeout + Duration::from_secs(3),
            "ended {:?} after",
            ended - kill
        );
    }
    println!("kill: holder ended with Lost after {holder_took:?}; late call: {late}");

    // Back on the same port: the same locker works again, with no manual reconnect.
    server.restart();
    let again = locker
        .run(
            "queue",
            LockOptions::default().timeout(Duration::from_secs(10)),
            || async { 1 },
        )
        .await;
    assert_eq!(again.unwrap(), 1);
}

#[tokio::test]
async fn unreachable_store_error_names_host_cause_and_time_spent() {
    let port = free_port();
    let locker = locked::Locker::redis(&format!("redis://127.0.0.1:{port}/")).unwrap();
    let opts = LockOptions::default().timeout(Duration::from_secs(1));
    let err = locker.run("order:1", opts, || async {}).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")),
        "the host: {msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "the cause: {msg}");
    assert!(msg.contains("gave up after"), "the time spent: {msg}");
    println!("unreachable: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_bounds_every_call_and_stops_holders_before_their_ttl() {
    let server = RedisServer::start();
    let locker = server.locker();
    let entered = Arc::new(tokio::sync::Notify::new());
    let ttl = Duration::from_secs(3);
    let holder = {
        let (locker, entered) = (locker.clone(), entered.clone());
        tokio::spawn(async move {
            let opts = LockOptions::default().ttl(ttl);
            locker
                .run("hung", opts, || async move {
                    entered.notify_one();
                    tokio::time::sleep(Duration::from_secs(60)).await;
                })
                .await
        })
    };
    entered.notified().await;
    // What a network partition looks like to a client: no answer, no closed connection.
    server.signal("STOP");
    let hung = Instant::now();
    let call = locker
        .run(
            "other",
            LockOptions::default().timeout(Duration::from_secs(1)),
            || async { unreachable!("ran with the store hung") },
        )
        .await
        .unwrap_err();
    let call_took = hung.elapsed();
    let held = holder.await.unwrap().unwrap_err();
    let holder_took = hung.elapsed();
    server.signal("CONT");
    assert!(call.is_backend(), "{call:?}");
    assert!(
        call_took < Duration::from_secs(4),
        "a 1 s call took {call_took:?}"
    );
    assert!(held.is_lost(), "{held:?}");
    // The lock was last renewed before the hang, so it lapses within ttl of it.
    assert!(
        holder_took < ttl,
        "the holder ran {holder_took:?} into a {ttl:?} ttl"
    );
    println!(
        "hung server: call failed after {call_took:?}, holder stopped after {holder_took:?} (ttl {ttl:?})"
    );
}
