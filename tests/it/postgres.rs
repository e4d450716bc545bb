//! The PostgreSQL store under faults and across processes: a killed and restarted server,
//! a hung one (SIGSTOP), a standby (read-only) and an unreachable one give clear `Backend`
//! errors in bounded time; a cancelled acquire leaves no row; fencing tokens rise across
//! expiry and a restart; 4 processes keep a counter exact. The behaviour tests of the
//! store list (`on_stores!`) run on it too.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use locked::{LockOptions, Locker};
use locked_test_support::{PgServer, eventually, free_port, shared_postgres};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_ends_the_holder_and_fails_calls_clearly_then_recovers() {
    let mut server = PgServer::start();
    let locker = server.locker("locked");
    let entered = Arc::new(tokio::sync::Notify::new());
    let killed = Arc::new(AtomicBool::new(false));
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
    let waiter = {
        let (locker, killed) = (locker.clone(), killed.clone());
        tokio::spawn(async move {
            let opts = LockOptions::default().timeout(timeout);
            let out = locker
                .run("queue", opts, || async move {
                    assert!(!killed.load(Ordering::SeqCst), "a body ran after the kill");
                })
                .await;
            (out, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    killed.store(true, Ordering::SeqCst);
    let kill = Instant::now();
    let late = locker
        .run(
            "late",
            LockOptions::default().timeout(Duration::from_secs(1)),
            || async { unreachable!("ran with the store down") },
        )
        .await
        .unwrap_err();
    let msg = late.to_string();
    assert!(late.is_backend(), "{late:?}");
    assert!(
        msg.contains(&format!("127.0.0.1:{}", server.port)),
        "the host: {msg}"
    );
    assert!(!msg.contains("secret-pw"), "the password: {msg}");
    let held = holder.await.unwrap().unwrap_err();
    assert!(held.is_lost(), "{held:?}");
    assert!(
        kill.elapsed() < ttl + Duration::from_secs(1),
        "{:?}",
        kill.elapsed()
    );
    let (out, ended) = waiter.await.unwrap();
    assert!(out.unwrap_err().is_backend());
    assert!(ended - kill < timeout + Duration::from_secs(3));
    println!(
        "postgres killed: holder Lost after {:?}; late call: {msg}",
        kill.elapsed()
    );

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_fails_calls_in_bounded_time() {
    let server = PgServer::start();
    let locker = server.locker("locked");
    locker
        .run("warm", LockOptions::default(), || async {})
        .await
        .unwrap();
    server.signal("STOP");
    let start = Instant::now();
    let opts = LockOptions::default().timeout(Duration::from_secs(1));
    let err = locker
        .run("hung", opts, || async { unreachable!("ran") })
        .await
        .unwrap_err();
    let took = start.elapsed();
    server.signal("CONT");
    assert!(err.is_backend(), "{err:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    // Answering again, it serves again.
    let opts = LockOptions::default().timeout(Duration::from_secs(10));
    locker.run("hung", opts, || async {}).await.unwrap();
}

#[tokio::test]
async fn unreachable_and_read_only_servers_are_clear_backend_errors() {
    let port = free_port();
    let url = format!("postgres://app:secret-pw@127.0.0.1:{port}/app");
    let locker = Locker::postgres(&url).unwrap();
    let start = Instant::now();
    let opts = LockOptions::default().timeout(Duration::from_secs(1));
    let err = locker.run("order:1", opts, || async {}).await.unwrap_err();
    let msg = err.to_string();
    assert!(err.is_backend(), "{err:?}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "the cause: {msg}");
    assert!(!msg.contains("secret-pw") && !format!("{locker:?}").contains("secret-pw"));
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );

    // A standby refuses writes: a role whose sessions are read-only stands in for one.
    let server = shared_postgres();
    server.psql("CREATE ROLE standby LOGIN SUPERUSER");
    server.psql("ALTER ROLE standby SET default_transaction_read_only = on");
    let url = server
        .url()
        .replace("postgres:secret-pw@", "standby:secret-pw@");
    let ro = Locker::builder()
        .schema("read_only")
        .postgres(&url)
        .unwrap();
    let err = ro
        .try_acquire("x", LockOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(err.is_backend(), "{err:?}");
    assert!(msg.contains("read-only"), "the cause: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_acquisitions_leave_no_row_behind() {
    let server = shared_postgres();
    let locker = server.locker("cancelled");
    locker
        .run("warm", LockOptions::default(), || async {})
        .await
        .unwrap();
    for i in 0..200u64 {
        let call = locker.acquire("cancel", LockOptions::default());
        // Dropped at once, or after a few hundred microseconds: mid-statement.
        let _ = tokio::time::timeout(Duration::from_micros(100 * (i % 8)), call).await;
    }
    let rows = || server.psql("SELECT count(*) FROM cancelled.locks WHERE key = 'lock:cancel'");
    let clean = eventually(Duration::from_secs(5), async || rows() == "0").await;
    assert!(clean, "{} row(s) left behind", rows());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_rise_across_expiry_and_a_restart() {
    let mut server = PgServer::start();
    let locker = server.locker("locked");
    let opts = LockOptions::default()
        .fencing(true)
        .ttl(Duration::from_millis(200));
    let mut last = 0;
    for round in 0..3 {
        // Held, then left to expire (never released): the next holder takes it over.
        let guard = locker.acquire("fenced", opts).await.unwrap();
        let token = guard.fencing_token().unwrap();
        assert!(token > last, "round {round}: {token} after {last}");
        last = token;
        std::mem::forget(guard);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    server.kill();
    server.restart();
    let after = eventually(Duration::from_secs(10), async || {
        locker.try_acquire("fenced", opts).await.is_ok_and(|g| {
            let token = g.as_ref().and_then(|g| g.fencing_token()).unwrap_or(0);
            token > last
        })
    })
    .await;
    assert!(after, "no token above {last} after the restart");
}

/// A non-atomic increment by 4 processes: read, pause, write.
#[test]
fn four_processes_keep_a_counter_exact() {
    let server = shared_postgres();
    server.psql("CREATE TABLE IF NOT EXISTS counter (n bigint); INSERT INTO counter VALUES (0)");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    &worker_name(),
                    "--exact",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("LOCKED_PG_WORKER", server.url())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut w in workers {
        assert!(w.wait().unwrap().success(), "a worker failed");
    }
    assert_eq!(server.psql("SELECT n FROM counter"), "100");
}

/// The test name of [`worker`] in this binary: the module's path without the crate's.
fn worker_name() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::worker")
}

/// The counter worker: this test binary started again with `LOCKED_PG_WORKER` set. Not a
/// test of its own: returns at once otherwise.
#[test]
fn worker() {
    let Ok(url) = std::env::var("LOCKED_PG_WORKER") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let locker = Locker::builder().schema("counting").postgres(&url).unwrap();
        let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let opts = LockOptions::default().timeout(Duration::from_secs(60));
        for _ in 0..25 {
            locker
                .run("counter", opts, || async {
                    let n: i64 = db
                        .query_one("SELECT n FROM counter", &[])
                        .await
                        .unwrap()
                        .get(0);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    db.execute("UPDATE counter SET n = $1", &[&(n + 1)])
                        .await
                        .unwrap();
                })
                .await
                .unwrap();
        }
    });
}

/// Group commit (issue 18): 64 tasks of one `Locker`, each on its own key, take (fenced),
/// are refused their own held key, and release, five times over: every caller gets its own
/// right answer whether its call went alone or in a batch, and each key's fencing tokens
/// strictly rise. Then 16 tasks at once on one key, eight times: one wins each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_calls_each_get_their_own_answer() {
    let server = shared_postgres();
    let locker = server.locker("batched");
    let opts = LockOptions::default().fencing(true);
    let mut tasks = Vec::new();
    for t in 0..64 {
        let locker = locker.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("own:{t}");
            let mut last = 0;
            for round in 0..5 {
                let guard = locker.try_acquire(&key, opts).await.unwrap();
                let guard = guard.unwrap_or_else(|| panic!("{key} round {round}: refused"));
                let token = guard.fencing_token().unwrap();
                assert!(token > last, "{key} round {round}: {token} after {last}");
                last = token;
                let again = locker.try_acquire(&key, opts).await.unwrap();
                assert!(again.is_none(), "{key} round {round}: taken twice");
                guard.release().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for round in 0..8 {
        let key = format!("shared:{round}");
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (locker, key) = (locker.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                locker.try_acquire(&key, opts).await.unwrap()
            }));
        }
        let mut won = Vec::new();
        for task in tasks {
            if let Some(guard) = task.await.unwrap() {
                won.push(guard);
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {} winners", won.len());
        let rows = server.psql(&format!(
            "SELECT count(*) FROM batched.locks WHERE key = 'lock:{key}'"
        ));
        assert_eq!(rows, "1");
        for guard in won {
            guard.release().await.unwrap();
        }
    }
}

/// Takes given up while other calls keep the `Locker` busy (so that they queue for a
/// batch, or are in one) leave no row behind: a take not yet sent is not sent, one whose
/// batch was out is given back after its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_takes_given_up_leave_no_row_behind() {
    let server = shared_postgres();
    let locker = server.locker("batched_gone");
    let busy = Arc::new(AtomicBool::new(true));
    let mut load = Vec::new();
    for t in 0..16 {
        let (locker, busy) = (locker.clone(), busy.clone());
        load.push(tokio::spawn(async move {
            let key = format!("busy:{t}");
            while busy.load(Ordering::Relaxed) {
                if let Some(guard) = locker
                    .try_acquire(&key, LockOptions::default())
                    .await
                    .unwrap()
                {
                    guard.release().await.unwrap();
                }
            }
        }));
    }
    let mut calls = Vec::new();
    for i in 0..200u64 {
        let locker = locker.clone();
        calls.push(tokio::spawn(async move {
            let key = format!("gone:{}", i % 20);
            let call = locker.try_acquire(&key, LockOptions::default());
            // Dropped at once, or after a few hundred microseconds: queued or in a batch.
            let _ = tokio::time::timeout(Duration::from_micros(100 * (i % 8)), call).await;
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    busy.store(false, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let rows =
        || server.psql("SELECT count(*) FROM batched_gone.locks WHERE key LIKE 'lock:gone:%'");
    let clean = eventually(Duration::from_secs(5), async || rows() == "0").await;
    assert!(clean, "{} row(s) left behind", rows());
}
