//! The PostgreSQL store through a real `pgbouncer` in transaction mode (issue 16, item 3):
//! a server connection serves one transaction, then another client's, and 4 of them are
//! shared by every client. Exclusion, waiting (by polling; promptly with a direct
//! `listen_url`), rising fences, no leaked rows, cancelled calls, and a killed pgbouncer
//! failing calls with an error that names PostgreSQL and pgbouncer's host.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use locked::{LockOptions, Locker};
use locked_test_support::pgbouncer::{POOL_SIZE, PgBouncer, shared_pgbouncer};
use locked_test_support::{eventually, free_port, shared_postgres};
use tokio::time::Instant;

/// Rows of `schema`'s lock and lease tables, read on the server itself (not through
/// pgbouncer).
fn rows(schema: &str) -> String {
    shared_postgres().psql(&format!(
        "SELECT (SELECT count(*) FROM {schema}.locks) + (SELECT count(*) FROM {schema}.leases) \
         + (SELECT count(*) FROM {schema}.writers)"
    ))
}

/// Waits (up to 15 s) until `schema` holds no row; the count left otherwise.
async fn no_rows_left(schema: &str) -> Result<(), String> {
    if eventually(Duration::from_secs(15), async || rows(schema) == "0").await {
        Ok(())
    } else {
        Err(rows(schema))
    }
}

/// Two lockers through pgbouncer, as two processes of a service would have.
fn two_lockers(schema: &str) -> [Locker; 2] {
    let bouncer = shared_pgbouncer();
    [bouncer.locker(schema), bouncer.locker(schema)]
}

/// A waiter, queued: `holder` takes `queue` in `schema`, `waiter` asks for it (retrying
/// every `retry`) and has tried, marking the lock contended, when this returns. Release
/// the guard, then await the waiter for its answer and the instant it came.
async fn queued(
    holder: &Locker,
    waiter: Locker,
    schema: &str,
    retry: Duration,
) -> (
    locked::LockGuard,
    tokio::task::JoinHandle<(Result<Option<u64>, locked::LockError>, Instant)>,
) {
    let guard = holder
        .acquire("queue", LockOptions::default())
        .await
        .unwrap();
    let opts = LockOptions::default()
        .retry_interval(retry)
        .timeout(Duration::from_secs(120));
    let waiting = tokio::spawn(async move {
        let got = waiter.acquire("queue", opts).await;
        (got.map(|g| g.fencing_token()), Instant::now())
    });
    let sql = format!("SELECT count(*) FROM {schema}.locks WHERE contended");
    let contended = eventually(Duration::from_secs(20), async || {
        shared_postgres().psql(&sql) == "1"
    })
    .await;
    assert!(contended, "the waiter never tried");
    (guard, waiting)
}

/// 8 tasks on 2 lockers, `sections` each on one key: every section is alone in its lock.
/// Returns the fencing tokens in the order the sections ran.
async fn eight_tasks(lockers: &[Locker; 2], key: &str, sections: usize) -> Vec<u64> {
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(std::sync::Mutex::new(Vec::new()));
    let opts = LockOptions::default()
        .fencing(true)
        .ttl(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .retry_interval(Duration::from_millis(20));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let locker = lockers[i % 2].clone();
            let (inside, most, fences, key) =
                (inside.clone(), most.clone(), fences.clone(), key.to_owned());
            tokio::spawn(async move {
                for _ in 0..sections {
                    let guard = locker.acquire(&key, opts).await?;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    if let Ok(mut f) = fences.lock() {
                        f.push(guard.fencing_token().unwrap_or(0));
                    }
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await?;
                }
                Ok::<_, locked::LockError>(())
            })
        })
        .collect();
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            panic!("a call failed through pgbouncer: {e}");
        }
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "two holders at once");
    let fences = fences.lock().unwrap().clone();
    assert_eq!(fences.len(), 8 * sections, "sections done");
    fences
}

/// Issue 16, item 3: 8 tasks on 2 `Locker`s through pgbouncer 1.18 in transaction mode
/// failed with `prepared statement "s14" does not exist`, left locks held until their
/// ttl, and said to check Redis. Now: no error, and no row left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repro_16_pgbouncer_transaction_mode() {
    let lockers = two_lockers("repro16");
    let opts = LockOptions::default()
        .ttl(Duration::from_secs(30))
        .timeout(Duration::from_secs(30));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (locker, done) = (lockers[i % 2].clone(), done.clone());
            tokio::spawn(async move {
                for j in 0..10 {
                    let key = format!("job:{}", (i + j) % 3);
                    let done = done.clone();
                    locker
                        .run(&key, opts, || async move {
                            done.fetch_add(1, Ordering::SeqCst);
                        })
                        .await?;
                }
                Ok::<_, locked::LockError>(())
            })
        })
        .collect();
    for task in tasks {
        let out = task.await.unwrap();
        assert!(out.is_ok(), "{out:?}");
    }
    assert_eq!(done.load(Ordering::SeqCst), 80);
    // Released at once, not left to lapse (ttl 30 s).
    assert_eq!(rows("repro16"), "0", "a row left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_on_two_lockers_exclude_each_other() {
    let lockers = two_lockers("excl");
    eight_tasks(&lockers, "shared", 15).await;
    no_rows_left("excl").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_strictly_rise_through_pgbouncer() {
    let lockers = two_lockers("fences");
    let fences = eight_tasks(&lockers, "fenced", 8).await;
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "tokens not strictly rising: {fences:?}"
    );
    // Across a lapse too: a lock left to expire is taken over with a higher token.
    let opts = LockOptions::default()
        .fencing(true)
        .ttl(Duration::from_millis(200))
        .renew(false);
    let mut last = fences.last().copied().unwrap_or(0);
    for round in 0..3 {
        let guard = lockers[round % 2]
            .acquire("fenced", opts.timeout(Duration::from_secs(30)))
            .await
            .unwrap();
        let token = guard.fencing_token().unwrap();
        assert!(token > last, "round {round}: {token} after {last}");
        last = token;
        std::mem::forget(guard);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_gets_the_lock_by_polling_after_the_holder_releases() {
    let [holder, waiter] = two_lockers("polling");
    let (guard, waiting) = queued(&holder, waiter, "polling", Duration::from_millis(200)).await;
    // Its listener saw the pooler and sent no `LISTEN`, which would have stayed on a shared
    // server connection and announced releases to other clients of pgbouncer.
    let listening = shared_postgres()
        .psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN \"polling.released\"'");
    assert_eq!(listening, "0", "a LISTEN through pgbouncer");
    let released = Instant::now();
    guard.release().await.unwrap();
    let (got, at) = waiting.await.unwrap();
    assert!(got.is_ok(), "{got:?}");
    let took = at - released;
    // Polling every 200 ms (±20%); a generous bound for a busy machine.
    assert!(took < Duration::from_secs(10), "woken after {took:?}");
    no_rows_left("polling").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_listen_url_wakes_a_waiter_well_before_its_retry_interval() {
    let bouncer = shared_pgbouncer();
    let direct = shared_postgres().url();
    let locker = || {
        Locker::builder()
            .schema("listening")
            .listen_url(&direct)
            .postgres(&bouncer.url())
            .unwrap()
    };
    let (holder, waiter) = (locker(), locker());
    // Once the waiter has tried (after its `LISTEN`, on the direct server, is in place),
    // it sleeps for its retry interval: only the release's notification can wake it early.
    let (guard, waiting) = queued(&holder, waiter, "listening", Duration::from_secs(30)).await;
    let listeners = shared_postgres().psql(
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN \"listening.released\"' \
         AND client_port IS NOT NULL",
    );
    assert_ne!(listeners, "0", "no LISTEN on the direct server");
    let released = Instant::now();
    guard.release().await.unwrap();
    let (got, at) = waiting.await.unwrap();
    assert!(got.is_ok(), "{got:?}");
    let took = at - released;
    assert!(
        took < Duration::from_secs(8),
        "woken after {took:?}, not promptly"
    );
    no_rows_left("listening").await.unwrap();
}

/// A listen URL that cannot be reached (a wrong host, a server down) costs the prompt
/// wake-ups, not the waiting: waiters poll instead of waiting for the `LISTEN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_listen_url_falls_back_to_polling() {
    let bouncer = shared_pgbouncer();
    let nowhere = format!(
        "postgres://postgres:secret-pw@127.0.0.1:{}/postgres",
        free_port()
    );
    let locker = || {
        Locker::builder()
            .schema("unheard")
            .listen_url(&nowhere)
            .postgres(&bouncer.url())
            .unwrap()
    };
    let (holder, waiter) = (locker(), locker());
    let (guard, waiting) = queued(&holder, waiter, "unheard", Duration::from_millis(200)).await;
    let released = Instant::now();
    guard.release().await.unwrap();
    let (got, at) = waiting.await.unwrap();
    assert!(got.is_ok(), "{got:?}");
    let took = at - released;
    assert!(took < Duration::from_secs(10), "woken after {took:?}");
    no_rows_left("unheard").await.unwrap();
}

/// Semaphore permits and read/write leases go through the pooler too (`acquire_lease`),
/// and leave no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphores_and_read_write_locks_leave_no_rows() {
    let lockers = two_lockers("leases");
    let opts = LockOptions::default()
        .timeout(Duration::from_secs(60))
        .retry_interval(Duration::from_millis(20));
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let locker = lockers[i % 2].clone();
            let (inside, most) = (inside.clone(), most.clone());
            tokio::spawn(async move {
                let sem = locker.semaphore("pool", 2);
                let rw = locker.rw("doc");
                for _ in 0..5 {
                    let (inside, most) = (inside.clone(), most.clone());
                    sem.run(opts, || async move {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await?;
                    if i % 4 == 0 {
                        rw.write(opts, || async {}).await?;
                    } else {
                        rw.read(opts, || async {}).await?;
                    }
                }
                Ok::<_, locked::LockError>(())
            })
        })
        .collect();
    for task in tasks {
        let out = task.await.unwrap();
        assert!(out.is_ok(), "{out:?}");
    }
    assert!(most.load(Ordering::SeqCst) <= 2, "more than 2 permits held");
    no_rows_left("leases").await.unwrap();
}

/// A small deterministic generator: the cancel points vary, the run repeats.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_acquisitions_and_runs_leave_no_rows() {
    let lockers = two_lockers("cancels");
    lockers[0]
        .run("warm", LockOptions::default(), || async {})
        .await
        .unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let opts = LockOptions::default().timeout(Duration::from_secs(2));
    for i in 0..200usize {
        let locker = &lockers[i % 2];
        let key = format!("cancel:{}", i % 3);
        // Dropped at once, mid-statement, or after it landed (the guard then goes away).
        let after = Duration::from_micros(xorshift(&mut seed) % 3000);
        if i % 2 == 0 {
            let _ = tokio::time::timeout(after, locker.acquire(&key, opts)).await;
        } else {
            let body = || async { tokio::time::sleep(Duration::from_millis(1)).await };
            let _ = tokio::time::timeout(after, locker.run(&key, opts, body)).await;
        }
    }
    no_rows_left("cancels").await.unwrap();
    // And the store still serves through the pooler.
    lockers[1]
        .run(
            "cancel:0",
            opts.timeout(Duration::from_secs(30)),
            || async {},
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pgbouncer_is_a_backend_error_naming_postgresql_not_redis() {
    let mut bouncer = PgBouncer::start(shared_postgres());
    let locker = bouncer.locker("killed");
    locker
        .run("warm", LockOptions::default(), || async {})
        .await
        .unwrap();
    bouncer.kill();
    let start = Instant::now();
    let opts = LockOptions::default().timeout(Duration::from_secs(1));
    let err = locker
        .run("after", opts, || async {
            unreachable!("ran without its lock")
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(err.is_backend(), "{err:?}");
    assert!(
        msg.contains(&format!("127.0.0.1:{}", bouncer.port)),
        "{msg}"
    );
    assert!(msg.contains("postgres"), "{msg}");
    assert!(msg.contains("PostgreSQL"), "{msg}");
    assert!(!msg.to_lowercase().contains("redis"), "{msg}");
    assert!(!msg.contains("secret-pw"), "{msg}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

/// The store's statements leave nothing on a server connection: another client of
/// pgbouncer finds no prepared statement on the shared server connections, and hears no
/// stray notification (psql would print it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_prepared_statement_is_left_on_the_shared_server_connections() {
    let bouncer = shared_pgbouncer();
    let locker = bouncer.locker("unnamed");
    for i in 0..20 {
        locker
            .run(&format!("k{}", i % 2), LockOptions::default(), || async {})
            .await
            .unwrap();
    }
    // Whichever server connection this lands on, it holds no named statement.
    for _ in 0..POOL_SIZE * 2 {
        let named = bouncer
            .try_psql("SELECT count(*) FROM pg_prepared_statements")
            .unwrap();
        assert_eq!(named, "0", "a prepared statement outlived its transaction");
    }
    no_rows_left("unnamed").await.unwrap();
}
