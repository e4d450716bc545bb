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
//! - Here: the three stores' open code (`open_single`, `open_cluster`, `open_redlock`:
//!   the URLs checked, the store built, a `Config` error when one is wrong), which the
//!   builder's constructors call, and their registry entries (`REDIS`, `CLUSTER`,
//!   `REDLOCK`), which read their URLs from `LOCK_REDIS_URL`, else `REDIS_URL`.

mod batch;
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
use super::{AnyStore, Settings};
use crate::error::{Invalid, LockError};
use crate::url::RedactedUrl;

/// The Redis URL, read before [`REDIS_URL`] (`locked::LOCK_REDIS_URL`).
pub(crate) const LOCK_REDIS_URL: &str = "LOCK_REDIS_URL";
/// The Redis URL (`locked::REDIS_URL`).
pub(crate) const REDIS_URL: &str = "REDIS_URL";

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

fn redis_from_env(settings: &Settings, get: Lookup<'_>) -> Result<AnyStore, LockError> {
    let (var, url) = REDIS.require_url(get)?;
    open_single(&url, settings)
        .map(Into::into)
        .map_err(from_var(var))
}

fn cluster_from_env(settings: &Settings, get: Lookup<'_>) -> Result<AnyStore, LockError> {
    let (var, urls) = CLUSTER.require_url(get)?;
    open_cluster(urls.split(','), settings)
        .map(Into::into)
        .map_err(from_var(var))
}

fn redlock_from_env(settings: &Settings, get: Lookup<'_>) -> Result<AnyStore, LockError> {
    let (var, urls) = REDLOCK.require_url(get)?;
    open_redlock(urls.split(','), settings)
        .map(Into::into)
        .map_err(from_var(var))
}

/// One Redis server (`LockerBuilder::redis`). The URL is checked now; the connection is
/// opened on first use.
pub(crate) fn open_single(url: &str, settings: &Settings) -> Result<RedisStore, LockError> {
    Single::open(url, &settings.tls_roots).map_err(|e| url_error(url, &e))
}

/// A Redis Cluster through its seed nodes (`LockerBuilder::redis_cluster`). The URLs are
/// checked now; the cluster is reached on first use.
pub(crate) fn open_cluster<I>(seeds: I, settings: &Settings) -> Result<ClusterStore, LockError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let seeds = url_list(seeds);
    if seeds.is_empty() {
        return Err(LockError::config(
            "redis cluster urls",
            "the list of seed nodes is empty",
            "give at least one node, e.g. `redis://127.0.0.1:7000`",
        ));
    }
    for seed in &seeds {
        client(seed, &settings.tls_roots)
            .map_err(|e| url_fault(seed, &e).at("redis cluster urls"))?;
    }
    Cluster::open(&seeds, &settings.tls_roots).map_err(|e| {
        LockError::config(
            "redis cluster urls",
            format!("the seed nodes cannot be used together ({e})"),
            "give every node the same scheme, user, password and database, and no unix \
             sockets",
        )
    })
}

/// Redlock over N independent masters (`LockerBuilder::redlock`). The URLs are checked
/// now; the masters are reached on first use.
pub(crate) fn open_redlock<I>(masters: I, settings: &Settings) -> Result<RedlockStore, LockError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    RedlockStore::open(&url_list(masters), &settings.tls_roots)
        .map_err(|bad| bad.at("redlock urls"))
}

/// URLs as given: trimmed, empty ones left out.
fn url_list<I>(urls: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    urls.into_iter()
        .map(|u| u.as_ref().trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

/// A URL the client refused, as a `Config` error.
fn url_error(url: &str, e: &redis::RedisError) -> LockError {
    url_fault(url, e).at("redis url")
}

/// What is wrong with a URL, and what to write (credentials redacted).
fn url_fault(url: &str, e: &redis::RedisError) -> Invalid {
    let shown = RedactedUrl::new(url);
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Invalid::new(
            format!("`{shown}` is a TLS URL, but `locked` was built without TLS ({e})"),
            "enable the `tls` feature of `locked`",
        );
    }
    Invalid::new(
        format!("`{shown}` is not a Redis URL ({e})"),
        "write `redis://host:6379/0`",
    )
}
