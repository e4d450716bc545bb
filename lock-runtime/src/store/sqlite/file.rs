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

/// A call, run on the file's thread with its connection.
type Job = Box<dyn FnOnce(&mut Option<Connection>) + Send>;

/// One file, and the thread that runs every call on its connection (opened on first
/// use), one after the other in the order they were made: a background release sent
/// after a dropped acquisition always runs after it.
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

    /// Runs `op` in one `BEGIN IMMEDIATE` transaction on the file's thread, with the
    /// host's time in ms; commits what it did unless it failed. The call goes ahead if
    /// its caller stops waiting: a dropped acquisition still lands (and is released by
    /// the engine after it).
    pub(super) async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BoxError> {
        self.call(TransactionBehavior::Immediate, op).await
    }

    /// As [`File::write`] for a call that only reads (`is_locked`, `inspect`, `list`, time
    /// left): a deferred transaction, which takes no write lock, so that readers in many
    /// processes never queue behind one another.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BoxError> {
        self.call(TransactionBehavior::Deferred, op).await
    }

    async fn call<T: Send + 'static>(
        &self,
        behavior: TransactionBehavior,
        op: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BoxError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let (path, commits) = (self.path.clone(), self.commits.clone());
        let job: Job = Box::new(move |slot: &mut Option<Connection>| {
            let _ = answer.send(run(&path, slot, &commits, behavior, op));
        });
        self.send(job)?;
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
        std::thread::Builder::new()
            .name("locked-sqlite".to_owned())
            .spawn(move || {
                let mut conn = None;
                // Ends when the store (every sender) is gone.
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| failed(&self.path, &format!("no thread for the file: {e}")))?;
        tx.send(job)
            .map_err(|_| failed(&self.path, "the file's thread stopped"))?;
        *jobs = Some(tx);
        Ok(())
    }
}

/// One call on the thread: the connection (opened if need be), a transaction, `op`.
fn run<T>(
    path: &Path,
    slot: &mut Option<Connection>,
    commits: &AtomicU64,
    behavior: TransactionBehavior,
    op: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<T>,
) -> Result<T, BoxError> {
    if slot.is_none() {
        *slot = Some(connect(path)?);
    }
    let Some(conn) = slot.as_mut() else {
        return Err(failed(path, "the connection is missing"));
    };
    let attempt = || -> rusqlite::Result<T> {
        let tx = conn.transaction_with_behavior(behavior)?;
        let out = op(&tx, now_ms())?;
        if !matches!(behavior, TransactionBehavior::Deferred) {
            commits.fetch_add(1, Ordering::AcqRel);
        }
        tx.commit()?;
        Ok(out)
    };
    attempt().map_err(|e| {
        // A connection that failed for a reason of its own is opened again next time.
        if !matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ) {
            *slot = None;
        }
        from_sqlite(path, e)
    })
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
