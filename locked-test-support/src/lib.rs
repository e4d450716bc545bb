//! The test and bench support of the `locked` workspace (not published): real servers on
//! free loopback ports, a TCP fault proxy, and the store matrix every behaviour test runs
//! on.
//!
//! - [`RedisServer`]: one `redis-server` per test (plain or TLS), stopped on drop.
//! - [`RedisCluster`]: a real 3-master, 3-replica Redis Cluster; [`shared_cluster`] is the
//!   one a test process shares.
//! - `PgServer` and `pgbouncer::PgBouncer` (feature `postgres`): a PostgreSQL server of
//!   the tests' own, and a `pgbouncer` in transaction mode in front of it;
//!   `shared_postgres` and `pgbouncer::shared_pgbouncer` are shared by a test process.
//! - `MysqlServer` (feature `mysql`): a MariaDB server of the tests' own; `shared_mysql`
//!   is shared by a test process.
//! - `EtcdCluster` (feature `etcd`): a 3-member etcd cluster of the tests' own (or one
//!   member, with auth, or serving `https://` as an `EtcdTls` says); `shared_etcd` is
//!   shared by a test process.
//! - [`Proxy`]: a TCP proxy that cuts, heals and resets connections on command.
//! - [`Store`], [`Backend`] and [`on_stores!`]: one test run on every store.
//! - [`eventually`], [`free_port`], [`companion`]: small helpers.
//! - [`bench`](mod@bench): the statistics the benches share.
//!
//! The servers are the system's own programs (`redis-server`, `redis-cli`, PostgreSQL's
//! `initdb` and `postgres`, `pgbouncer`), as `scripts/test` installs them.
//!
//! The `postgres` feature needs `locked`'s PostgreSQL store; the facade's own `postgres`
//! feature turns it on for the facade's tests and benches (a dev-dependency feature,
//! stripped from the published manifest).

pub mod bench;
mod cluster;
#[cfg(feature = "etcd")]
mod etcd;
mod harness;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
pub mod pgbouncer;
#[cfg(feature = "postgres")]
mod postgres;
mod proxy;
mod server;
mod store;

use std::net::TcpListener;
use std::time::Duration;

pub use cluster::{ClusterNode, RedisCluster, shared_cluster};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdCluster, EtcdMember, EtcdTls, shared_etcd};
/// The etcd client the store uses, for benches that speak to etcd directly.
#[cfg(feature = "etcd")]
pub use etcd_client;
pub use harness::Reach;
#[cfg(feature = "mysql")]
pub use mysql::{MYSQL_PASSWORD, MYSQL_USER, MysqlServer, shared_mysql};
#[cfg(feature = "postgres")]
pub use postgres::{PgServer, shared_postgres};
pub use proxy::Proxy;
pub use server::RedisServer;
#[cfg(feature = "sqlite")]
pub use store::sqlite_locker;
pub use store::{Backend, Store, redlock_locker};

/// The user a server of the tests' own runs as: ourselves, or `nobody` when we are root
/// (`initdb` and `mariadbd` refuse root).
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "etcd")),
    allow(dead_code)
)]
pub(crate) fn run_as() -> Option<(u32, u32)> {
    let uid = String::from_utf8(
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .ok()?
            .stdout,
    )
    .ok()?;
    (uid.trim() == "0").then_some((65534, 65534))
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `cond` up to `limit`, polling; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A lock key's companion as the README documents it: `{K}:suffix`, or `K:suffix` when K
/// already holds a `{tag}`.
pub fn companion(key: &str, suffix: &str) -> String {
    let tagged = key
        .find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0);
    if tagged {
        format!("{key}:{suffix}")
    } else {
        format!("{{{key}}}:{suffix}")
    }
}
