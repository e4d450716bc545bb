//! The MySQL store (on MariaDB) under faults: a killed and restarted server, a hung one
//! (SIGSTOP), a read-only one, an unreachable one and a refused password give clear
//! `Backend` errors naming the host, in bounded time, and never show the password; a
//! cancelled acquire leaves no row; fencing tokens rise across expiry and a restart; the
//! database and tables are created when missing, and the documented DDL is what the store
//! uses. The behaviour tests of the store list (`on_stores!`) run on it too; the
//! cross-process tests are in `tests/processes.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use locked::{LockOptions, Locker};
use locked_test_support::{MYSQL_PASSWORD, MysqlServer, eventually, free_port, shared_mysql};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_ends_the_holder_and_fails_calls_clearly_then_recovers() {
    let server = MysqlServer::start();
    let locker = server.locker("app");
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
    assert!(!msg.contains(MYSQL_PASSWORD), "the password: {msg}");
    assert!(
        kill.elapsed() < Duration::from_secs(4),
        "a 1 s call took {:?}",
        kill.elapsed()
    );
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
        "mysql killed: holder Lost after {:?}; late call: {msg}",
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

/// The Redis hang test's bounds (`faults.rs`): a 1 s call fails within 4 s, and a holder
/// whose renewals go unanswered is stopped before its ttl runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_bounds_every_call_and_stops_holders_before_their_ttl() {
    let server = MysqlServer::start();
    let locker = server.locker("app");
    let entered = Arc::new(tokio::sync::Notify::new());
    let ttl = Duration::from_secs(3);
    let holder = {
        let (locker, entered) = (locker.clone(), entered.clone());
        tokio::spawn(async move {
            let opts = LockOptions::default().ttl(ttl);
            let out = locker
                .run("hung", opts, || async move {
                    entered.notify_one();
                    tokio::time::sleep(Duration::from_secs(60)).await;
                })
                .await;
            (out, Instant::now())
        })
    };
    entered.notified().await;
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
    // A new pool's first connection: the TCP connect completes (the kernel answers), the
    // server's greeting never comes; the connect limit ends it.
    let fresh = server.locker("app");
    let start = Instant::now();
    let first = fresh
        .try_acquire("other", LockOptions::default())
        .await
        .unwrap_err();
    let first_took = start.elapsed();
    let (held, ended) = holder.await.unwrap();
    let held = held.unwrap_err();
    let holder_took = ended - hung;
    server.signal("CONT");
    assert!(first.is_backend(), "{first:?}");
    assert!(
        first_took < Duration::from_secs(4),
        "a new connection took {first_took:?}"
    );
    assert!(call.is_backend(), "{call:?}");
    assert!(
        call_took < Duration::from_secs(4),
        "a 1 s call took {call_took:?}"
    );
    let msg = call.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{}", server.port)),
        "the host: {msg}"
    );
    assert!(held.is_lost(), "{held:?}");
    assert!(
        holder_took < ttl,
        "the holder ran {holder_took:?} into a {ttl:?} ttl"
    );
    println!(
        "mysql hung: call failed after {call_took:?} ({msg}), a new connection after \
         {first_took:?} ({first}), holder stopped after {holder_took:?} (ttl {ttl:?})"
    );
    // Answering again, it serves again.
    let opts = LockOptions::default().timeout(Duration::from_secs(10));
    locker.run("hung", opts, || async {}).await.unwrap();
}

/// Asserts `err` is a `Backend` error naming `host` and containing `cause`, without the
/// password, in bounded time.
fn assert_clear(err: &locked::LockError, took: Duration, host: &str, cause: &str) {
    let msg = err.to_string();
    assert!(err.is_backend(), "{err:?}");
    assert!(msg.contains(host), "the host: {msg}");
    assert!(msg.contains(cause), "the cause ({cause}): {msg}");
    assert!(!msg.contains(MYSQL_PASSWORD), "the password: {msg}");
    assert!(
        !format!("{err:?}").contains(MYSQL_PASSWORD),
        "the password: {err:?}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_read_only_and_refused_servers_are_clear_backend_errors() {
    let opts = LockOptions::default().timeout(Duration::from_secs(1));

    // Nothing listens.
    let port = free_port();
    let url = format!("mysql://app:{MYSQL_PASSWORD}@127.0.0.1:{port}/app");
    let locker = Locker::mysql(&url).unwrap();
    assert!(!format!("{locker:?}").contains(MYSQL_PASSWORD));
    let start = Instant::now();
    let err = locker.run("order:1", opts, || async {}).await.unwrap_err();
    let host = format!("127.0.0.1:{port}");
    assert_clear(&err, start.elapsed(), &host, "refused");
    println!("mysql down: {err}");

    // A refused password.
    let server = shared_mysql();
    let wrong = server.url().replace(MYSQL_PASSWORD, "not-the-password");
    let locker = Locker::mysql(&wrong).unwrap();
    let start = Instant::now();
    let err = locker.run("order:1", opts, || async {}).await.unwrap_err();
    let host = format!("127.0.0.1:{}", server.port);
    assert_clear(&err, start.elapsed(), &host, "Access denied");
    assert!(err.to_string().contains("password in the URL"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
    println!("mysql refused password: {err}");

    // A read-only server (a replica, or a primary being failed over).
    let own = MysqlServer::start();
    let locker = own.locker("app");
    locker.run("warm", opts, || async {}).await.unwrap();
    own.root("SET GLOBAL read_only = 1");
    let start = Instant::now();
    let err = locker.try_acquire("x", opts).await.unwrap_err();
    let host = format!("127.0.0.1:{}", own.port);
    assert_clear(&err, start.elapsed(), &host, "read-only");
    println!("mysql read-only: {err}");
    // Reads still answer.
    assert!(!locker.is_locked("x").await.unwrap());
    own.root("SET GLOBAL read_only = 0");
    locker.run("x", opts, || async {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_host_fails_within_the_connect_limit() {
    // TEST-NET-1 (RFC 5737): refused at once where a router says so, else never answered
    // (then the connect limit, 2 s, ends the call).
    let locker =
        Locker::mysql(&format!("mysql://app:{MYSQL_PASSWORD}@192.0.2.1:3306/app")).unwrap();
    let start = Instant::now();
    let opts = LockOptions::default().timeout(Duration::from_secs(10));
    let err = locker.try_acquire("x", opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(err.is_backend(), "{err:?}");
    assert!(msg.contains("192.0.2.1:3306"), "{msg}");
    assert!(!msg.contains(MYSQL_PASSWORD), "{msg}");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    println!("mysql unreachable: {msg} after {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_acquisitions_leave_no_row_behind() {
    let server = shared_mysql();
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
    let rows =
        || server.root("SELECT COUNT(*) FROM cancelled.locked_locks WHERE k = 'lock:cancel'");
    let clean = eventually(Duration::from_secs(10), async || rows() == "0").await;
    assert!(clean, "{} row(s) left behind", rows());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_rise_across_expiry_and_a_restart() {
    let server = MysqlServer::start();
    let locker = server.locker("app");
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

/// The database is created when missing, with the tables; a database whose tables an
/// operator made from the documented DDL (`schema.sql`) is used as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_created_when_missing_or_used_as_migrated() {
    let server = shared_mysql();
    let locker = server.locker("made_on_first_use");
    let guard = locker
        .acquire("first", LockOptions::default().fencing(true))
        .await
        .unwrap();
    assert_eq!(guard.fencing_token(), Some(1));
    guard.release().await.unwrap();
    let tables = server.root(
        "SELECT GROUP_CONCAT(TABLE_NAME ORDER BY TABLE_NAME) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = 'made_on_first_use'",
    );
    assert_eq!(
        tables,
        "locked_fence,locked_leases,locked_locks,locked_writers"
    );

    let ddl =
        include_str!("../../lock-runtime/src/store/mysql/schema.sql").replace("{db}", "migrated");
    server.root(&format!("CREATE DATABASE migrated; USE migrated; {ddl}"));
    let locker = server.locker("migrated");
    locker
        .run("order:1", LockOptions::default(), || async {})
        .await
        .unwrap();
    let sem = locker.semaphore("pool", 2);
    let permit = sem.acquire(LockOptions::default()).await.unwrap();
    assert_eq!(sem.available().await.unwrap(), 1);
    permit.release().await.unwrap();
}

/// How many `INSERT` statements the server has run: a batch of takes is one.
fn inserts(server: &MysqlServer) -> u64 {
    let status = server.root("SHOW GLOBAL STATUS LIKE 'Com_insert'");
    let n = status.split_whitespace().last().unwrap_or_default();
    n.parse().unwrap_or_else(|_| panic!("Com_insert: {status}"))
}

/// Group commit (issue 18): 64 tasks of one `Locker`, each on its own key, take (fenced),
/// are refused their own held key, and release, five times over: every caller gets its own
/// right answer whether its call went alone or in a batch, each key's fencing tokens
/// strictly rise, and the takes went in batches (fewer `INSERT`s than takes). Then 16
/// tasks at once on one key, eight times: one wins each time, and the key has one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_calls_each_get_their_own_answer() {
    let server = MysqlServer::start();
    let locker = server.locker("batched");
    locker
        .run("warm", LockOptions::default(), || async {})
        .await
        .unwrap();
    let before = inserts(&server);
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
    let takes = 64 * 5 * 2;
    let sent = inserts(&server) - before;
    assert!(
        sent < takes,
        "{takes} takes went as {sent} INSERTs: no batch formed"
    );
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
        let rows = server.root(&format!(
            "SELECT COUNT(*) FROM batched.locked_locks WHERE k = 'lock:{key}'"
        ));
        assert_eq!(rows, "1");
        for guard in won {
            guard.release().await.unwrap();
        }
    }
}

/// Releases that go together each get their own answer: a lock still held is released,
/// one force-released meanwhile is gone, one another holder took since is that holder's
/// (and stays so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_releases_answer_each_released_gone_or_foreign() {
    let server = shared_mysql();
    let locker = server.locker("batched_give");
    let mut guards = Vec::new();
    let mut others = Vec::new();
    for t in 0..48 {
        let key = format!("give:{t}");
        let guard = locker.try_acquire(&key, LockOptions::default()).await;
        guards.push((t, guard.unwrap().unwrap()));
        if t % 3 > 0 {
            locker.force_release(&key).await.unwrap();
        }
        if t % 3 == 2 {
            let other = locker.try_acquire(&key, LockOptions::default()).await;
            others.push(other.unwrap().unwrap());
        }
    }
    let start = Arc::new(tokio::sync::Barrier::new(guards.len()));
    let mut tasks = Vec::new();
    for (t, guard) in guards {
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            (t, guard.release().await)
        }));
    }
    for task in tasks {
        let (t, out) = task.await.unwrap();
        match t % 3 {
            0 => assert!(out.is_ok(), "give:{t}: {out:?}"),
            1 => {
                let err = out.unwrap_err().to_string();
                assert!(err.contains("expired or force-released"), "give:{t}: {err}");
            }
            _ => {
                let err = out.unwrap_err().to_string();
                assert!(err.contains("taken by another holder"), "give:{t}: {err}");
            }
        }
    }
    for other in others {
        other.release().await.unwrap();
    }
    let rows = server.root("SELECT COUNT(*) FROM batched_give.locked_locks");
    assert_eq!(rows, "0");
}

/// Takes given up while other calls keep the `Locker` busy (so that they queue for a
/// batch, or are in one) leave no row behind: a take not yet sent is not sent, one whose
/// batch was out is given back after its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_takes_given_up_leave_no_row_behind() {
    let server = shared_mysql();
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
        || server.root("SELECT COUNT(*) FROM batched_gone.locked_locks WHERE k LIKE 'lock:gone:%'");
    let clean = eventually(Duration::from_secs(10), async || rows() == "0").await;
    assert!(clean, "{} row(s) left behind", rows());
}

/// The bench's W2 as a test: 64 tasks of one `Locker` cycle (a waiting acquire, a
/// release) through 16 keys each for 3 s: no take finds a key its own task released
/// still held (which would time out), and no row is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_cycles_on_reused_keys_never_find_them_held() {
    let server = shared_mysql();
    let locker = server.locker("batched_cycles");
    let end = Instant::now() + Duration::from_secs(3);
    let opts = LockOptions::default().timeout(Duration::from_secs(2));
    let mut tasks = Vec::new();
    for t in 0..64 {
        let locker = locker.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let key = format!("cycle:{t}:{}", i % 16);
                match locker.acquire(&key, opts).await {
                    Ok(guard) => guard.release().await.unwrap(),
                    Err(e) => return Err(format!("{key}: {e}")),
                }
            }
            Ok(())
        }));
    }
    let mut failed = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            failed.push(e);
        }
    }
    let rows = server.root("SELECT k, token, expires_at, fence FROM batched_cycles.locked_locks");
    assert!(failed.is_empty(), "{failed:?}; rows: {rows}");
    assert_eq!(rows, "");
}
