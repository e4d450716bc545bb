//! The runtime of [`locked`](https://docs.rs/locked): all behaviour behind `#[locked]`.
//!
//! Use it through the `locked` facade crate, which re-exports everything here. The
//! [`Locker`] takes, renews and releases locks on a store (see below); [`Semaphore`] and
//! [`RwLock`] are its handles for N holders and for readers and writers; [`Election`]
//! campaigns for leadership of a key (one instance leads, the others stand by);
//! [`LockGuard`] is a held lock; [`LockOptions`] say how; [`LockError`] says what failed.
//!
//! # Stores
//!
//! One API on every store; [`Locker::from_env`] picks one from `LOCK_STORE` and the URLs.
//!
//! | Store | Constructor | `LOCK_STORE` |
//! |---|---|---|
//! | In-process memory (one process only; tests, development) | [`Locker::memory`] | `memory` |
//! | One Redis server | [`Locker::redis`] | `redis` |
//! | Redis Cluster (sharded pub/sub wakes waiters) | [`Locker::redis_cluster`] | `cluster` |
//! | Redlock over N independent Redis masters (no fencing tokens) | [`Locker::redlock`] | `redlock` |
//! | PostgreSQL (a lease table; `postgres` feature) | `Locker::postgres` | `postgres` |
//! | SQLite (one file shared by one host's processes; `sqlite` feature) | `Locker::sqlite` | `sqlite` |
//! | MySQL / MariaDB (a lease table; `mysql` feature) | `Locker::mysql` | `mysql` |
//! | etcd (leases, consensus; `etcd` feature) | `Locker::etcd` | `etcd` |
//!
//! # Features
//!
//! None is on by default.
//!
//! - `metrics`: lock metrics through the `metrics` facade (acquire and hold durations, held
//!   and waiting gauges, renewals, losses).
//! - `tls`: `rediss://` URLs, through the `redis` crate's rustls support (ring provider);
//!   with `etcd`, `https://` etcd endpoints too, through etcd-client's (ring, and the
//!   system's roots).
//! - `postgres`: the PostgreSQL store, through tokio-postgres and a deadpool pool.
//! - `sqlite`: the SQLite store, through rusqlite with its bundled SQLite.
//! - `mysql`: the MySQL/MariaDB store, through mysql_async and its pool.
//! - `etcd`: the etcd store, through etcd-client (building it needs `protoc`).
//! - `cli`: the `locked` command-line tool; a feature of the `locked` facade only (this
//!   crate has no binary), e.g. `cargo install locked --features cli`.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
//! use locked::{Locker, resource_key};
//!
//! let locker = Locker::memory();
//! let out = locker.run(&resource_key("order", 123), locker.options(), || async { "done" }).await?;
//! assert_eq!(out, "done");
//! # Ok(()) }
//! ```
#![warn(rustdoc::broken_intra_doc_links)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod acquire;
mod builder;
mod context;
mod core;
mod env;
mod error;
mod global;
mod guard;
mod handoff;
mod info;
mod keys;
mod leader;
mod locker;
mod meter;
mod options;
mod renew;
mod rwlock;
mod semaphore;
mod store;
mod take;
mod telemetry;
mod ticket;
mod time;
mod token;
mod url;
mod wait;

#[doc(hidden)]
pub mod __private {
    //! Called by the `#[locked]` expansion and the `locked` CLI; not public API.
    pub use crate::private::*;
    pub use crate::store::registry::{Entry as StoreEntry, Implied, Lookup, stores};
}
mod private;

pub use builder::LockerBuilder;
pub use context::{fencing_token, handoff};
pub use env::{
    DATABASE_URL, LOCK_DATABASE_URL, LOCK_ETCD_ENDPOINTS, LOCK_PREFIX, LOCK_REDIS_URL,
    LOCK_SQLITE_PATH, LOCK_STORE, REDIS_URL,
};
pub use error::LockError;
pub use global::{global, init};
pub use guard::LockGuard;
pub use info::{LockInfo, MasterView};
pub use keys::{DEFAULT_PREFIX, MAX_KEY_LEN, operation_key, resource_key};
pub use leader::{Election, Leader, Observer, Term};
pub use locker::Locker;
pub use options::{DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_TTL, LockOptions};
pub use rwlock::RwLock;
pub use semaphore::Semaphore;
pub use telemetry::TARGET as TRACING_TARGET;
