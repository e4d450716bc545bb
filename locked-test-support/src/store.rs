//! The store matrix: the store of one test ([`Store`]: the memory store, a Redis server of
//! its own, the shared cluster under a prefix of its own, three Redlock masters of its own,
//! the shared PostgreSQL server in a schema of its own, a SQLite file of its own, the
//! shared MariaDB server in a database of its own), and [`on_stores!`](crate::on_stores),
//! which runs a test on each.
//!
//! The matrix follows the runtime's store registry (`locked::__private::stores()`, one
//! entry per `LOCK_STORE` name): [`Store::FIXTURES`] maps each registry name to its
//! constructor, and `tests/it/store_matrix.rs` fails when a store compiled into `locked`
//! has no fixture or no line in `on_stores!`, or either names a store this build lacks.
//!
//! ## Adding a store
//! A new store in the registry adds, here:
//! - its fixture: a `Store::<name>()` constructor and a [`Backend`] variant (its server in
//!   a file of its own beside this one, as `postgres.rs` is, behind the store's cargo
//!   feature if it has one), and the variant's arms in [`Store`]'s methods, here and in
//!   `harness.rs` (the faults it takes, how workers open it, what a run leaves in it);
//! - one line in [`Store::FIXTURES`] (`("<name>", Store::<name>)`, under the same `#[cfg]`);
//! - one line in `on_stores!`'s list (`@each`), its module named after the registry name,
//!   under the same `#[cfg]`.

#[cfg(feature = "etcd")]
use crate::{EtcdCluster, shared_etcd};
#[cfg(feature = "mysql")]
use crate::{MysqlServer, shared_mysql};
#[cfg(feature = "postgres")]
use crate::{PgServer, shared_postgres};
use crate::{RedisCluster, RedisServer, companion, shared_cluster};

/// Where a test's store lives.
pub enum Backend {
    Memory,
    Redis(RedisServer),
    Cluster(&'static RedisCluster),
    /// Three independent masters of its own.
    Redlock(Vec<RedisServer>),
    /// The shared PostgreSQL server, in a schema of its own.
    #[cfg(feature = "postgres")]
    Postgres(&'static PgServer, String),
    /// A SQLite file of its own, in a directory of its own.
    #[cfg(feature = "sqlite")]
    Sqlite(tempfile::TempDir),
    /// The shared MariaDB server, in a database of its own.
    #[cfg(feature = "mysql")]
    Mysql(&'static MysqlServer, String),
    /// The shared 3-member etcd cluster, under a key prefix of its own.
    #[cfg(feature = "etcd")]
    Etcd(&'static EtcdCluster),
}

/// The store of one test, kept alive with its locker.
pub struct Store {
    pub locker: locked::Locker,
    pub backend: Backend,
}

impl Store {
    pub fn memory() -> Self {
        Self {
            locker: locked::Locker::memory(),
            backend: Backend::Memory,
        }
    }

    pub fn redis() -> Self {
        let server = RedisServer::start();
        Self {
            locker: server.locker(),
            backend: Backend::Redis(server),
        }
    }

    pub fn cluster() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cluster = shared_cluster();
        Self {
            locker: cluster.locker(&format!("lock:t{n}:")),
            backend: Backend::Cluster(cluster),
        }
    }

    pub fn redlock() -> Self {
        let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
        Self {
            locker: redlock_locker(&masters),
            backend: Backend::Redlock(masters),
        }
    }

    #[cfg(feature = "postgres")]
    pub fn postgres() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let server = shared_postgres();
        let schema = format!("t{n}");
        Self {
            locker: server.locker(&schema),
            backend: Backend::Postgres(server, schema),
        }
    }

    #[cfg(feature = "sqlite")]
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self {
            locker: sqlite_locker(&dir, ""),
            backend: Backend::Sqlite(dir),
        }
    }

    #[cfg(feature = "mysql")]
    pub fn mysql() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let server = shared_mysql();
        let database = format!("t{n}");
        Self {
            locker: server.locker(&database),
            backend: Backend::Mysql(server, database),
        }
    }

    #[cfg(feature = "etcd")]
    pub fn etcd() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cluster = shared_etcd();
        // A prefix of this process and test: the cluster outlives neither, but keys of
        // an earlier run's test process must not be mistaken for this one's.
        let prefix = format!("lock:p{}t{n}:", std::process::id());
        Self {
            locker: cluster.locker(&prefix),
            backend: Backend::Etcd(cluster),
        }
    }

    /// How long a crashed holder's lock of `ttl` may outlive it: `ttl`, except on etcd,
    /// whose leases are whole seconds, at least its minimum (2 s with the default election
    /// timeout), and lapse at its leader's next expiry check (every 500 ms).
    pub fn lapse(&self, ttl: std::time::Duration) -> std::time::Duration {
        match &self.backend {
            #[cfg(feature = "etcd")]
            Backend::Etcd(..) => {
                let secs = ttl.as_millis().div_ceil(1000).max(2);
                std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX))
                    + std::time::Duration::from_millis(500)
            }
            _ => ttl,
        }
    }

    /// Whether the store hands out fencing tokens (Redlock refuses them).
    pub fn fences(&self) -> bool {
        !matches!(self.backend, Backend::Redlock(_))
    }

    /// The key as stored, prefix included.
    pub fn full(&self, key: &str) -> String {
        self.locker.full_key(key).unwrap()
    }

    /// Another locker on the same store: another process, as far as Redis can tell.
    pub fn other(&self) -> locked::Locker {
        match &self.backend {
            Backend::Memory => self.locker.clone(),
            Backend::Redis(server) => server.locker(),
            Backend::Cluster(cluster) => cluster.locker(self.locker.prefix()),
            Backend::Redlock(masters) => redlock_locker(masters),
            #[cfg(feature = "postgres")]
            Backend::Postgres(server, schema) => locked::Locker::builder()
                .prefix(self.locker.prefix())
                .schema(schema.as_str())
                .postgres(&server.url())
                .expect("valid url"),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(dir) => sqlite_locker(dir, self.locker.prefix()),
            #[cfg(feature = "mysql")]
            Backend::Mysql(server, database) => locked::Locker::builder()
                .prefix(self.locker.prefix())
                .database(database.as_str())
                .mysql(&server.url())
                .expect("valid url"),
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => cluster.locker(self.locker.prefix()),
        }
    }

    /// Runs a command on the Redis store (routed by its key on a cluster); `None` on memory
    /// and Redlock.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        match &self.backend {
            Backend::Memory | Backend::Redlock(_) => None,
            #[cfg(feature = "postgres")]
            Backend::Postgres(..) => None,
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(..) => None,
            #[cfg(feature = "mysql")]
            Backend::Mysql(..) => None,
            #[cfg(feature = "etcd")]
            Backend::Etcd(..) => None,
            Backend::Redis(server) => Some(cmd.query(&mut server.client()).unwrap()),
            Backend::Cluster(cluster) => Some(cmd.query(&mut cluster.client()).unwrap()),
        }
    }

    /// How many connections listen for releases of the stored `key`; memory: `expected`.
    pub fn listeners(&self, key: &str, expected: i64) -> i64 {
        let channel = companion(key, "released");
        match &self.backend {
            Backend::Memory => expected,
            #[cfg(feature = "postgres")]
            Backend::Postgres(..) => expected,
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(..) => expected,
            #[cfg(feature = "mysql")]
            Backend::Mysql(..) => expected,
            #[cfg(feature = "etcd")]
            Backend::Etcd(..) => expected,
            Backend::Redis(server) => {
                let (_, n): (String, i64) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel)
                    .query(&mut server.client())
                    .unwrap();
                n
            }
            Backend::Cluster(cluster) => cluster.shard_listeners(&channel),
            // Every master gets the same subscriptions; the first one speaks for all.
            Backend::Redlock(masters) => {
                let (_, n): (String, i64) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel)
                    .query(&mut masters[0].client())
                    .unwrap();
                n
            }
        }
    }
}

/// A store's registry name and its constructor.
type Fixture = (&'static str, fn() -> Store);

impl Store {
    /// The stores the test support has fixtures for: each registry name
    /// (`locked::__private::stores()`, the `LOCK_STORE` value) with its constructor, in the
    /// registry's order. `on_stores!` builds each test's store through it
    /// ([`Store::fixture`]); `tests/it/store_matrix.rs` checks it against the registry.
    pub const FIXTURES: &'static [Fixture] = &[
        ("memory", Store::memory),
        ("redis", Store::redis),
        ("cluster", Store::cluster),
        ("redlock", Store::redlock),
        #[cfg(feature = "postgres")]
        ("postgres", Store::postgres),
        #[cfg(feature = "sqlite")]
        ("sqlite", Store::sqlite),
        #[cfg(feature = "mysql")]
        ("mysql", Store::mysql),
        #[cfg(feature = "etcd")]
        ("etcd", Store::etcd),
    ];

    /// A fresh store of the registry's store `name`, through [`Store::FIXTURES`].
    pub fn fixture(name: &str) -> Self {
        match Self::FIXTURES.iter().find(|(fixture, _)| *fixture == name) {
            Some((_, new)) => new(),
            None => panic!(
                "no fixture for store `{name}` in locked-test-support: add `Store::{name}()` \
                 and a line in `Store::FIXTURES` (src/store.rs)"
            ),
        }
    }
}

/// A locker on the SQLite file `locks.db` in `dir` (prefix `prefix`, or the default when
/// empty).
#[cfg(feature = "sqlite")]
pub fn sqlite_locker(dir: &tempfile::TempDir, prefix: &str) -> locked::Locker {
    let path = dir.path().join("locks.db");
    let builder = locked::Locker::builder();
    let builder = if prefix.is_empty() {
        builder
    } else {
        builder.prefix(prefix)
    };
    builder
        .sqlite(path.to_str().expect("a UTF-8 path"))
        .expect("a path")
}

/// A Redlock locker over `masters`.
pub fn redlock_locker(masters: &[RedisServer]) -> locked::Locker {
    let urls: Vec<String> = masters.iter().map(RedisServer::url).collect();
    locked::Locker::redlock(&urls).expect("valid urls")
}

/// The list of stores every behaviour test runs on: each named `async fn(Store)` of the
/// calling module runs as `memory::name`, `redis::name`, `cluster::name`, `redlock::name`
/// and, with the caller's `postgres`, `sqlite` and `mysql` features, `postgres::name`,
/// `sqlite::name` and `mysql::name`, each on a store of its own (the cluster and the
/// PostgreSQL and MariaDB servers are shared by the test process, under a key prefix, a
/// schema or a database per test; Redlock gets three masters of its own).
///
/// The list is the `@each` arm, one line per store, its module named after the store's
/// registry name; each test's store is [`Store::fixture`] of that name. `on_stores!(@names)`
/// is the list's names, a `Vec<&str>` (the check against the registry,
/// `tests/it/store_matrix.rs`).
///
/// The expansion is the caller's code: `#[cfg(feature = "postgres")]` is the calling
/// crate's feature (the facade's `postgres`, which turns on this crate's), and the caller
/// needs `tokio` with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! on_stores {
    // The list: `$crate::on_stores!($($then)* <registry name>)` once per store.
    (@each $($then:tt)*) => {
        $crate::on_stores!($($then)* memory);
        $crate::on_stores!($($then)* redis);
        $crate::on_stores!($($then)* cluster);
        $crate::on_stores!($($then)* redlock);
        #[cfg(feature = "postgres")]
        $crate::on_stores!($($then)* postgres);
        #[cfg(feature = "sqlite")]
        $crate::on_stores!($($then)* sqlite);
        #[cfg(feature = "mysql")]
        $crate::on_stores!($($then)* mysql);
        #[cfg(feature = "etcd")]
        $crate::on_stores!($($then)* etcd);
    };
    (@names) => {{
        let mut names: ::std::vec::Vec<&'static str> = ::std::vec::Vec::new();
        $crate::on_stores!(@each @name names);
        names
    }};
    (@name $into:ident $store:ident) => {
        $into.push(::core::stringify!($store))
    };
    (@tests [$($name:ident),*] $store:ident) => {
        mod $store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::Store::fixture(::core::stringify!($store))).await
            }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_stores!(@each @tests [$($name),*]);
    };
}
