//! Semaphores and read/write locks, on every store: the bound on holders, fair waiting
//! woken by releases, crash, expiry, renewal and loss, writer preference, and the errors
//! for a key used as two kinds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use locked::{LockError, LockOptions};
use locked_test_support::{Store, eventually, on_stores};
use tokio::time::Instant;

on_stores!(
    semaphore_admits_at_most_its_permits_and_serves_every_call,
    semaphore_of_one_permit_behaves_as_a_lock,
    semaphore_permit_count_disagreement_is_refused,
    semaphore_waiter_is_woken_by_a_release,
    semaphore_crashed_holders_permit_lapses_after_its_ttl,
    semaphore_permit_is_renewed_and_its_loss_stops_the_body,
    semaphore_permit_hands_off_to_another_locker,
    rw_many_readers_or_one_writer,
    rw_stream_of_readers_never_starves_a_waiting_writer,
    rw_writer_that_gives_up_lets_readers_in_again,
    rw_crashed_writer_lapses_and_renewal_keeps_readers_out,
);

/// Counts the holders inside a body at once.
#[derive(Default)]
struct Inside {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Inside {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Asks `take` every 100 ms for 1.8 s (three ttls of 600 ms), from another task (the
/// caller holds the key: its own asking would be a nested acquisition); every answer must
/// be a refusal.
async fn refused_for_three_ttls<F, Fut>(take: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Option<locked::LockGuard>, LockError>> + Send,
{
    tokio::spawn(async move {
        let until = Instant::now() + Duration::from_millis(1800);
        while Instant::now() < until {
            assert!(take().await.unwrap().is_none(), "taken while held");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
}

fn waiting() -> LockOptions {
    LockOptions::default()
        .timeout(Duration::from_secs(60))
        .retry_interval(Duration::from_millis(20))
}

async fn semaphore_admits_at_most_its_permits_and_serves_every_call(s: Store) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 4;
    let inside = Arc::new(Inside::default());
    let served = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let sem = s.other().semaphore("export:tenant", 3);
        let (inside, served) = (inside.clone(), served.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                sem.run(waiting(), || async {
                    inside.enter();
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    inside.leave();
                })
                .await
                .unwrap();
                served.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), TASKS * ROUNDS);
    let max = inside.max.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} holders of 3 permits at once");
    assert!(
        max >= 2,
        "the permits were never shared (at most {max} inside)"
    );
    assert_eq!(
        s.locker
            .semaphore("export:tenant", 3)
            .available()
            .await
            .unwrap(),
        3
    );
}

async fn semaphore_of_one_permit_behaves_as_a_lock(s: Store) {
    let one = s.locker.semaphore("report", 1);
    let held = one.acquire(LockOptions::default()).await.unwrap();
    assert!(s.locker.is_locked("report").await.unwrap());
    let other = s.other().semaphore("report", 1);
    assert!(
        other
            .try_acquire(LockOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    let opts = LockOptions::default().timeout(Duration::from_millis(200));
    let err = other.run(opts, || async {}).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(one.available().await.unwrap(), 0);
    held.release().await.unwrap();
    assert!(!s.locker.is_locked("report").await.unwrap());
    assert_eq!(
        other
            .try_run(LockOptions::default(), || async { 5 })
            .await
            .unwrap(),
        Some(5)
    );
}

async fn semaphore_permit_count_disagreement_is_refused(s: Store) {
    let three = s.locker.semaphore("pool", 3);
    let held = three.acquire(LockOptions::default()).await.unwrap();
    let err = s
        .other()
        .semaphore("pool", 5)
        .run(waiting(), || async {
            unreachable!("ran with another count")
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LockError::Config { .. }), "{msg}");
    for part in [
        "`permits`",
        &s.full("pool"),
        "semaphore of 3 permits",
        "semaphore of 5 permits",
    ] {
        assert!(msg.contains(part), "{part} missing from: {msg}");
    }
    // A key is one kind: a read/write lock or a semaphore asked of a lock's key is refused.
    let err = s
        .locker
        .rw("pool")
        .try_acquire_read(LockOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read/write lock"), "{err}");
    let lock = s
        .locker
        .acquire("plain", LockOptions::default())
        .await
        .unwrap();
    let err = s
        .other()
        .semaphore("plain", 2)
        .try_acquire(LockOptions::default())
        .await;
    assert!(err.unwrap_err().to_string().contains("an exclusive lock"));
    lock.release().await.unwrap();
    // A lock asked of the semaphore's key, waiting, is refused too, not left to time out.
    let err = s
        .other()
        .run("pool", waiting(), || async {
            unreachable!("ran beside a permit")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("semaphore"), "{err}");
    // Once every holder is gone, the next caller may start another count.
    held.release().await.unwrap();
    let five = s.other().semaphore("pool", 5);
    assert!(
        five.try_acquire(LockOptions::default())
            .await
            .unwrap()
            .is_some()
    );
    // No permits at all is a configuration error, before anything is sent.
    let err = s
        .locker
        .semaphore("none", 0)
        .try_acquire(LockOptions::default())
        .await;
    assert!(err.unwrap_err().to_string().contains("at least 1"));
}

async fn semaphore_waiter_is_woken_by_a_release(s: Store) {
    let sem = s.locker.semaphore("woken", 2);
    let a = sem.acquire(LockOptions::default()).await.unwrap();
    let b = sem.acquire(LockOptions::default()).await.unwrap();
    // Polling alone would take 30 s: only the release's announcement can wake it in time.
    let opts = LockOptions::default()
        .timeout(Duration::from_secs(20))
        .retry_interval(Duration::from_secs(30));
    let other = s.other().semaphore("woken", 2);
    let waiter = tokio::spawn(async move {
        let start = Instant::now();
        other.run(opts, || async {}).await.unwrap();
        start.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    a.release().await.unwrap();
    let waited = waiter.await.unwrap();
    assert!(
        waited >= Duration::from_millis(250),
        "it did not wait: {waited:?}"
    );
    assert!(
        released.elapsed() < Duration::from_secs(5),
        "woken {:?} after the release",
        released.elapsed()
    );
    b.release().await.unwrap();
}

async fn semaphore_crashed_holders_permit_lapses_after_its_ttl(s: Store) {
    let sem = s.locker.semaphore("crash", 1);
    let opts = LockOptions::default().ttl(Duration::from_millis(400));
    // A holder that crashes never releases: its guard is leaked, not dropped.
    std::mem::forget(sem.acquire(opts).await.unwrap());
    let other = s.other().semaphore("crash", 1);
    assert!(
        other
            .try_acquire(LockOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    let start = Instant::now();
    let taken = eventually(Duration::from_secs(10), async || {
        other
            .try_acquire(LockOptions::default())
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert!(taken, "the crashed holder's permit never lapsed");
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "it lapsed early"
    );
}

async fn semaphore_permit_is_renewed_and_its_loss_stops_the_body(s: Store) {
    let sem = s.locker.semaphore("renewed", 1);
    let opts = LockOptions::default().ttl(Duration::from_millis(600));
    let other = s.other().semaphore("renewed", 1);
    let out = sem
        .run(opts, || async {
            // Three ttls long: renewal keeps the permit.
            refused_for_three_ttls(move || {
                let other = other.clone();
                async move { other.try_acquire(LockOptions::default()).await }
            })
            .await;
            "done"
        })
        .await
        .unwrap();
    assert_eq!(out, "done");
    // Lost while held (an operator deletes the key): the body is stopped, Lost returned.
    let locker = s.locker.clone();
    let err = sem
        .run(opts, || async move {
            tokio::spawn(async move { locker.force_release("renewed").await.unwrap() })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(20)).await;
        })
        .await
        .unwrap_err();
    assert!(err.is_lost(), "{err}");
}

async fn semaphore_permit_hands_off_to_another_locker(s: Store) {
    let sem = s.locker.semaphore("handed", 2);
    let handed = sem.acquire(LockOptions::default()).await.unwrap().handoff();
    let other = s.other();
    let guard = other
        .restore(&handed, LockOptions::default())
        .await
        .unwrap();
    assert_eq!(sem.available().await.unwrap(), 1);
    guard.release().await.unwrap();
    assert_eq!(sem.available().await.unwrap(), 2);
    let err = other
        .restore(&handed, LockOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_lost(), "{err}");
}

async fn rw_many_readers_or_one_writer(s: Store) {
    let doc = s.locker.rw("doc:1");
    let other = s.other().rw("doc:1");
    let r1 = doc.acquire_read(LockOptions::default()).await.unwrap();
    let r2 = other.acquire_read(LockOptions::default()).await.unwrap();
    let r3 = other
        .try_acquire_read(LockOptions::default())
        .await
        .unwrap();
    assert!(r3.is_some(), "readers share the key");
    assert!(
        other
            .try_acquire_write(LockOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        other
            .try_write(LockOptions::default(), || async { 1 })
            .await
            .unwrap(),
        None
    );
    // A refused try_write leaves no intent: readers still come in.
    let r4 = doc.try_acquire_read(LockOptions::default()).await.unwrap();
    assert!(r4.is_some(), "a refused try_write kept a reader out");
    for r in [r1, r2] {
        r.release().await.unwrap();
    }
    drop((r3, r4));
    let writer = eventually(Duration::from_secs(5), async || {
        match other
            .try_acquire_write(LockOptions::default())
            .await
            .unwrap()
        {
            Some(w) => {
                std::mem::forget(w.auto_renew());
                true
            }
            None => false,
        }
    })
    .await;
    assert!(writer, "the writer never got in after the readers left");
    assert!(
        doc.try_acquire_read(LockOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        doc.try_acquire_write(LockOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    let opts = LockOptions::default().timeout(Duration::from_millis(200));
    assert!(doc.read(opts, || async {}).await.unwrap_err().is_timeout());
}

async fn rw_stream_of_readers_never_starves_a_waiting_writer(s: Store) {
    const READERS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(Inside::default());
    let writing = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for i in 0..READERS {
        let doc = s.other().rw("doc:hot");
        let (stop, inside, writing) = (stop.clone(), inside.clone(), writing.clone());
        readers.push(tokio::spawn(async move {
            // Staggered, overlapping reads: from the first one on, some reader always
            // holds the key, so a writer waiting for a moment without readers would wait
            // for ever.
            tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                doc.read(waiting(), || async {
                    assert!(
                        !writing.load(Ordering::SeqCst),
                        "a reader inside with the writer"
                    );
                    inside.enter();
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    inside.leave();
                })
                .await
                .unwrap();
                reads += 1;
            }
            reads
        }));
    }
    assert!(
        eventually(Duration::from_secs(10), async || inside
            .max
            .load(Ordering::SeqCst)
            >= 2)
        .await,
        "the readers never overlapped"
    );
    let doc = s.other().rw("doc:hot");
    let start = Instant::now();
    let opts = LockOptions::default()
        .timeout(Duration::from_secs(20))
        .retry_interval(Duration::from_millis(50));
    doc.write(opts, || async {
        writing.store(true, Ordering::SeqCst);
        assert_eq!(
            inside.now.load(Ordering::SeqCst),
            0,
            "readers inside with the writer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        writing.store(false, Ordering::SeqCst);
    })
    .await
    .unwrap();
    let waited = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    assert!(reads > READERS, "the readers barely ran ({reads} reads)");
    // The readers' leases at the writer's arrival end within 150 ms; waits for the
    // store's answers and a busy machine get generous room on top.
    assert!(
        waited < Duration::from_secs(8),
        "the writer waited {waited:?}"
    );
}

async fn rw_writer_that_gives_up_lets_readers_in_again(s: Store) {
    let doc = s.locker.rw("doc:giveup");
    let reader = doc.acquire_read(LockOptions::default()).await.unwrap();
    let writer = s.other().rw("doc:giveup");
    let opts = LockOptions::default().timeout(Duration::from_millis(600));
    let waiting = tokio::spawn(async move { writer.write(opts, || async {}).await });
    // While the writer waits, new readers are kept out...
    let third = s.other().rw("doc:giveup");
    let kept_out = eventually(Duration::from_secs(5), async || {
        match third
            .try_acquire_read(LockOptions::default())
            .await
            .unwrap()
        {
            Some(g) => {
                g.release().await.unwrap();
                false
            }
            None => true,
        }
    })
    .await;
    assert!(kept_out, "a waiting writer did not keep new readers out");
    // ...and once it gives up, its intent is withdrawn at once, not after its ttl (30 s).
    let err = waiting.await.unwrap().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let let_in = eventually(Duration::from_secs(5), async || {
        third
            .try_acquire_read(LockOptions::default())
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert!(let_in, "readers stayed out after the writer gave up");
    reader.release().await.unwrap();
}

async fn rw_crashed_writer_lapses_and_renewal_keeps_readers_out(s: Store) {
    let doc = s.locker.rw("doc:crash");
    let opts = LockOptions::default().ttl(Duration::from_millis(400));
    std::mem::forget(doc.acquire_write(opts).await.unwrap());
    let other = s.other().rw("doc:crash");
    assert!(
        other
            .try_acquire_read(LockOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    let lapsed = eventually(Duration::from_secs(10), async || {
        other
            .try_acquire_read(LockOptions::default())
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert!(lapsed, "the crashed writer's lease never lapsed");
    // A renewed writer outlives its ttl, and readers stay out all along.
    let opts = LockOptions::default().ttl(Duration::from_millis(600));
    doc.write(opts, || async {
        refused_for_three_ttls(move || {
            let other = other.clone();
            async move { other.try_acquire_read(LockOptions::default()).await }
        })
        .await;
    })
    .await
    .unwrap();
}
