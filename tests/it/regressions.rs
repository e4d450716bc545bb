//! Bugs the randomized harness or a user found where features meet, each pinned on every
//! store by a deterministic test named after its issue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use locked_test_support::{Store, companion, eventually, on_stores};
use tokio::time::Instant;

on_stores!(
    repro_16_cancelled_runs_on_repeated_keys_leave_no_lock,
    repro_16_readers_and_a_writer_on_one_locker_all_get_in,
    repro_16_cancelled_waiting_writers_leave_no_intent,
    repro_16_fences_rise_past_a_counter_that_missed_increments,
    repro_16_a_restored_lock_with_little_time_left_is_renewed_at_once,
    repro_21_a_body_paused_past_its_lock_is_not_resumed,
);

/// Issue 16, item 1: `run` calls over a few repeated keys, each dropped by a timeout at a
/// spread of points between nothing and well past a whole uncontended cycle (so some are
/// dropped queued behind another call of the same key, some mid-acquire, some in the
/// body, some while releasing). Afterwards no key may stay held.
async fn repro_16_cancelled_runs_on_repeated_keys_leave_no_lock(s: Store) {
    let locker = s.locker.clone();
    let opts = locker.options().ttl(Duration::from_secs(60));
    // The median uncontended cycle on this store, to spread the drops around it.
    let mut cycle = Vec::new();
    for i in 0..9 {
        let start = Instant::now();
        locker
            .run(&format!("rx-calib-{i}"), opts, || async {})
            .await
            .unwrap();
        cycle.push(start.elapsed());
    }
    cycle.sort();
    let median = cycle[cycle.len() / 2].max(Duration::from_micros(50));
    let keys = 12;
    let mut tasks = Vec::new();
    for i in 0..240u32 {
        let locker = locker.clone();
        // Deterministic spread: 0 ..= 1.5x the median, in 16 steps.
        let limit = median.mul_f64(f64::from(i % 16) * 0.1);
        tasks.push(tokio::spawn(async move {
            let key = format!("rx-{}", i % keys);
            let _ = tokio::time::timeout(limit, locker.run(&key, opts, || async {})).await;
        }));
        if i % 8 == 7 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for k in 0..keys {
        let key = format!("rx-{k}");
        let free = eventually(Duration::from_secs(10), async || {
            !locker.is_locked(&key).await.unwrap()
        })
        .await;
        assert!(free, "`{key}` is still held after every call was dropped");
    }
}

/// Issue 16, item 2: three readers and one writer on one key and one `Locker`, spawned
/// together, several rounds: a reader queued ahead of a waiting writer (whose intent
/// refuses readers) must not stall the writer behind it. Every call gets in, quickly.
async fn repro_16_readers_and_a_writer_on_one_locker_all_get_in(s: Store) {
    let rw = s.locker.rw("doc:16");
    let opts = s
        .locker
        .options()
        .ttl(Duration::from_secs(10))
        .timeout(Duration::from_secs(10));
    for round in 0..6 {
        let done = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (rw, done) = (rw.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let body = || async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                let out = if i == round % 4 {
                    rw.write(opts, body).await
                } else {
                    rw.read(opts, body).await
                };
                out.unwrap_or_else(|e| panic!("round {round}, call {i}: {e}"));
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 4);
        // Four 20 ms sections; anything near the 10 s timeout is the stall.
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "round {round} took {:?}",
            start.elapsed()
        );
    }
}

/// Found by the randomized harness (issue 16) on PostgreSQL: a waiting writer cancelled
/// while its try was out registered its intent after the withdrawal of that intent had
/// already run (on another pooled connection), so readers stayed refused for the intent's
/// whole life (its ttl). Writers that wait behind a reader are cancelled at a spread of
/// points; once the reader leaves, readers must get in at once.
async fn repro_16_cancelled_waiting_writers_leave_no_intent(s: Store) {
    let rw = s.locker.rw("doc:16-intent");
    let opts = s
        .locker
        .options()
        .ttl(Duration::from_secs(60))
        .timeout(Duration::from_secs(10));
    let reader = rw.acquire_read(opts).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let rw = rw.clone();
        tasks.push(tokio::spawn(async move {
            let limit = Duration::from_micros((i * 53) % 10_000);
            let _ = tokio::time::timeout(limit, rw.acquire_write(opts)).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    reader.release().await.unwrap();
    let other = s.other().rw("doc:16-intent");
    let free = eventually(Duration::from_secs(5), async || {
        match other.try_acquire_read(opts).await.unwrap() {
            Some(g) => g.release().await.is_ok(),
            None => false,
        }
    })
    .await;
    assert!(
        free,
        "readers are still refused: a cancelled writer's intent outlived it"
    );
}

/// The same on PostgreSQL, made certain: another session holds the key's advisory lock, so
/// the writers' tries wait in the database while their callers give up and withdraw their
/// intents; then the tries go on and register them. A try that outlives its caller must
/// withdraw what it registered.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repro_16_postgres_writer_try_that_outlives_its_caller_withdraws_its_intent() {
    let server = locked_test_support::shared_postgres();
    let locker = server.locker("repro16intent");
    let rw = locker.rw("doc:16-pg-intent");
    let key = rw.key().unwrap();
    let opts = locker
        .options()
        .ttl(Duration::from_secs(60))
        .timeout(Duration::from_secs(10));
    // The schema exists once something ran; a reader holds the key.
    let reader = rw.acquire_read(opts).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('locked lease ' || $1, 0))",
            &[&key],
        )
        .await
        .unwrap();
    // Writers give up while their tries wait for the advisory lock.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let rw = rw.clone();
        tasks.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_millis(300), rw.acquire_write(opts)).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Let the withdrawals land, then let the tries go on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.batch_execute("COMMIT").await.unwrap();
    reader.release().await.unwrap();
    let free = eventually(Duration::from_secs(5), async || {
        match rw.try_acquire_read(opts).await.unwrap() {
            Some(g) => g.release().await.is_ok(),
            None => false,
        }
    })
    .await;
    let intents = server.psql(&format!(
        "SELECT count(*) FROM repro16intent.writers WHERE key = '{key}'"
    ));
    assert!(
        free,
        "readers are refused: {intents} writer intent(s) outlived their callers"
    );
}

/// Found by the randomized harness (issue 16) on a Cluster: after a failover the promoted
/// replica's fence counter had missed its old master's last increments, and handed out a
/// smaller token than one already given. The counter is set back by hand here (as such a
/// replica would have it); the next tokens must still be greater, for one key (pipelined)
/// and for several (the script).
async fn repro_16_fences_rise_past_a_counter_that_missed_increments(s: Store) {
    if !s.fences() {
        return;
    }
    let opts = s.locker.options().fencing(true);
    for keys in [vec!["fence-16-one"], vec!["{f16}-a", "{f16}-b"]] {
        let guard = s.locker.acquire_all(&keys, opts).await.unwrap();
        let first = guard.fencing_token().unwrap();
        guard.release().await.unwrap();
        let counter = companion(&s.full(keys[0]), "fence");
        let behind = first.saturating_sub(1000);
        // None on the stores whose counter is not a Redis key (memory, PostgreSQL).
        let _: Option<String> = s.query(::redis::cmd("SET").arg(&counter).arg(behind));
        let guard = s.locker.acquire_all(&keys, opts).await.unwrap();
        let next = guard.fencing_token().unwrap();
        guard.release().await.unwrap();
        assert!(
            next > first,
            "{keys:?}: token {next} after {first}, with the counter set back to {behind}"
        );
    }
}

/// Issue 16 (found while fixing the late-answer bug, `partitions.rs`): renewal was first
/// due a third of the ttl after the guard was made, not after the store promised the lock.
/// A hand-off restored with less than that left lapsed before its first renewal.
async fn repro_16_a_restored_lock_with_little_time_left_is_renewed_at_once(s: Store) {
    let ttl = Duration::from_millis(3000);
    let opts = s.locker.options().ttl(ttl);
    let guard = s.locker.acquire("late-restore", opts).await.unwrap();
    let handed = guard.handoff();
    // 0.8 s left: less than the 1 s until a renewal counted from the restore.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let other = s.other();
    let restored = other.restore(&handed, opts).await.unwrap();
    let until = Instant::now() + ttl;
    while Instant::now() < until {
        let stolen = s.locker.try_acquire("late-restore", opts).await.unwrap();
        assert!(
            stolen.is_none(),
            "the restored lock lapsed before its renewal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    restored.release().await.unwrap();
    assert!(!s.locker.is_locked("late-restore").await.unwrap());
}

/// Issue 21 (found writing the leadership checks): a process paused past its lock's end
/// (SIGSTOP, a VM pause, a runtime blocked by other work) woke with both the body's timer
/// and the watchdog's due; the body was polled first and took one more step on a lock that
/// may already be someone else's. Here a runtime of its own is blocked for twice the ttl
/// while its body ticks: no tick may come after the block.
async fn repro_21_a_body_paused_past_its_lock_is_not_resumed(s: Store) {
    let locker = s.locker.clone();
    let ttl = Duration::from_millis(600);
    let opts = locker.options().ttl(ttl);
    let ticks = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let unblocked = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let (t, u) = (ticks.clone(), unblocked.clone());
    let outcome = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                // The pause: nothing of this runtime runs for twice the ttl.
                std::thread::sleep(ttl * 2);
                *u.lock().unwrap() = Some(Instant::now());
            });
            locker
                .run("paused-body", opts, || async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        t.lock().unwrap().push(Instant::now());
                    }
                })
                .await
        })
    })
    .await
    .unwrap();
    let err = outcome.expect_err("the body ran on after the pause");
    assert!(err.is_lost(), "{err}");
    let unblocked = unblocked.lock().unwrap().expect("the pause ended");
    let ticks = ticks.lock().unwrap();
    assert!(!ticks.is_empty(), "the body never ticked before the pause");
    let late: Vec<_> = ticks.iter().filter(|t| **t >= unblocked).collect();
    assert!(
        late.is_empty(),
        "the body took {} step(s) after a pause past its lock's end",
        late.len()
    );
}
