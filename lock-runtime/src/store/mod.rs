//! The stores a [`Locker`](crate::Locker) can sit on, behind one internal interface.
//!
//! Every store implements [`Store`]: take, release, extend and inspect locks atomically in
//! that store, say what it can do ([`Caps`]) and how long a lock it granted stays valid,
//! and own its wake-up feed (the connections that announce releases). Everything else (the
//! per-key queue of waiters, renewal, loss cancellation, fencing in the body, nested
//! detection, errors and events) is store-agnostic and lives above this module. The engine
//! never asks which store it talks to; it asks what the store can do.
//!
//! - `kind`, `lease`: the vocabulary the engine and the stores share.
//! - `seam`: the [`Store`] trait, [`Caps`], [`WakeTarget`].
//! - `dispatch`: the one list of stores, and [`AnyStore`] generated from it.
//! - `registry`: what each store declares for the rest of the crate (its `LOCK_STORE`
//!   name, URL schemes, environment variables, feature, how to open it from the
//!   environment, its line in the CLI's help); `from_env` and the CLI read the list.
//! - `settings`: what opening a store needs besides its URL ([`Settings`]: TLS roots,
//!   PostgreSQL's schema and listen URL, MySQL's database), kept by the builder and passed down.
//! - `finish`: a call that runs to its end even when its caller stops waiting (the
//!   database stores' takes, so that one that lands late is given back).
//! - `memory`; `redis` (one Redis, a Cluster and Redlock over one node layer);
//!   `postgres`, `sqlite`, `mysql` and `etcd` (behind their features): the stores.
//!
//! ## Adding a store
//! A new store is a file or folder here with a type that implements [`Store`] and its
//! registry entry (`ENTRY`), declared below (`pub(crate) mod <name>;`), plus one line in
//! the list in `dispatch.rs`. Nothing else may match on the store kind: `from_env`, the
//! CLI and the test matrix read the registry. A typed constructor (`Locker::<name>`) and
//! an exported variable constant are additions to the public API, not part of the seam.

pub(crate) mod etcd;
pub(crate) mod memory;
pub(crate) mod mysql;
pub(crate) mod postgres;
pub(crate) mod redis;
pub(crate) mod registry;
pub(crate) mod settings;
pub(crate) mod sqlite;

mod dispatch;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod finish;
mod kind;
mod lease;
#[cfg(any(feature = "sqlite", feature = "mysql"))]
mod local_wakes;
mod seam;

pub(crate) use dispatch::AnyStore;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use finish::finish;
pub(crate) use kind::{HeldAs, Kind};
pub(crate) use lease::{Attempt, Lease, OwnedLease, Release, Replicas, Request, shared_key};
pub(crate) use seam::{Caps, Store, WakeTarget};
pub(crate) use settings::Settings;
