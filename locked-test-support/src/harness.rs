//! What the randomized harness (`tests/model`) asks of each store's fixture, so that a new
//! store's knowledge stays here with its fixture: which faults it can take ([`Reach`]), how
//! a worker process opens the same store ([`Store::locator`], [`Store::reopen`]), a locker
//! behind fault proxies ([`Store::proxied`]), server pauses and restarts, and what a run
//! left in the store ([`Store::leftovers`]).

use std::time::Duration;

use locked::Locker;

use crate::{Backend, Proxy, Store};

/// The faults a store's fixture can take, and how it behaves under load.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach {
    /// Shared across processes: worker processes can be run, paused and killed.
    pub processes: bool,
    /// Its server (one master) can be paused.
    pub server_pause: bool,
    /// Its server (one master) can be killed and restarted.
    pub server_restart: bool,
    /// A locker can reach it through fault proxies (cut, reset, held replies).
    pub cut: bool,
    /// A locker's path to a majority of its servers can be cut (Redlock).
    pub majority_cut: bool,
    /// Its writers take turns (one connection pool, one file lock): bursts stay small.
    pub serialises: bool,
    /// Under contention a call may fail or time out while no one holds its key: queued
    /// behind others (PostgreSQL's advisory lock, SQLite's file lock) or on a split vote
    /// (Redlock).
    pub contends: bool,
}

impl Store {
    /// What the harness can do with this store.
    pub fn reach(&self) -> Reach {
        match &self.backend {
            Backend::Memory => Reach::default(),
            Backend::Redis(_) => Reach {
                processes: true,
                server_pause: true,
                server_restart: true,
                cut: true,
                ..Reach::default()
            },
            Backend::Cluster(_) => Reach {
                processes: true,
                server_pause: true,
                ..Reach::default()
            },
            Backend::Redlock(_) => Reach {
                processes: true,
                server_pause: true,
                server_restart: true,
                cut: true,
                majority_cut: true,
                contends: true,
                ..Reach::default()
            },
            #[cfg(feature = "postgres")]
            Backend::Postgres(..) => Reach {
                processes: true,
                server_pause: true,
                cut: true,
                serialises: true,
                contends: true,
                ..Reach::default()
            },
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(..) => Reach {
                processes: true,
                serialises: true,
                contends: true,
                ..Reach::default()
            },
            // The shared server: paused and restarted under every test of the process
            // that uses it (in the harness's binary, only the harness).
            #[cfg(feature = "mysql")]
            Backend::Mysql(..) => Reach {
                processes: true,
                server_pause: true,
                server_restart: true,
                cut: true,
                serialises: true,
                contends: true,
                ..Reach::default()
            },
            // The shared cluster, used only by the harness in the harness's binary: a
            // member is paused; a locker's path to one member is cut, reset or held up.
            // The etcd tests kill members of clusters of their own.
            #[cfg(feature = "etcd")]
            Backend::Etcd(..) => Reach {
                processes: true,
                server_pause: true,
                cut: true,
                contends: true,
                ..Reach::default()
            },
        }
    }

    /// What a worker process needs to open the same store: its registry name, its URLs
    /// (comma-separated) or file, and its schema (PostgreSQL's schema, MySQL's database;
    /// else empty).
    pub fn locator(&self) -> (String, String, String) {
        let name = self.locker.store_name().to_owned();
        let (urls, schema) = match &self.backend {
            Backend::Memory => (String::new(), String::new()),
            Backend::Redis(server) => (server.url(), String::new()),
            Backend::Cluster(c) => (c.urls().join(","), String::new()),
            Backend::Redlock(m) => (
                m.iter().map(|m| m.url()).collect::<Vec<_>>().join(","),
                String::new(),
            ),
            #[cfg(feature = "postgres")]
            Backend::Postgres(server, schema) => (server.url(), schema.clone()),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(dir) => (
                dir.path().join("locks.db").display().to_string(),
                String::new(),
            ),
            #[cfg(feature = "mysql")]
            Backend::Mysql(server, database) => (server.url(), database.clone()),
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => (cluster.endpoints().join(","), String::new()),
        };
        (name, urls, schema)
    }

    /// A locker on the store [`Store::locator`] describes, with `prefix`.
    pub fn reopen(name: &str, urls: &str, schema: &str, prefix: &str) -> Locker {
        let urls: Vec<&str> = urls.split(',').collect();
        let b = Locker::builder().prefix(prefix);
        match name {
            "redis" => b.redis(urls[0]),
            "cluster" => b.redis_cluster(&urls),
            "redlock" => b.redlock(&urls),
            #[cfg(feature = "postgres")]
            "postgres" => b.schema(schema).postgres(urls[0]),
            #[cfg(feature = "sqlite")]
            "sqlite" => b.sqlite(urls[0]),
            #[cfg(feature = "mysql")]
            "mysql" => b.database(schema).mysql(urls[0]),
            #[cfg(feature = "etcd")]
            "etcd" => b.etcd(&urls),
            other => panic!("no way to reopen store `{other}` ({schema})"),
        }
        .expect("valid urls")
    }

    /// Another locker on the store, behind proxies of its own where the store has a
    /// network (one per server), else without.
    pub fn proxied(&self) -> (Locker, Vec<Proxy>) {
        let name = self.locker.store_name();
        let prefix = self.locker.prefix();
        match &self.backend {
            Backend::Redis(server) => {
                let p = Proxy::start(server.port());
                (Self::reopen(name, &p.redis_url(), "", prefix), vec![p])
            }
            Backend::Redlock(masters) => {
                let proxies: Vec<Proxy> = masters.iter().map(|m| Proxy::start(m.port())).collect();
                let urls: Vec<String> = proxies.iter().map(Proxy::redis_url).collect();
                (Self::reopen(name, &urls.join(","), "", prefix), proxies)
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(server, schema) => {
                let p = Proxy::start(server.port);
                let url = server
                    .url()
                    .replace(&format!(":{}/", server.port), &format!(":{}/", p.port()));
                (Self::reopen(name, &url, schema, prefix), vec![p])
            }
            #[cfg(feature = "mysql")]
            Backend::Mysql(server, database) => {
                let p = Proxy::start(server.port);
                let url = server
                    .url()
                    .replace(&format!(":{}/", server.port), &format!(":{}/", p.port()));
                (Self::reopen(name, &url, database, prefix), vec![p])
            }
            // A proxy per member: a cut of one leaves the client two members (it fails
            // over); late replies hold one member's answers.
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => {
                let proxies: Vec<Proxy> = cluster
                    .endpoints()
                    .iter()
                    .filter_map(|e| e.rsplit(':').next()?.parse().ok())
                    .map(Proxy::start)
                    .collect();
                let urls: Vec<String> = proxies
                    .iter()
                    .map(|p| format!("http://127.0.0.1:{}", p.port()))
                    .collect();
                (Self::reopen(name, &urls.join(","), "", prefix), proxies)
            }
            Backend::Memory => (self.locker.clone(), Vec::new()),
            _ => (self.other(), Vec::new()),
        }
    }

    /// Pauses the server (one master: `which`) for `hold`; on a Cluster, the master of
    /// `full_key`, long enough for a failover. Whether leases may have been forgotten.
    pub async fn pause_server(&self, which: usize, hold: Duration, full_key: &str) -> bool {
        match &self.backend {
            Backend::Redis(server) => {
                server.signal("STOP");
                tokio::time::sleep(hold).await;
                server.signal("CONT");
                false
            }
            Backend::Redlock(masters) => {
                let m = &masters[which % masters.len()];
                m.signal("STOP");
                tokio::time::sleep(hold).await;
                m.signal("CONT");
                false
            }
            Backend::Cluster(cluster) => {
                // Long enough for the replica to take over (node timeout 1.5 s): a
                // failover, which may lose what replication had not carried yet.
                let (master, _) = cluster.owner(full_key);
                master.signal("STOP");
                tokio::time::sleep(hold.max(Duration::from_millis(3500))).await;
                master.signal("CONT");
                let cluster = *cluster;
                tokio::task::spawn_blocking(move || cluster.wait_ready(Duration::from_secs(60)))
                    .await
                    .unwrap();
                true
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(server, _) => {
                server.signal("STOP");
                tokio::time::sleep(hold).await;
                server.signal("CONT");
                false
            }
            #[cfg(feature = "mysql")]
            Backend::Mysql(server, _) => {
                server.signal("STOP");
                tokio::time::sleep(hold).await;
                server.signal("CONT");
                false
            }
            // One member of three (the leader, when it is the one): the others keep the
            // quorum, elect a leader if they must, and lose no committed write.
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => {
                let i = which % cluster.endpoints().len();
                cluster.pause(i);
                tokio::time::sleep(hold).await;
                cluster.resume(i);
                false
            }
            _ => false,
        }
    }

    /// Kills the server (one master: `which`) and starts it again after `hold`; whether
    /// leases may have been forgotten.
    pub async fn restart_server(&mut self, which: usize, hold: Duration) -> bool {
        match &mut self.backend {
            Backend::Redis(server) => {
                server.stop();
                tokio::time::sleep(hold).await;
                server.restart();
                true
            }
            Backend::Redlock(masters) => {
                // A restarted master must stay down longer than any lease it held (the
                // delayed restart Redlock requires), else a second majority can form.
                let n = masters.len();
                let m = &mut masters[which % n];
                m.stop();
                tokio::time::sleep(hold.max(Duration::from_millis(3600))).await;
                m.restart();
                false
            }
            // Commits are written to the redo log before they are answered: a killed
            // `mariadbd` forgets none of them.
            #[cfg(feature = "mysql")]
            Backend::Mysql(server, _) => {
                let server = *server;
                tokio::task::spawn_blocking(move || server.kill())
                    .await
                    .unwrap();
                tokio::time::sleep(hold).await;
                tokio::task::spawn_blocking(move || server.restart())
                    .await
                    .unwrap();
                false
            }
            _ => false,
        }
    }

    /// The live keys the store still holds whose names contain `{r<seed>}` (a run's
    /// keys), fence counters left out (kept by design).
    pub async fn leftovers(&self, seed: u64) -> Vec<String> {
        let pattern = format!("*{{r{seed}}}*");
        let left: Vec<String> = match &self.backend {
            Backend::Redis(server) => keys_on(&mut server.client(), &pattern),
            Backend::Redlock(masters) => masters
                .iter()
                .flat_map(|m| keys_on(&mut m.client(), &pattern))
                .collect(),
            Backend::Cluster(c) => c
                .nodes
                .iter()
                .filter_map(|n| {
                    let mut conn = ::redis::Client::open(n.url()).ok()?.get_connection().ok()?;
                    let role: String = ::redis::cmd("ROLE")
                        .query::<Vec<::redis::Value>>(&mut conn)
                        .ok()
                        .and_then(|v| v.first().cloned())
                        .and_then(|v| ::redis::from_redis_value::<String>(v).ok())
                        .unwrap_or_default();
                    (role == "master").then(|| keys_on(&mut conn, &pattern))
                })
                .flatten()
                .collect(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(server, schema) => {
                let sql = format!(
                    "SELECT key FROM {schema}.locks WHERE key LIKE '%{{r{seed}}}%' AND expires_at > clock_timestamp() \
                     UNION ALL SELECT key FROM {schema}.leases WHERE key LIKE '%{{r{seed}}}%' AND expires_at > clock_timestamp() \
                     UNION ALL SELECT key FROM {schema}.writers WHERE key LIKE '%{{r{seed}}}%' AND expires_at > clock_timestamp()"
                );
                server
                    .psql(&sql)
                    .lines()
                    .map(str::to_owned)
                    .filter(|l| !l.is_empty())
                    .collect()
            }
            #[cfg(feature = "mysql")]
            Backend::Mysql(server, database) => server
                .root(&format!(
                    "SELECT k FROM {database}.locked_locks WHERE k LIKE '%{{r{seed}}}%' \
                     AND expires_at > TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)) DIV 1000 \
                     UNION ALL SELECT k FROM {database}.locked_writers WHERE k LIKE '%{{r{seed}}}%' \
                     AND expires_at > TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)) DIV 1000"
                ))
                .lines()
                .map(str::to_owned)
                .filter(|l| !l.is_empty())
                .collect(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(..) => self
                .other()
                .list(&pattern)
                .await
                .map(|infos| infos.into_iter().map(|i| i.key).collect())
                .unwrap_or_else(|e| vec![format!("(the cluster could not be listed: {e})")]),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(..) => self
                .other()
                .list(&pattern)
                .await
                .map(|infos| infos.into_iter().map(|i| i.key).collect())
                .unwrap_or_else(|e| vec![format!("(the file could not be listed: {e})")]),
            Backend::Memory => Vec::new(),
        };
        left.into_iter()
            .filter(|k| !k.ends_with(":fence"))
            .collect()
    }
}

/// The keys matching `pattern` that still hold something live: a lock (a string with its
/// expiry), or a sorted set with a lease or intent that has not lapsed. Lapsed members
/// may linger in a set until the key's own expiry, by design.
fn keys_on(conn: &mut ::redis::Connection, pattern: &str) -> Vec<String> {
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(pattern)
        .query(conn)
        .unwrap_or_default();
    let (secs, micros): (u64, u64) = ::redis::cmd("TIME").query(conn).unwrap_or((0, 0));
    let now_ms = secs * 1000 + micros / 1000;
    keys.into_iter()
        .filter(|k| {
            let kind: String = ::redis::cmd("TYPE").arg(k).query(conn).unwrap_or_default();
            match kind.as_str() {
                "zset" => {
                    let live: u64 = ::redis::cmd("ZCOUNT")
                        .arg(k)
                        .arg(format!("({now_ms}"))
                        .arg("+inf")
                        .query(conn)
                        .unwrap_or(0);
                    live > 0
                }
                "none" => false,
                _ => true,
            }
        })
        .collect()
}
