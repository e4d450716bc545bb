//! Test support: a real `redis-server` per test, on a free loopback port.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::{PgServer, shared_postgres};
#[cfg(feature = "postgres")]
pub mod pgbouncer;
mod proxy;
#[allow(unused_imports)] // not every test binary uses it
pub use proxy::Proxy;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` process, killed and waited for on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = spawn(port, &dir, &[]);
        let server = Self {
            child,
            port,
            dir,
            extra: Vec::new(),
        };
        server.wait_ready();
        server
    }

    /// Starts a server that also serves TLS on the returned port, with this certificate
    /// and key (PEM); the plain port stays for the test's own inspection.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> (Self, u16) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        let (port, tls_port) = (free_port(), free_port());
        let extra: Vec<String> = vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            cert.display().to_string(),
            "--tls-key-file".into(),
            key.display().to_string(),
            "--tls-ca-cert-file".into(),
            cert.display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        let child = spawn(port, &dir, &extra);
        let server = Self {
            child,
            port,
            dir,
            extra,
        };
        server.wait_ready();
        (server, tls_port)
    }

    /// Starts a server on the same port again (after `stop`).
    pub fn restart(&mut self) {
        self.child = spawn(self.port, &self.dir, &self.extra);
        self.wait_ready();
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends a signal to the server process (`STOP`, `CONT`, ...).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {}", self.child.id());
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A plain client connection, for inspecting what the library stored.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| {
                panic!(
                    "connect to {}: {e}\nserver log:\n{}",
                    self.url(),
                    self.log()
                )
            })
    }

    /// A locker on this server.
    pub fn locker(&self) -> locked::Locker {
        locked::Locker::redis(&self.url()).expect("valid url")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ok.is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server on port {} did not answer PING within 20 s\nserver log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(port: u16, dir: &tempfile::TempDir, extra: &[String]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(extra)
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(dir.path().join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("could not start redis-server ({e}): install redis-server (apt-get install -y redis-server)")
        })
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

/// One `redis-server` with cluster mode on, under a shell watchdog that kills it when the
/// test process is gone (a cluster shared in a `static` is never dropped).
pub struct ClusterNode {
    pub port: u16,
    pid: u32,
    _dir: tempfile::TempDir,
    watchdog: Child,
}

impl ClusterNode {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_cluster_port();
        let script = r#"redis-server "$@" & c=$!
while kill -0 "$PARENT" 2>/dev/null && kill -0 "$c" 2>/dev/null; do sleep 0.3; done
kill -9 "$c" 2>/dev/null"#;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1500"])
            .arg("--cluster-config-file")
            .arg(dir.path().join("nodes.conf"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .env("PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start sh for redis-server ({e})"));
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = loop {
            let info = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c));
            if let Ok(info) = info {
                break field(&info, "process_id").parse().expect("process_id");
            }
            assert!(
                Instant::now() < deadline,
                "cluster node on port {port} did not start: install redis-server \
                 (apt-get install -y redis-server)\nlog:\n{}",
                std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            port,
            pid,
            _dir: dir,
            watchdog,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()))
    }

    /// Sends a signal to the server process (`KILL`, `STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {}", self.pid);
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| {
                c.set_read_timeout(Some(Duration::from_secs(2)))?;
                cmd.query(&mut c)
            })
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        let _ = self.watchdog.wait();
    }
}

fn field<'a>(info: &'a str, name: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or("")
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A real Redis Cluster: 3 masters with one replica each, built by `redis-cli --cluster
/// create`, ready (`cluster_state:ok` everywhere, every replica in sync) when returned.
pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<ClusterNode> = (0..6).map(|_| ClusterNode::start()).collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("could not run redis-cli ({e}): install redis-tools"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_ready(Duration::from_secs(60));
        cluster
    }

    /// Waits until every live node says `cluster_state:ok` and every master has an
    /// online replica.
    pub fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ready = self.nodes.iter().all(|n| {
                let info: String = n
                    .query(&redis::cmd("CLUSTER").arg("INFO").clone())
                    .unwrap_or_default();
                if field(&info, "cluster_state") != "ok" {
                    return false;
                }
                let repl: String = n
                    .query(&redis::cmd("INFO").arg("replication").clone())
                    .unwrap_or_default();
                match field(&repl, "role") {
                    "master" => repl.contains("state=online"),
                    _ => field(&repl, "master_link_status") == "up",
                }
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster was not ready within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(ClusterNode::url).collect()
    }

    pub fn locker(&self, prefix: &str) -> locked::Locker {
        locked::Locker::builder()
            .prefix(prefix)
            .redis_cluster(self.urls())
            .expect("valid urls")
    }

    /// A synchronous cluster connection, for inspecting what the library stored.
    pub fn client(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.urls())
            .and_then(|c| c.get_connection())
            .expect("cluster connection")
    }

    /// The node serving `key` as master now, and its replica.
    pub fn owner(&self, key: &str) -> (&ClusterNode, &ClusterNode) {
        let slot: i64 = self.nodes[0]
            .query(&redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).clone())
            .expect("CLUSTER KEYSLOT");
        let master = self.master_of(slot).expect("a master serves every slot");
        let replica = self
            .nodes
            .iter()
            .find(|n| {
                let role: String = n
                    .query(&redis::cmd("INFO").arg("replication").clone())
                    .unwrap_or_default();
                field(&role, "role") == "slave"
                    && field(&role, "master_port") == master.port.to_string()
            })
            .expect("every master has a replica");
        (master, replica)
    }

    /// The live master that serves `slot`, as the cluster itself says.
    pub fn master_of(&self, slot: i64) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| {
            let Ok(nodes) = n.query::<String>(&redis::cmd("CLUSTER").arg("NODES").clone()) else {
                return false;
            };
            nodes.lines().any(|line| {
                let parts: Vec<&str> = line.split_whitespace().collect();
                parts.len() >= 8
                    && parts[2].contains("myself")
                    && parts[2].contains("master")
                    && parts[8..].iter().any(|range| {
                        let mut ends = range.split('-');
                        let lo: i64 = ends.next().and_then(|v| v.parse().ok()).unwrap_or(-1);
                        let hi: i64 = ends.next().and_then(|v| v.parse().ok()).unwrap_or(lo);
                        (lo..=hi).contains(&slot)
                    })
            })
        })
    }

    /// How many connections listen on a sharded channel, over every node.
    pub fn shard_listeners(&self, channel: &str) -> i64 {
        self.nodes
            .iter()
            .filter_map(|n| {
                n.query::<(String, i64)>(
                    &redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(channel).clone(),
                )
                .ok()
            })
            .map(|(_, count)| count)
            .sum()
    }
}

/// The cluster every test of one test binary shares; each test takes its own key prefix.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
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

/// The store of one test: the memory store, a Redis server of its own kept alive with it,
/// or the shared cluster under a key prefix of its own.
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
/// test file runs as `memory::name`, `redis::name`, `cluster::name` and `redlock::name`,
/// each on a store of its own (the cluster is shared by the test binary, under a key prefix
/// per test; Redlock gets three masters of its own).
#[allow(unused_macros)]
macro_rules! on_stores {
    ($($name:ident),* $(,)?) => {
        on_stores!(@store memory, memory, $($name),*);
        on_stores!(@store redis, redis, $($name),*);
        on_stores!(@store cluster, cluster, $($name),*);
        on_stores!(@store redlock, redlock, $($name),*);
        #[cfg(feature = "postgres")]
        on_stores!(@store postgres, postgres, $($name),*);
    };
    (@store $module:ident, $ctor:ident, $($name:ident),*) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::support::Store::$ctor()).await }
            )*
        }
    };
}
