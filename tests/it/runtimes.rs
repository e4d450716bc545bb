//! One `Locker` used from several runtimes in turn, as a global locker is by a test suite
//! whose every test builds its own runtime.

use std::time::Duration;

use locked::LockOptions;
use locked_test_support::{RedisServer, eventually};

#[test]
fn locker_outlives_the_runtime_it_connected_on() {
    let server = RedisServer::start();
    let locker = server.locker();
    for round in 0..3 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let opts = LockOptions::default().timeout(Duration::from_secs(10));
            let out = locker.run("shared", opts, || async { round }).await;
            assert_eq!(out.unwrap(), round, "round {round}");
            // Contention, so the waiter's subscription connection is used too.
            let held = locker.acquire("contended", opts).await.unwrap();
            let l = locker.clone();
            // Polling every 5 s: only a pub/sub wake-up gets it the lock within 2 s.
            let slow_poll = opts.retry_interval(Duration::from_secs(5));
            let waiter =
                tokio::spawn(async move { l.run("contended", slow_poll, || async {}).await });
            let listening = eventually(Duration::from_secs(5), async || {
                let (_, n): (String, i64) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg("{lock:contended}:released")
                    .query(&mut server.client())
                    .unwrap();
                n == 1
            });
            assert!(
                listening.await,
                "round {round}: the waiter never subscribed"
            );
            held.release().await.unwrap();
            tokio::time::timeout(Duration::from_secs(2), waiter)
                .await
                .unwrap_or_else(|_| panic!("round {round}: the waiter was not woken"))
                .unwrap()
                .unwrap();
        });
        drop(rt);
    }
}
