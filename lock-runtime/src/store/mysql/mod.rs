//! `MysqlStore`: locks in a lease table of a MySQL 8 or MariaDB 10.11 database (tested on
//! MariaDB 10.11).
//!
//! ## Why a lease table, not `GET_LOCK`
//! `GET_LOCK` is held by one session: a pooled connection returned to the pool by a
//! cancelled future keeps it, a dropped connection loses it silently, and it gives no
//! fencing token. Here a lock is a row (`k`, `token`, `fence`, `expires_at`) that any
//! connection can take, renew or delete by comparing tokens, and that lapses by itself.
//!
//! ## Why mysql_async
//! mysql_async is pure Rust and async on tokio, with a pool of its own, prepared
//! statements cached per connection, and the server's error codes (deadlock, lock wait
//! timeout, read-only) at hand. sqlx's MySQL driver would bring its query layer and a
//! second pool type for the same few statements, and its errors hide the codes behind
//! its own kinds.
//!
//! ## Behavior
//! - The tables live in the builder's database (`LockerBuilder::database`), else the
//!   URL's: `locked_locks` (one row per key: a lock, or the key's leases' latest expiry),
//!   `locked_leases` (semaphore permits, read/write leases), `locked_writers` (waiting
//!   writers), `locked_fence` (the fencing counter, one row). The database and the tables
//!   are created on first use when missing; `schema.sql` is the same DDL, for those who
//!   run migrations themselves.
//! - Every time is the server's clock (`UTC_TIMESTAMP(6)`, in ms), never the client's.
//! - Taking one key is one statement (`INSERT ... ON DUPLICATE KEY UPDATE` that takes the
//!   row only when it has expired or is the caller's). Several keys, a fenced lock, and
//!   every lease are one InnoDB transaction (READ COMMITTED) whose rows are locked in key
//!   order. Release and extend compare tokens. A deadlock (1213) or a lock wait timeout
//!   (1205) is retried within the call's time.
//! - Group commit (`batch`): while two calls of a `Locker` are out, its other
//!   non-waiting single-key lock takes and single-key lock releases queue, and go
//!   together when one returns, as one text query of several statements (one multi-row
//!   `INSERT ... ON DUPLICATE KEY UPDATE`, one `DELETE`), each caller getting its own
//!   answer. No timer: a lone call goes straight out.
//! - Fences come from the counter row (`LAST_INSERT_ID(value + 1)`), in the acquiring
//!   transaction: they rise strictly, across expiry and server restarts.
//! - Each call runs to its end (`store::finish`): in its caller's task while the caller
//!   waits, on a task of its own once it stops waiting. An acquisition whose caller went
//!   away releases what it took, after its statement, and no connection is dropped
//!   mid-statement.
//! - Waiting: a release wakes the waiters of every `Locker` of the process on the same
//!   database at once (their queues, `feed`); MySQL has no notifications, so waiters in
//!   other processes poll every `retry_interval` (and no later than the holder's ttl).
//! - Connecting (and taking a connection from the pool) is bounded by 2 s; a server that
//!   is down, unreachable, read-only or refuses the password is a `Backend` error naming
//!   the host and the cause. The URL's password never appears in errors, logs or `Debug`.
//!
//! ## Without the `mysql` feature
//! Only [`ENTRY`] is compiled: the registry still knows the store, and naming it says
//! which feature to enable.

#[cfg(feature = "mysql")]
mod batch;
#[cfg(feature = "mysql")]
mod feed;
#[cfg(feature = "mysql")]
mod ops;
#[cfg(feature = "mysql")]
mod setup;
#[cfg(feature = "mysql")]
mod sql;
#[cfg(feature = "mysql")]
mod store;

#[cfg(feature = "mysql")]
pub(crate) use store::MysqlStore;

use super::postgres::{DATABASE_URL, LOCK_DATABASE_URL};
use super::registry::{Entry, Implied};

/// The registry's entry: `LOCK_STORE=mysql` (never implied: `DATABASE_URL` alone is
/// often set for other reasons), its URL from `LOCK_DATABASE_URL` or `DATABASE_URL`.
pub(crate) const ENTRY: Entry = Entry {
    name: "mysql",
    help: "MySQL or MariaDB, a lease table, e.g. `mysql://app:pw@127.0.0.1:3306/app`",
    schemes: &["mysql://"],
    url_vars: &[LOCK_DATABASE_URL, DATABASE_URL],
    other_vars: &[],
    url_example: "e.g. `mysql://app:password@127.0.0.1:3306/app`",
    feature: Some("mysql"),
    implied: Implied::Never,
    #[cfg(feature = "mysql")]
    open_from_env: Some(from_env),
    #[cfg(not(feature = "mysql"))]
    open_from_env: None,
};

/// The URL from `LOCK_DATABASE_URL`, else `DATABASE_URL`.
#[cfg(feature = "mysql")]
fn from_env(
    settings: &super::Settings,
    get: super::registry::Lookup<'_>,
) -> Result<super::AnyStore, crate::error::LockError> {
    let (var, url) = ENTRY.require_url(get)?;
    open(&url, settings).map(Into::into).map_err(|e| match e {
        crate::error::LockError::Config { setting, message } if setting != "database" => {
            crate::error::LockError::Config {
                setting: var.to_owned(),
                message,
            }
        }
        other => other,
    })
}

/// MySQL at `url` (`LockerBuilder::mysql`), its tables in the settings' database or the
/// URL's. The URL is checked now; the server is reached on first use.
#[cfg(feature = "mysql")]
pub(crate) fn open(
    url: &str,
    settings: &super::Settings,
) -> Result<MysqlStore, crate::error::LockError> {
    store::MysqlStore::open(url, settings.database.as_deref())
}
