//! The Redis stores: one server ([`RedisStore`]), a Redis Cluster ([`ClusterStore`]) and
//! Redlock over N independent masters ([`RedlockStore`]).
//!
//! The Redis node layer: companion names, the scripts, and every single-node primitive,
//! written once over any `redis` connection. The single-server and Cluster stores (and
//! Redlock, per master) are thin shells around it.
//!
//! ## Layout
//! - The shared layer, which never imports a store: `script` (the Lua scripts under
//!   `scripts/`), `naming` (hash tags, slots, companion keys and channels), `conn` (the
//!   connection the layer drives), `error`, `protocol` (a lock's primitives over one
//!   node), `shared_lease` (a semaphore's or read/write lock's), `inspect` (what a node
//!   holds), `scan` and `replicas` (the `SCAN` and `WAIT` commands), `feed` (the pub/sub
//!   wake-up feed), `server` (one server's connection), `tls`, and `deployment` (a
//!   deployment made a `Store`).
//! - The stores, built on it: `single`, `cluster` (a `Deployment` each) and `redlock` (a
//!   quorum around the same primitives).
//! - Here: the three stores' registry entries (`REDIS`, `CLUSTER`, `REDLOCK`), which read
//!   their URLs from `LOCK_REDIS_URL`, else `REDIS_URL`.

mod cluster;
mod conn;
mod deployment;
mod error;
mod feed;
mod inspect;
mod naming;
mod protocol;
mod redlock;
mod replicas;
mod scan;
mod script;
mod server;
mod shared_lease;
mod single;
mod tls;

pub(crate) use cluster::{Cluster, ClusterStore};
pub(crate) use redlock::RedlockStore;
pub(crate) use single::{RedisStore, Single};
pub(crate) use tls::{TlsRoots, client};

use super::registry::{Entry, Implied, Lookup, from_var};
use crate::builder::LockerBuilder;
use crate::env::{LOCK_REDIS_URL, REDIS_URL};
use crate::error::LockError;
use crate::locker::Locker;

/// The Redis stores' URL schemes and variables (`LOCK_REDIS_URL` wins).
const SCHEMES: &[&str] = &["redis://", "rediss://"];
const URL_VARS: &[&str] = &[LOCK_REDIS_URL, REDIS_URL];

/// The registry's entry of one server: `LOCK_STORE=redis`, and the store when only a URL
/// is set.
pub(crate) const REDIS: Entry = Entry {
    name: "redis",
    help: "one Redis server, e.g. `redis://127.0.0.1:6379/0` (`rediss://` with `tls`)",
    schemes: SCHEMES,
    url_vars: URL_VARS,
    other_vars: &[],
    url_example: "e.g. `redis://127.0.0.1:6379/0`",
    feature: None,
    implied: Implied::ByUrl,
    open_from_env: Some(redis_from_env),
};

/// The registry's entry of a Redis Cluster: `LOCK_STORE=cluster`.
pub(crate) const CLUSTER: Entry = Entry {
    name: "cluster",
    help: "a Redis Cluster, through comma-separated seed nodes",
    url_example: "the comma-separated seed nodes, e.g. \
                  `redis://127.0.0.1:7000,redis://127.0.0.1:7001`",
    implied: Implied::Never,
    open_from_env: Some(cluster_from_env),
    ..REDIS
};

/// The registry's entry of Redlock: `LOCK_STORE=redlock`.
pub(crate) const REDLOCK: Entry = Entry {
    name: "redlock",
    help: "Redlock over an odd number of independent Redis masters, comma-separated \
           (no fencing tokens)",
    url_example: "the comma-separated masters, an odd number, e.g. \
                  `redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379`",
    implied: Implied::Never,
    open_from_env: Some(redlock_from_env),
    ..REDIS
};

fn redis_from_env(builder: LockerBuilder, get: Lookup<'_>) -> Result<Locker, LockError> {
    let (var, url) = REDIS.require_url(get)?;
    builder.redis(&url).map_err(from_var(var))
}

fn cluster_from_env(builder: LockerBuilder, get: Lookup<'_>) -> Result<Locker, LockError> {
    let (var, urls) = CLUSTER.require_url(get)?;
    builder
        .redis_cluster(urls.split(','))
        .map_err(from_var(var))
}

fn redlock_from_env(builder: LockerBuilder, get: Lookup<'_>) -> Result<Locker, LockError> {
    let (var, urls) = REDLOCK.require_url(get)?;
    builder.redlock(urls.split(',')).map_err(from_var(var))
}
