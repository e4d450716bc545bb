//! `SqliteStore`: locks shared by the processes of one host, in one SQLite file, with no
//! server to run.
//!
//! ## Behavior
//! - The file is created with its schema when missing (its directory must exist): tables
//!   `locks` (key, token, fence, expiry), `leases` (semaphore permits, read/write leases),
//!   `writers` (waiting writers) and `fence` (the counter, which survives restarts and
//!   never goes back). `schema.sql` is the same DDL.
//! - WAL mode, and a busy timeout, so that processes wait on each other rather than fail
//!   with `SQLITE_BUSY`; every write is one `BEGIN IMMEDIATE` transaction, run on tokio's
//!   blocking threads.
//! - Time is the host's wall clock in milliseconds, which every process on the host
//!   shares. A clock stepped forward expires leases early (a holder's renewal then finds
//!   its lock gone and its body is stopped); stepped back, it makes leases last longer.
//! - Waiting: a release wakes the waiters of every `Locker` of the process on the file at
//!   once; a release by another process is seen within about 5 ms by a watcher thread
//!   that reads the file's change counter while anyone waits (`feed`). Polling every
//!   `retry_interval` (and no later than the holder's ttl) stays the fallback.
//!
//! ## Without the `sqlite` feature
//! Only [`ENTRY`] is compiled: the registry still knows the store, and naming it says
//! which feature to enable.

#[cfg(feature = "sqlite")]
mod feed;
#[cfg(feature = "sqlite")]
mod file;
#[cfg(feature = "sqlite")]
mod ops;
#[cfg(feature = "sqlite")]
mod store;

#[cfg(feature = "sqlite")]
pub(crate) use store::SqliteStore;

use super::registry::{Entry, Implied};

/// The database file for `LOCK_STORE=sqlite`: a path, or a `sqlite://` URL
/// (`locked::LOCK_SQLITE_PATH`).
pub(crate) const LOCK_SQLITE_PATH: &str = "LOCK_SQLITE_PATH";

/// The registry's entry: `LOCK_STORE=sqlite`, or implied by `LOCK_SQLITE_PATH`.
pub(crate) const ENTRY: Entry = Entry {
    name: "sqlite",
    help: "SQLite, one file shared by the processes of one host, e.g. `/var/lib/app/locks.db`",
    schemes: &["sqlite://"],
    url_vars: &[LOCK_SQLITE_PATH],
    other_vars: &[],
    url_example: "a file path, e.g. `/var/lib/app/locks.db` (or `sqlite:///var/lib/app/locks.db`)",
    feature: Some("sqlite"),
    implied: Implied::ByUrl,
    #[cfg(feature = "sqlite")]
    open_from_env: Some(from_env),
    #[cfg(not(feature = "sqlite"))]
    open_from_env: None,
};

/// The file from `LOCK_SQLITE_PATH`.
#[cfg(feature = "sqlite")]
fn from_env(
    _settings: &super::Settings,
    get: super::registry::Lookup<'_>,
) -> Result<super::AnyStore, crate::error::LockError> {
    let (var, path) = ENTRY.require_url(get)?;
    open(&path).map(Into::into).map_err(|e| match e {
        crate::error::LockError::Config { message, .. } => crate::error::LockError::Config {
            setting: var.to_owned(),
            message,
        },
        other => other,
    })
}

/// The SQLite file at `path` (a path, or a `sqlite://` URL); a `Config` error on
/// `sqlite path` when it is empty. The file is opened (and created) on first use.
#[cfg(feature = "sqlite")]
pub(crate) fn open(path: &str) -> Result<SqliteStore, crate::error::LockError> {
    let path = path.trim();
    let path = ENTRY
        .schemes
        .iter()
        .find_map(|scheme| path.strip_prefix(scheme))
        .unwrap_or(path);
    if path.is_empty() {
        return Err(crate::error::LockError::config(
            "sqlite path",
            "the path of the SQLite file is empty",
            "give a file path, e.g. `/var/lib/app/locks.db`",
        ));
    }
    Ok(SqliteStore::new(std::path::PathBuf::from(path)))
}
