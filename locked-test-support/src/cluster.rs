//! A real Redis Cluster: six `redis-server` processes in cluster mode, joined by
//! `redis-cli --cluster create`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

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

/// The cluster every test of one process shares; each test takes its own key prefix.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}
