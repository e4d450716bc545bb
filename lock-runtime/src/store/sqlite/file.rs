//! The database file: opened (and created, with its schema) on first use, in WAL mode with
//! a busy timeout, and every call run on a blocking thread in one transaction.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{BoxError, StoreError};

/// How long a call waits for another process's transaction before it fails.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(4);

/// The schema, run on every open (`IF NOT EXISTS`).
const SCHEMA_SQL: &str = include_str!("schema.sql");

/// What a call does in the transaction it shares (given with the host's time in ms and
/// whether the call is alone in it, or `None` when the transaction could not begin): its
/// statements, in a savepoint of its own when others share the transaction; then, once the
/// transaction has ended, its answer. The work also says how its statements went.
type Work = Box<dyn FnOnce(Option<(&Transaction<'_>, i64, bool)>) -> (Finish, Ran) + Send>;

/// How a call's statements went.
#[derive(Clone, Copy, Default)]
struct Ran {
    /// They failed (a call alone then rolls the transaction back instead of committing).
    failed: bool,
    /// They failed for a reason of the connection's own: it is opened again next time.
    broken: bool,
}
/// A call's answer, told how its transaction ended: `None` committed, else the error
/// (made anew for each call that shared it).
type Finish = Box<dyn FnOnce(Option<&dyn Fn() -> BoxError>) + Send>;

/// A call waiting for the file's thread.
struct Job {
    /// Whether it writes (`BEGIN IMMEDIATE`) or only reads (a deferred transaction).
    writes: bool,
    work: Work,
}

/// The most calls one transaction carries.
const MAX_GROUP: usize = 64;

/// One file, and the thread that runs every call on its connection (opened on first
/// use), one after the other in the order they were made: a background release sent
/// after a dropped acquisition always runs after it.
///
/// Group commit: the calls that queued while the thread was busy run together in one
/// transaction, each in a savepoint of its own (one that fails rolls back alone), with one
/// commit for all; each caller hears its answer only after that commit. A call that
/// finds the thread idle runs alone, as before.
pub(super) struct File {
    path: PathBuf,
    jobs: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    /// Bumped before each commit (see `feed`).
    commits: Arc<AtomicU64>,
}

impl File {
    pub(super) fn new(path: PathBuf, commits: Arc<AtomicU64>) -> Self {
        Self {
            path,
            jobs: Mutex::new(None),
            commits,
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `op` in a `BEGIN IMMEDIATE` transaction on the file's thread (shared with the
    /// calls queued beside it), with the host's time in ms; commits what it did unless it
    /// failed. The call goes ahead if its caller stops waiting: a dropped acquisition
    /// still lands (and is released by the engine after it).
    pub(super) async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BoxError> {
        self.call(true, op).await
    }

    /// As [`File::write`] for a call that only reads (`is_locked`, `inspect`, `list`, time
    /// left): a deferred transaction when it goes alone or with other reads, which takes
    /// no write lock, so that readers in many processes never queue behind one another.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BoxError> {
        self.call(false, op).await
    }

    async fn call<T: Send + 'static>(
        &self,
        writes: bool,
        op: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BoxError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let path = self.path.clone();
        let work: Work = Box::new(move |ctx| {
            let out = ctx.map(|(tx, now, alone)| {
                // Alone, a failure rolls the whole transaction back: no savepoint needed.
                if alone {
                    op(tx, now)
                } else {
                    in_savepoint(tx, now, op)
                }
            });
            let ran = Ran {
                failed: matches!(&out, Some(Err(_))),
                broken: matches!(&out, Some(Err(e)) if !busy(e)),
            };
            let finish: Finish = Box::new(move |ended| {
                let out = match (out, ended) {
                    (Some(Ok(v)), None) => Ok(v),
                    (Some(Err(e)), _) => Err(from_sqlite(&path, e)),
                    (_, Some(error)) => Err(error()),
                    (None, None) => Err(failed(&path, "the call did not run")),
                };
                let _ = answer.send(out);
            });
            (finish, ran)
        });
        self.send(Job { writes, work })?;
        answered
            .await
            .map_err(|_| failed(&self.path, "the file's thread stopped"))?
    }

    /// Hands `job` to the file's thread, starting it on first use (or after it died).
    fn send(&self, job: Job) -> Result<(), BoxError> {
        let mut jobs = self
            .jobs
            .lock()
            .map_err(|_| failed(&self.path, "a call panicked"))?;
        let job = match jobs.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                // The thread is gone (it panicked): a new one takes the call.
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let (path, commits) = (self.path.clone(), self.commits.clone());
        std::thread::Builder::new()
            .name("locked-sqlite".to_owned())
            .spawn(move || {
                let mut conn = None;
                // Ends when the store (every sender) is gone.
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    run(&path, &mut conn, &commits, group);
                }
            })
            .map_err(|e| failed(&self.path, &format!("no thread for the file: {e}")))?;
        tx.send(job)
            .map_err(|_| failed(&self.path, "the file's thread stopped"))?;
        *jobs = Some(tx);
        Ok(())
    }
}

/// `op` in a savepoint: what it changed is rolled back if it fails, and only that.
fn in_savepoint<T>(
    tx: &Transaction<'_>,
    now: i64,
    op: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    tx.execute_batch("SAVEPOINT call")?;
    match op(tx, now) {
        Ok(v) => {
            tx.execute_batch("RELEASE call")?;
            Ok(v)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO call; RELEASE call")?;
            Err(e)
        }
    }
}

/// Whether SQLite refused for another process's transaction (the connection is sound).
fn busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// One group of calls on the thread: the connection (opened if need be), one transaction
/// (immediate if any call writes), each call's work, the commit, then every answer. A
/// connection that failed for a reason of its own is opened again next time.
fn run(path: &Path, slot: &mut Option<Connection>, commits: &AtomicU64, group: Vec<Job>) {
    if slot.is_none() {
        match connect(path) {
            Ok(conn) => *slot = Some(conn),
            Err(e) => {
                let message = e.to_string();
                return fail(group, &|| StoreError::boxed("SQLite", message.clone()));
            }
        }
    }
    let Some(conn) = slot.as_mut() else {
        return fail(group, &|| failed(path, "the connection is missing"));
    };
    if !run_on(path, conn, commits, group) {
        *slot = None;
    }
}

/// [`run`] on an open connection; whether the connection is still sound.
fn run_on(path: &Path, conn: &mut Connection, commits: &AtomicU64, group: Vec<Job>) -> bool {
    let writes = group.iter().any(|job| job.writes);
    let behavior = if writes {
        TransactionBehavior::Immediate
    } else {
        TransactionBehavior::Deferred
    };
    let tx = match conn.transaction_with_behavior(behavior) {
        Ok(tx) => tx,
        Err(e) => {
            fail(group, &|| from_sqlite(path, copy(&e)));
            return busy(&e);
        }
    };
    let now = now_ms();
    let alone = group.len() == 1;
    let (mut broken, mut failed) = (false, false);
    let mut finishes = Vec::with_capacity(group.len());
    for job in group {
        let (finish, ran) = (job.work)(Some((&tx, now, alone)));
        broken |= ran.broken;
        failed |= ran.failed;
        finishes.push(finish);
    }
    if alone && failed {
        // Rolled back as the transaction drops; the call's own error is its answer.
        drop(tx);
        finishes.into_iter().for_each(|finish| finish(None));
        return !broken;
    }
    if writes {
        commits.fetch_add(1, Ordering::AcqRel);
    }
    match tx.commit() {
        Ok(()) => finishes.into_iter().for_each(|finish| finish(None)),
        Err(e) => {
            broken |= !busy(&e);
            let error = || from_sqlite(path, copy(&e));
            finishes.into_iter().for_each(|finish| finish(Some(&error)));
        }
    }
    !broken
}

/// Every call of `group` fails with `error`, none having run.
fn fail(group: Vec<Job>, error: &dyn Fn() -> BoxError) {
    for job in group {
        let (finish, _) = (job.work)(None);
        finish(Some(error));
    }
}

/// A second copy of a transaction's error, for each call that shared it.
fn copy(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// Opens the file (creating it, not its directory), sets WAL and the busy timeout, and
/// creates the schema when missing.
fn connect(path: &Path) -> Result<Connection, BoxError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| from_sqlite(path, e))?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Every statement of `ops` stays prepared.
        conn.set_prepared_statement_cache_capacity(64);
        // WAL lets readers go on beside the one writer; `NORMAL` syncs at checkpoints,
        // which WAL keeps consistent (a crash of the host may forget the last commits,
        // and with them locks taken just before it: nobody holds those any more).
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidQuery);
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA_SQL} COMMIT;"))
    };
    setup().map_err(|e| from_sqlite(path, e))?;
    Ok(conn)
}

/// The host's wall clock, ms since the epoch: shared by every process on the host.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A SQLite error, naming the file and saying what to do.
fn from_sqlite(path: &Path, e: rusqlite::Error) -> BoxError {
    let code = e.sqlite_error_code();
    let fix = match code {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            format!(
                "another process held the database for more than {BUSY_TIMEOUT:?}; keep \
                 transactions on this file short"
            )
        }
        Some(rusqlite::ErrorCode::NotADatabase) => {
            "the file is not a SQLite database; give the store a file of its own".to_owned()
        }
        Some(rusqlite::ErrorCode::CannotOpen) => {
            "check that the directory exists and that this process may write to it".to_owned()
        }
        Some(rusqlite::ErrorCode::ReadOnly) | Some(rusqlite::ErrorCode::PermissionDenied) => {
            "the file or its directory is read-only to this process; give it write access"
                .to_owned()
        }
        _ if matches!(e, rusqlite::Error::InvalidQuery) => {
            "the file refused WAL mode (a network file system?); put it on a local disk".to_owned()
        }
        _ => "check the file".to_owned(),
    };
    failed(path, &format!("{e}; {fix}"))
}

fn failed(path: &Path, message: &str) -> BoxError {
    StoreError::boxed("SQLite", format!("sqlite at {}: {message}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls made while the thread is busy go in one transaction, with one commit; one of
    /// them that fails rolls back only what it did, and fails alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_calls_share_one_commit_and_a_failing_one_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let commits = Arc::new(AtomicU64::new(0));
        let file = Arc::new(File::new(dir.path().join("group.db"), commits.clone()));
        file.write(|tx, _| tx.execute_batch("CREATE TABLE t (n INTEGER)"))
            .await
            .unwrap();
        // Alone, a failing call's statements are rolled back with its transaction.
        let alone = file
            .write(|tx, _| {
                tx.execute("INSERT INTO t VALUES (-1)", [])?;
                Err::<(), _>(rusqlite::Error::InvalidQuery)
            })
            .await;
        assert!(alone.is_err());
        let before = commits.load(Ordering::Acquire);
        // Keeps the thread busy while the others queue behind it.
        let first = tokio::spawn({
            let file = file.clone();
            async move {
                file.write(|tx, _| {
                    std::thread::sleep(Duration::from_millis(1500));
                    tx.execute("INSERT INTO t VALUES (0)", [])
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let queued: Vec<_> = (1..=10)
            .map(|n: i64| {
                let file = file.clone();
                tokio::spawn(async move {
                    file.write(move |tx, _| {
                        tx.execute("INSERT INTO t VALUES (?1)", [n])?;
                        if n == 5 {
                            return Err(rusqlite::Error::InvalidQuery);
                        }
                        Ok(n)
                    })
                    .await
                })
            })
            .collect();
        first.await.unwrap().unwrap();
        for (i, call) in queued.into_iter().enumerate() {
            let out = call.await.unwrap();
            if i + 1 == 5 {
                assert!(out.is_err(), "the failing call answered {out:?}");
            } else {
                assert_eq!(out.unwrap(), i64::try_from(i + 1).unwrap());
            }
        }
        let rows: Vec<i64> = file
            .read(|tx, _| {
                let mut stmt = tx.prepare("SELECT n FROM t ORDER BY n")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await
            .unwrap();
        assert_eq!(rows, vec![0, 1, 2, 3, 4, 6, 7, 8, 9, 10]);
        let used = commits.load(Ordering::Acquire) - before;
        assert!(
            used <= 3,
            "11 calls took {used} commits: the queued ones did not share"
        );
    }
}
