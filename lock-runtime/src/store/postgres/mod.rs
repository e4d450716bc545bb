//! `PostgresStore`: locks in a lease table of the service's own PostgreSQL database.
//!
//! ## Why a lease table, not advisory locks
//! Session advisory locks (`pg_advisory_lock`) live on one pooled connection: a cancelled
//! future returns that connection to the pool still holding the lock, PgBouncer in
//! transaction mode breaks them, and they give no fencing token. Here a lock is a row
//! (`key`, `token`, `fence`, `expires_at`) that any connection can take, renew or delete
//! by comparing tokens, that lapses by itself, and whose fence comes from a sequence.
//!
//! ## Behavior
//! - The schema (default `locked`) is created on first use when missing: tables `locks`,
//!   `leases` (semaphore permits, read/write leases), `writers` (waiting writers), the
//!   sequence `fence` and the function `acquire_lease`. `schema.sql` is the same DDL, for
//!   those who run migrations themselves.
//! - Every time is the database server's (`clock_timestamp()`), never the client's.
//! - Acquire is one statement (`INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE expired`);
//!   several keys are one transaction, all or none. Release and extend compare tokens.
//! - An acquisition dropped while its statement runs finishes in a task of its own, which
//!   deletes the row it took: a cancelled caller leaves no row behind.
//! - Releases are announced with `NOTIFY` on one channel per schema (the key as payload);
//!   each `Locker` listens on one connection of its own, opened on first wait (to the
//!   listen URL when one is given). Polling stays the fallback, and a reconnect wakes
//!   every waiter.
//! - Works through PgBouncer in transaction mode. A pooler is recognised on the first
//!   connection: the backend pid announced at startup (`BackendKeyData`) is not the pid of
//!   the backend running its statements, since a pooler answers with a cancel key of its
//!   own. Behind one, every statement is sent unnamed with its parameter types
//!   (`query_typed`: parse, bind and execute in one round trip), so no prepared statement
//!   outlives its transaction; on a direct connection statements stay prepared once per
//!   connection (planned once). The schema is created in one transaction either way.
//! - A `LISTEN` through a pooler would stop hearing once its transaction ends, and stay on
//!   a shared server connection, announcing releases to other clients: the listener that
//!   finds a pooler sends none, and waiters poll every `retry_interval`, unless it has a
//!   direct URL (`listen_url`).
//! - The URL's password never appears in errors, logs or `Debug`.

//!
//! ## Without the `postgres` feature
//! Only [`ENTRY`] is compiled: the registry still knows the store, and naming it says
//! which feature to enable.

#[cfg(feature = "postgres")]
mod acquire;
#[cfg(feature = "postgres")]
mod batch;
#[cfg(feature = "postgres")]
mod conn;
#[cfg(feature = "postgres")]
mod listener;
#[cfg(feature = "postgres")]
mod setup;
#[cfg(feature = "postgres")]
mod sql;
#[cfg(feature = "postgres")]
mod store;

#[cfg(feature = "postgres")]
pub(crate) use store::{Postgres, PostgresStore};

use super::registry::{Entry, Implied};

/// The PostgreSQL URL for `LOCK_STORE=postgres`; wins over [`DATABASE_URL`]
/// (`locked::LOCK_DATABASE_URL`).
pub(crate) const LOCK_DATABASE_URL: &str = "LOCK_DATABASE_URL";
/// The PostgreSQL URL, as most services already set it (`locked::DATABASE_URL`).
pub(crate) const DATABASE_URL: &str = "DATABASE_URL";

/// A direct (unpooled) PostgreSQL URL for the connection a `Locker` listens for releases
/// on, when `LOCK_DATABASE_URL` goes through PgBouncer in transaction mode (see
/// `LockerBuilder::listen_url`).
pub(crate) const LOCK_DATABASE_LISTEN_URL: &str = "LOCK_DATABASE_LISTEN_URL";

/// The registry's entry: `LOCK_STORE=postgres` (never implied: `DATABASE_URL` alone
/// is often set for other reasons).
pub(crate) const ENTRY: Entry = Entry {
    name: "postgres",
    help: "PostgreSQL, a lease table, e.g. `postgres://app:pw@127.0.0.1:5432/app`",
    schemes: &["postgres://", "postgresql://"],
    url_vars: &[LOCK_DATABASE_URL, DATABASE_URL],
    other_vars: &[LOCK_DATABASE_LISTEN_URL],
    url_example: "e.g. `postgres://app:password@127.0.0.1:5432/app`",
    feature: Some("postgres"),
    implied: Implied::Never,
    #[cfg(feature = "postgres")]
    open_from_env: Some(from_env),
    #[cfg(not(feature = "postgres"))]
    open_from_env: None,
};

/// The URL from `LOCK_DATABASE_URL`, else `DATABASE_URL`; the listening connection's
/// from `LOCK_DATABASE_LISTEN_URL`, else the builder's listen URL, else the same.
#[cfg(feature = "postgres")]
fn from_env(
    settings: &super::Settings,
    get: super::registry::Lookup<'_>,
) -> Result<super::AnyStore, crate::error::LockError> {
    use crate::error::LockError;

    let (var, url) = ENTRY.require_url(get)?;
    let listen = get(LOCK_DATABASE_LISTEN_URL);
    let listen = listen
        .as_deref()
        .or(settings.listen_url.as_ref().map(|l| l.0.as_str()));
    open_with(&url, &settings.schema, listen)
        .map(Into::into)
        .map_err(|e| match e {
            LockError::Config { setting, message } => {
                let setting = match setting.as_str() {
                    "listen_url" => LOCK_DATABASE_LISTEN_URL,
                    "schema" => "schema",
                    _ => var,
                };
                LockError::Config {
                    setting: setting.to_owned(),
                    message,
                }
            }
            other => other,
        })
}

/// PostgreSQL at `url` (`LockerBuilder::postgres`), in the settings' schema, listening on
/// their listen URL when one is given. The URLs are checked now; the database is reached on
/// first use.
#[cfg(feature = "postgres")]
pub(crate) fn open(
    url: &str,
    settings: &super::Settings,
) -> Result<Postgres, crate::error::LockError> {
    let listen = settings.listen_url.as_ref().map(|l| l.0.as_str());
    open_with(url, &settings.schema, listen)
}

/// A `Config` error on `postgres url`, `schema` or `listen_url`.
#[cfg(feature = "postgres")]
fn open_with(
    url: &str,
    schema: &str,
    listen: Option<&str>,
) -> Result<Postgres, crate::error::LockError> {
    let mut store = PostgresStore::open(url, schema)?;
    if let Some(listen) = listen {
        store
            .listen_on(listen)
            .map_err(|bad| bad.at("listen_url"))?;
    }
    Ok(Postgres::new(store))
}
