//! What only a real SQLite file shows: two `Locker`s of one process on one file, and bad
//! files (a missing directory, one this process cannot write, a file that is not a
//! database, a database another connection keeps locked), each a clear error naming the
//! path, in bounded time.

use std::time::Duration;

use locked::{LockError, LockOptions, Locker};
use tokio::time::Instant;

fn locker_in(dir: &tempfile::TempDir) -> (Locker, String) {
    let path = dir.path().join("locks.db").display().to_string();
    (Locker::sqlite(&path).unwrap(), path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lockers_on_one_file_exclude_each_other_and_wake_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, path) = locker_in(&dir);
    let b = Locker::sqlite(&path).unwrap();
    let opts = LockOptions::default().ttl(Duration::from_secs(30));
    let held = a.acquire("job", opts).await.unwrap();
    assert!(b.try_acquire("job", opts).await.unwrap().is_none());
    assert!(b.is_locked("job").await.unwrap());
    // B waits with slow polling: only a wake-up from A's release gets it in quickly.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let slow = opts
                .timeout(Duration::from_secs(20))
                .retry_interval(Duration::from_secs(10));
            b.run("job", slow, || async { Instant::now() }).await
        })
    };
    let seen = locked_test_support::eventually(Duration::from_secs(5), async || {
        a.inspect("job").await.unwrap().waiters >= 1
    })
    .await;
    assert!(seen, "the waiter is not seen");
    let released = Instant::now();
    held.release().await.unwrap();
    let entered = waiter.await.unwrap().unwrap();
    let after = entered.saturating_duration_since(released);
    assert!(
        after < Duration::from_secs(2),
        "woken {after:?} after the release"
    );
    assert!(!a.is_locked("job").await.unwrap());
}

/// The error of a first call on `path`, and how long it took.
async fn first_call(path: &str) -> (LockError, Duration) {
    let locker = Locker::sqlite(path).unwrap();
    let start = Instant::now();
    let err = locker
        .try_acquire("k", LockOptions::default())
        .await
        .unwrap_err();
    (err, start.elapsed())
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("locks.db");
    let path = path.display().to_string();
    let (err, took) = first_call(&path).await;
    let msg = err.to_string();
    assert!(err.is_backend(), "{err:?}");
    assert!(msg.contains(&path), "{msg}");
    assert!(msg.contains("directory exists"), "{msg}");
    assert!(msg.contains("check that SQLite"), "{msg}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_directory_this_process_cannot_write_is_a_clear_error() {
    // Root writes through permissions, but not into /proc.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let dir = tempfile::tempdir().unwrap();
    let path = if root {
        "/proc/locked-test.db".to_owned()
    } else {
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        let mut perms = std::fs::metadata(&ro).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
        std::fs::set_permissions(&ro, perms).unwrap();
        ro.join("locks.db").display().to_string()
    };
    let (err, took) = first_call(&path).await;
    let msg = err.to_string();
    assert!(err.is_backend(), "{err:?}");
    assert!(msg.contains(&path), "{msg}");
    assert!(
        msg.contains("may write to it") || msg.contains("read-only"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_clear_error_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "not a database, just some text that someone keeps here\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let path_s = path.display().to_string();
    let (err, took) = first_call(&path_s).await;
    let msg = err.to_string();
    assert!(err.is_backend(), "{err:?}");
    assert!(msg.contains(&path_s), "{msg}");
    assert!(msg.contains("not a SQLite database"), "{msg}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "the file was changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_past_the_busy_timeout_fails_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let (locker, path) = locker_in(&dir);
    // The file exists, with its schema.
    assert!(!locker.is_locked("k").await.unwrap());
    // Another connection (another process, to SQLite) keeps the write lock for 8 s.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(8));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let start = Instant::now();
    let err = locker
        .try_acquire("k", LockOptions::default())
        .await
        .unwrap_err();
    let took = start.elapsed();
    let msg = err.to_string();
    assert!(err.is_backend(), "{err:?}");
    assert!(msg.contains("locks.db"), "{msg}");
    assert!(
        msg.contains("another process held the database") || msg.contains("did not answer"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(7), "{took:?}");
    holder.join().unwrap();
    // Once the other connection is done, the same locker works.
    let guard = locker.acquire("k", LockOptions::default()).await.unwrap();
    guard.release().await.unwrap();
}

/// A release by another process (here a connection of the test's own, deleting the row as
/// another process's release would) wakes a waiter that polls only every 10 s: the
/// watcher sees the file's change counter move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_by_another_process_wakes_a_waiter_within_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let (locker, path) = locker_in(&dir);
    let opts = LockOptions::default().ttl(Duration::from_secs(30));
    let held = locker.acquire("shared-job", opts).await.unwrap();
    // The held row as another process would see it; this guard's own release must not
    // be what wakes the waiter.
    std::mem::forget(held);
    let waiter = {
        let locker = locker.clone();
        tokio::spawn(async move {
            let slow = opts
                .timeout(Duration::from_secs(20))
                .retry_interval(Duration::from_secs(10));
            locker
                .run("shared-job", slow, || async { Instant::now() })
                .await
        })
    };
    let watched = locked_test_support::eventually(Duration::from_secs(5), async || {
        locker.inspect("shared-job").await.unwrap().waiters >= 1
    })
    .await;
    assert!(watched, "the waiter is not seen");
    // Past the waiter's first try, into its wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = Instant::now();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let deleted = conn
        .execute("DELETE FROM locks WHERE key = 'lock:shared-job'", [])
        .unwrap();
    assert_eq!(deleted, 1);
    let entered = waiter.await.unwrap().unwrap();
    let after = entered.saturating_duration_since(released);
    println!("woken {after:?} after another connection's release (polling every 10 s)");
    assert!(
        after < Duration::from_secs(2),
        "woken {after:?} after the release"
    );
}

/// Calls that only read (`is_locked`, `inspect`, `list`) take no write lock: they answer
/// at once while another process writes, instead of queueing behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_while_another_process_holds_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (locker, path) = locker_in(&dir);
    let guard = locker
        .acquire("read-k", LockOptions::default())
        .await
        .unwrap();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let start = Instant::now();
    assert!(locker.is_locked("read-k").await.unwrap());
    assert!(locker.inspect("read-k").await.unwrap().held);
    assert_eq!(locker.list("read-*").await.unwrap().len(), 1);
    let took = start.elapsed();
    done_tx.send(()).unwrap();
    writer.join().unwrap();
    assert!(
        took < Duration::from_secs(2),
        "reads waited {took:?} for the writer"
    );
    guard.release().await.unwrap();
}
