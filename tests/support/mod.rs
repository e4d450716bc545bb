//! Test support: a real `redis-server` per test, on a free loopback port.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` process, killed and waited for on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = spawn(port, &dir);
        let server = Self { child, port, dir };
        server.wait_ready();
        server
    }

    /// Starts a server on the same port again (after `stop`).
    pub fn restart(&mut self) {
        self.child = spawn(self.port, &self.dir);
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

fn spawn(port: u16, dir: &tempfile::TempDir) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
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

/// The store of one test: the memory store, or a Redis server of its own kept alive with it.
pub struct Store {
    pub locker: locked::Locker,
    pub server: Option<RedisServer>,
}

impl Store {
    pub fn memory() -> Self {
        Self {
            locker: locked::Locker::memory(),
            server: None,
        }
    }

    pub fn redis() -> Self {
        let server = RedisServer::start();
        Self {
            locker: server.locker(),
            server: Some(server),
        }
    }

    /// Another locker on the same store: another process, as far as Redis can tell.
    pub fn other(&self) -> locked::Locker {
        self.server
            .as_ref()
            .map_or_else(|| self.locker.clone(), RedisServer::locker)
    }

    /// How many connections listen for releases of `key` (Redis); memory: `expected`.
    pub fn listeners(&self, key: &str, expected: i64) -> i64 {
        match &self.server {
            Some(server) => {
                let (_, n): (String, i64) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(format!("{{{key}}}:released"))
                    .query(&mut server.client())
                    .unwrap();
                n
            }
            None => expected,
        }
    }
}

/// Runs each named `async fn(Store)` of the test file twice: `memory::name` and
/// `redis::name`, each on a store of its own.
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::support::Store::memory()).await }
            )*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::support::Store::redis()).await }
            )*
        }
    };
}
