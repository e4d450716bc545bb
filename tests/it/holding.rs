//! Holding safely: renewal, cancellation on loss, `max_hold`, fencing tokens, nested-lock
//! detection and multi-key locks, on every store of the list where they apply.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use locked::{LockError, LockOptions, Locker, locked};
use locked_test_support::{RedisServer, Store, companion, eventually, on_stores};
use tokio::time::Instant;

on_stores!(
    run_body_three_times_ttl_keeps_lock_throughout,
    run_lock_taken_behind_back_cancels_body_with_lost,
    run_past_max_hold_cancels_body_with_lost,
    run_without_renewal_lets_lock_expire,
    fencing_tokens_strictly_increase_across_expiry,
    fencing_token_readable_inside_body_only_when_asked,
    run_nested_same_key_fails_fast,
    run_all_opposite_transfers_never_deadlock_or_overlap,
    run_with_renewal_leaves_no_task_behind,
    guard_auto_renew_keeps_lock_past_ttl_until_released,
    guard_auto_renew_reports_loss_through_lost,
    handoff_passes_the_lock_to_another_locker,
);

async fn run_body_three_times_ttl_keeps_lock_throughout(s: Store) {
    let ttl = Duration::from_millis(400);
    let other = s.other();
    let started = tokio::sync::Notify::new();
    let done = AtomicBool::new(false);
    let opts = LockOptions::default().ttl(ttl);
    let probe = async {
        started.notified().await; // probe only once the body holds the lock
        let mut tries = 0;
        while !done.load(Ordering::SeqCst) {
            if let Some(stolen) = other
                .try_acquire("long", LockOptions::default())
                .await
                .unwrap()
                // The body sets `done` before its lock is released: a try in flight then
                // may land after the release (a store with slower round trips, etcd).
                && !done.load(Ordering::SeqCst)
            {
                panic!("another caller took the lock while its holder ran: {stolen:?}");
            }
            tries += 1;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tries
    };
    let body = s.locker.run("long", opts, || async {
        started.notify_one();
        tokio::time::sleep(ttl * 3).await;
        done.store(true, Ordering::SeqCst);
    });
    let (out, tries) = tokio::join!(body, probe);
    out.unwrap();
    assert!(tries > 5, "the probe only ran {tries} times");
}

async fn run_lock_taken_behind_back_cancels_body_with_lost(s: Store) {
    // Long enough that a busy machine does not lose it by itself before the theft.
    let ttl = Duration::from_secs(3);
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let locker = s.locker.clone();
    let start = Instant::now();
    let task = tokio::spawn(async move {
        let r = locker
            .run("stolen", LockOptions::default().ttl(ttl), || async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                f.store(true, Ordering::SeqCst);
            })
            .await;
        (r, Instant::now())
    });
    let other = s.other();
    // A check that fails on a starved machine (SQLite's busy timeout) is asked again.
    assert!(
        eventually(Duration::from_secs(10), async || other
            .is_locked("stolen")
            .await
            .unwrap_or(false))
        .await,
        "the first holder did not get the lock within 10 s"
    );
    other
        .force_release("stolen")
        .await
        .expect("force_release answers");
    let thief = other
        .acquire("stolen", LockOptions::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the thief could not take the freed lock {:?} after the start: {e}",
                start.elapsed()
            )
        });
    let taken_at = Instant::now();
    let (r, returned_at) = task.await.expect("the holder's task ends");
    let err = r.expect_err("the body was stopped");
    assert!(err.is_lost(), "{err:?}");
    assert!(err.to_string().contains(&s.full("stolen")), "{err}");
    assert!(
        !finished.load(Ordering::SeqCst),
        "the body ran on without its lock"
    );
    // Detected at the next renewal (ttl/3 = 1 s); generous for a busy machine.
    let after = returned_at.saturating_duration_since(taken_at);
    assert!(
        after < Duration::from_secs(5),
        "took {after:?} to notice: {err}"
    );
    // The thief's lock is untouched by the loser's cleanup.
    tokio::time::sleep(Duration::from_millis(50)).await;
    thief
        .release()
        .await
        .expect("the thief releases its own lock");
}

async fn run_past_max_hold_cancels_body_with_lost(s: Store) {
    let opts = LockOptions::default()
        .ttl(Duration::from_millis(300))
        .max_hold(Duration::from_millis(500));
    let start = Instant::now();
    let err = s
        .locker
        .run("bounded", opts, || async {
            tokio::time::sleep(Duration::from_secs(30)).await
        })
        .await
        .unwrap_err();
    assert!(err.is_lost(), "{err:?}");
    assert!(err.to_string().contains("max_hold"), "{err}");
    assert!(
        start.elapsed() >= Duration::from_millis(500) && start.elapsed() < Duration::from_secs(5)
    );
}

async fn run_without_renewal_lets_lock_expire(s: Store) {
    let opts = LockOptions::default()
        .ttl(Duration::from_millis(200))
        .renew(false);
    let other = s.other();
    let taken_meanwhile = s
        .locker
        .run("short", opts, || async {
            // Ask from another task: this one holds the key, so here it would be `Nested`.
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Some(g) = other
                        .try_acquire("short", LockOptions::default())
                        .await
                        .unwrap()
                    {
                        g.release().await.unwrap();
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            })
            .await
            .unwrap()
        })
        .await
        .unwrap();
    assert!(
        taken_meanwhile,
        "without renewal the lock should have expired after its ttl"
    );
}

/// Redlock has no fencing tokens: asking for one is a clear error at the call.
async fn fencing_refused_where_the_store_has_none(s: &Store) -> bool {
    if s.fences() {
        return false;
    }
    let fenced = LockOptions::default().fencing(true);
    let err = s.locker.acquire("fenced", fenced).await.unwrap_err();
    assert!(matches!(err, LockError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("fencing"), "{err}");
    assert!(
        !s.locker.is_locked("fenced").await.unwrap(),
        "nothing was taken"
    );
    true
}

async fn fencing_tokens_strictly_increase_across_expiry(s: Store) {
    if fencing_refused_where_the_store_has_none(&s).await {
        return;
    }
    let fenced = LockOptions::default().fencing(true);
    let mut last = 0u64;
    for i in 0..1000 {
        let expire = i % 100 == 99;
        let opts = if expire {
            fenced.ttl(Duration::from_millis(20))
        } else {
            fenced
        };
        let guard = s.locker.acquire("ledger", opts).await.unwrap();
        let token = guard.fencing_token().unwrap();
        assert!(
            token > last,
            "token {token} after {last} at acquisition {i}"
        );
        last = token;
        if expire {
            std::mem::forget(guard); // let the lock key expire instead of releasing it
            let locker = &s.locker;
            assert!(
                eventually(Duration::from_secs(5), async || !locker
                    .is_locked("ledger")
                    .await
                    .unwrap())
                .await
            );
        } else {
            guard.release().await.unwrap();
        }
        if i == 500 {
            // Even with the counter gone (its retention ran out), tokens keep rising.
            let counter = companion(&s.full("ledger"), "fence");
            let _: Option<i64> = s.query(::redis::cmd("DEL").arg(counter));
        }
    }
    let plain = s
        .locker
        .acquire("ledger", LockOptions::default())
        .await
        .unwrap();
    assert_eq!(plain.fencing_token(), None);
}

#[locked(key = "fenced:{n}", fencing, locker = locker)]
async fn fenced_body(locker: &Locker, n: u32) -> Result<Option<u64>, LockError> {
    Ok(locked::fencing_token())
}

#[locked(key = "plain:{n}", locker = locker)]
async fn plain_body(locker: &Locker, n: u32) -> Result<Option<u64>, LockError> {
    Ok(locked::fencing_token())
}

async fn fencing_token_readable_inside_body_only_when_asked(s: Store) {
    assert_eq!(plain_body(&s.locker, 1).await.unwrap(), None);
    if fencing_refused_where_the_store_has_none(&s).await {
        // Through the attribute too: the body never runs.
        assert!(matches!(
            fenced_body(&s.locker, 1).await,
            Err(LockError::Config { .. })
        ));
        return;
    }
    let a = fenced_body(&s.locker, 1).await.unwrap().unwrap();
    let b = fenced_body(&s.locker, 1).await.unwrap().unwrap();
    assert!(b > a);
    assert_eq!(plain_body(&s.locker, 1).await.unwrap(), None);
    assert_eq!(locked::fencing_token(), None);
}

#[locked(key = "account:{id}", locker = locker)]
async fn inner_call(locker: &Locker, id: u32) -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "account:{id}", locker = locker)]
async fn outer_call(locker: &Locker, id: u32) -> Result<(), LockError> {
    inner_call(locker, id).await
}

async fn run_nested_same_key_fails_fast(s: Store) {
    let start = Instant::now();
    let err = s
        .locker
        .run("account:1", LockOptions::default(), || async {
            s.locker
                .run("account:1", LockOptions::default(), || async {})
                .await
        })
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, LockError::Nested { .. }), "{err:?}");
    assert!(err.to_string().contains(&s.full("account:1")), "{err}");
    let err = outer_call(&s.locker, 2).await.unwrap_err();
    assert!(matches!(err, LockError::Nested { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "nested calls waited {:?}",
        start.elapsed()
    );
    // A different key nests fine.
    s.locker
        .run("account:3", LockOptions::default(), || async {
            s.locker
                .run("account:4", LockOptions::default(), || async {})
                .await
        })
        .await
        .unwrap()
        .unwrap();
}

struct Bank {
    locker: Locker,
    holders: [AtomicU32; 2],
    overlaps: AtomicU32,
}

impl Bank {
    #[locked(keys = ["{{bank}}:account:{from}", "{{bank}}:account:{to}"], timeout = "30s", retry_interval = "5ms", locker = self.locker)]
    async fn transfer(&self, from: usize, to: usize) -> Result<(), LockError> {
        for acct in [from, to] {
            if self.holders[acct].fetch_add(1, Ordering::SeqCst) != 0 {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        for acct in [from, to] {
            self.holders[acct].fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

async fn run_all_opposite_transfers_never_deadlock_or_overlap(s: Store) {
    let bank = Arc::new(Bank {
        locker: s.locker.clone(),
        holders: Default::default(),
        overlaps: AtomicU32::new(0),
    });
    let other = Arc::new(Bank {
        locker: s.other(),
        holders: Default::default(),
        overlaps: AtomicU32::new(0),
    });
    let shared_holders = bank.clone();
    let a = tokio::spawn(async move {
        for _ in 0..40 {
            bank.transfer(0, 1).await.unwrap();
        }
    });
    // The other direction, through another locker; overlap is counted on the first bank's
    // counters only when both run in this process on the same store, so check the store.
    let b = tokio::spawn(async move {
        for _ in 0..40 {
            other.transfer(1, 0).await.unwrap();
        }
    });
    tokio::time::timeout(Duration::from_secs(60), async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .await
    .expect("transfers in opposite directions deadlocked");
    assert_eq!(shared_holders.overlaps.load(Ordering::SeqCst), 0);
    assert!(!s.locker.is_locked("{bank}:account:0").await.unwrap());
    assert!(!s.locker.is_locked("{bank}:account:1").await.unwrap());
}

async fn run_with_renewal_leaves_no_task_behind(s: Store) {
    let metrics = tokio::runtime::Handle::current().metrics();
    // The first call opens the Redis connection, whose driver task lives with the locker.
    s.locker
        .run("warm-up", LockOptions::default(), || async {})
        .await
        .unwrap();
    let before = metrics.num_alive_tasks();
    // Each body outlives a third of the ttl, so each hold is renewed at least once.
    let opts = LockOptions::default().ttl(Duration::from_millis(300));
    let mut kept = 0;
    for i in 0..20 {
        let out = s
            .locker
            .run(&format!("watched:{i}"), opts, || async {
                tokio::time::sleep(Duration::from_millis(130)).await
            })
            .await;
        match out {
            Ok(()) => kept += 1,
            // A busy machine may stall a hold past its end; it is stopped, and must leave
            // no task behind either.
            Err(e) if e.is_lost() => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(kept >= 10, "only {kept} of 20 holds kept their lock");
    assert!(
        eventually(Duration::from_secs(5), async || metrics.num_alive_tasks()
            <= before)
        .await,
        "{} tasks alive after the calls, {before} before",
        metrics.num_alive_tasks()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_transfers_share_counters_never_overlap_on_redis() {
    let server = RedisServer::start();
    let holders: Arc<[AtomicU32; 2]> = Arc::new(Default::default());
    let overlaps = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for (from, to) in [(0usize, 1usize), (1, 0), (0, 1), (1, 0)] {
        let locker = server.locker();
        let (holders, overlaps) = (holders.clone(), overlaps.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let keys = [format!("account:{from}"), format!("account:{to}")];
                let opts = LockOptions::default()
                    .timeout(Duration::from_secs(30))
                    .retry_interval(Duration::from_millis(5));
                locker
                    .run_all(&keys, opts, || async {
                        for a in [from, to] {
                            if holders[a].fetch_add(1, Ordering::SeqCst) != 0 {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        for a in [from, to] {
                            holders[a].fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("deadlock");
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_redis_down_mid_body_cancels_before_lapse() {
    let mut server = RedisServer::start();
    let locker = server.locker();
    let ttl = Duration::from_millis(1500);
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let l = locker.clone();
    let task = tokio::spawn(async move {
        l.run("fragile", LockOptions::default().ttl(ttl), || async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            f.store(true, Ordering::SeqCst);
        })
        .await
    });
    assert!(
        eventually(Duration::from_secs(5), async || locker
            .is_locked("fragile")
            .await
            .unwrap())
        .await
    );
    server.stop();
    let stopped_at = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("body not cancelled")
        .unwrap()
        .unwrap_err();
    assert!(err.is_lost(), "{err:?}");
    assert!(!finished.load(Ordering::SeqCst));
    // At most one ttl after the last successful renewal, which was before the stop.
    assert!(
        stopped_at.elapsed() < ttl + Duration::from_secs(2),
        "took {:?}",
        stopped_at.elapsed()
    );
}

static FALLBACK_RUNS: AtomicU32 = AtomicU32::new(0);

#[locked(key = "lost-fallback", ttl = "300ms", fallback = on_lost, locker = locker)]
async fn guarded_job(locker: &Locker, entered: &tokio::sync::Notify) -> &'static str {
    entered.notify_one();
    tokio::time::sleep(Duration::from_secs(30)).await;
    "finished"
}

async fn on_lost(_locker: &Locker, _entered: &tokio::sync::Notify) -> &'static str {
    FALLBACK_RUNS.fetch_add(1, Ordering::SeqCst);
    "fell back"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_lost_mid_body_calls_fallback() {
    let locker = Locker::memory();
    let entered = tokio::sync::Notify::new();
    let thief = async {
        entered.notified().await;
        // Another task takes the lock from under the body.
        let l = locker.clone();
        tokio::spawn(async move {
            l.force_release("lost-fallback").await.unwrap();
            l.acquire("lost-fallback", LockOptions::default())
                .await
                .unwrap()
        })
        .await
        .unwrap()
    };
    let (out, _guard) = tokio::join!(guarded_job(&locker, &entered), thief);
    assert_eq!(out, "fell back");
    assert_eq!(FALLBACK_RUNS.load(Ordering::SeqCst), 1);
}

async fn guard_auto_renew_keeps_lock_past_ttl_until_released(s: Store) {
    let ttl = Duration::from_millis(300);
    let opts = LockOptions::default().ttl(ttl);
    let guard = s
        .locker
        .acquire("renewed", opts)
        .await
        .unwrap()
        .auto_renew();
    let other = s.other();
    let until = Instant::now() + ttl * 4;
    let mut probes = 0;
    while Instant::now() < until {
        let stolen = other.try_acquire("renewed", opts).await.unwrap();
        assert!(stolen.is_none(), "taken while its guard renewed it");
        probes += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(probes > 5, "only {probes} probes");
    guard.release().await.unwrap();
    assert!(!s.locker.is_locked("renewed").await.unwrap());
}

async fn guard_auto_renew_reports_loss_through_lost(s: Store) {
    let ttl = Duration::from_millis(600);
    let opts = LockOptions::default().ttl(ttl);
    let guard = s
        .locker
        .acquire("taken-away", opts)
        .await
        .unwrap()
        .auto_renew();
    let taken = Instant::now();
    assert!(s.other().force_release("taken-away").await.unwrap());
    let lost = tokio::select! {
        lost = guard.lost() => lost,
        _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("the loss was never reported"),
    };
    assert!(lost.is_lost(), "{lost:?}");
    // Renewal runs every ttl/3, so the loss is seen within about that (generous margin).
    assert!(
        taken.elapsed() < ttl * 3,
        "reported after {:?}",
        taken.elapsed()
    );
    // Reported once, and again to anyone who asks later.
    assert!(guard.lost().await.is_lost());
    assert!(guard.release().await.unwrap_err().is_lost());
}

/// A held lock handed to another locker (another process, to Redis): it keeps the token and
/// the fencing token, renews there, releases there; a stale hand-off is refused.
async fn handoff_passes_the_lock_to_another_locker(s: Store) {
    let ttl = Duration::from_millis(600);
    let opts = LockOptions::default().ttl(ttl).fencing(s.fences());
    let guard = s.locker.acquire("handed", opts).await.unwrap();
    let fence = guard.fencing_token();
    let handed = guard.handoff();
    let other = s.other();
    let restored = other
        .restore(&handed, LockOptions::default())
        .await
        .unwrap();
    assert_eq!(restored.fencing_token(), fence);
    // Renewed by its new holder, well past the ttl.
    let until = Instant::now() + ttl * 3;
    while Instant::now() < until {
        let stolen = s.locker.try_acquire("handed", opts).await.unwrap();
        assert!(stolen.is_none(), "taken while its new holder renewed it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    restored.release().await.unwrap();
    assert!(!s.locker.is_locked("handed").await.unwrap());
    // Released: the hand-off is worthless now, never a silent re-acquire.
    let stale = other
        .restore(&handed, LockOptions::default())
        .await
        .unwrap_err();
    assert!(stale.is_lost(), "{stale:?}");
    assert!(!s.locker.is_locked("handed").await.unwrap());

    // From inside a body: the lock outlives the body, for the other locker to finish.
    let from_body = s
        .locker
        .run("handed-body", opts, || async { locked::handoff() })
        .await
        .unwrap()
        .unwrap();
    assert!(s.locker.is_locked("handed-body").await.unwrap());
    let restored = other
        .restore(&from_body, LockOptions::default())
        .await
        .unwrap();
    restored.release().await.unwrap();
    assert!(!s.locker.is_locked("handed-body").await.unwrap());
    // Garbage is a clear configuration error.
    let err = other
        .restore("not a hand-off", LockOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Config { .. }), "{err:?}");
}
