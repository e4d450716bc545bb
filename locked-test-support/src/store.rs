//! The store matrix: the store of one test ([`Store`]: the memory store, a Redis server of
//! its own, the shared cluster under a prefix of its own, three Redlock masters of its own,
//! the shared PostgreSQL server in a schema of its own), and [`on_stores!`](crate::on_stores),
//! which runs a test on each.

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
        }
    }

    /// Runs a command on the Redis store (routed by its key on a cluster); `None` on memory
    /// and Redlock.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        match &self.backend {
            Backend::Memory | Backend::Redlock(_) => None,
            #[cfg(feature = "postgres")]
            Backend::Postgres(..) => None,
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

/// A Redlock locker over `masters`.
pub fn redlock_locker(masters: &[RedisServer]) -> locked::Locker {
    let urls: Vec<String> = masters.iter().map(RedisServer::url).collect();
    locked::Locker::redlock(&urls).expect("valid urls")
}

/// The list of stores every behaviour test runs on: each named `async fn(Store)` of the
/// calling module runs as `memory::name`, `redis::name`, `cluster::name`, `redlock::name`
/// and, with the caller's `postgres` feature, `postgres::name`, each on a store of its own
/// (the cluster and the PostgreSQL server are shared by the test process, under a key
/// prefix or a schema per test; Redlock gets three masters of its own).
///
/// The expansion is the caller's code: `#[cfg(feature = "postgres")]` is the calling
/// crate's feature (the facade's `postgres`, which turns on this crate's), and the caller
/// needs `tokio` with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! on_stores {
    ($($name:ident),* $(,)?) => {
        $crate::on_stores!(@store memory, memory, $($name),*);
        $crate::on_stores!(@store redis, redis, $($name),*);
        $crate::on_stores!(@store cluster, cluster, $($name),*);
        $crate::on_stores!(@store redlock, redlock, $($name),*);
        #[cfg(feature = "postgres")]
        $crate::on_stores!(@store postgres, postgres, $($name),*);
    };
    (@store $module:ident, $ctor:ident, $($name:ident),*) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Store::$ctor()).await }
            )*
        }
    };
}
