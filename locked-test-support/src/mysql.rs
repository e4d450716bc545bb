//! A real MariaDB server of the tests' own: `mariadb-install-db` in a temp dir and
//! `mariadbd` on a free loopback port, as an unprivileged user (`nobody`) when the tests
//! run as root, stopped by its process id. Debian's `mariadb-server` package has both
//! programs (`scripts/test` installs it); its own service is not needed.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests' database user and its password (not root: so that the password in the
/// URL is real, and the checks that it never shows are too).
pub const MYSQL_USER: &str = "locked";
pub const MYSQL_PASSWORD: &str = "secret-pw";

/// Options both programs take: a small, fast server (16 MB buffer pool, no binary log,
/// no name lookups, commits flushed once a second).
const FAST: &[&str] = &[
    "--skip-name-resolve",
    "--skip-log-bin",
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=2",
    "--performance-schema=OFF",
];

fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = PathBuf::from(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "`{name}` not found: install MariaDB (apt-get install -y mariadb-server; scripts/test does)"
    )
}

/// One MariaDB server. The shared one ([`shared_mysql`]) lives under a shell watchdog
/// that kills it when the test process is gone; others are killed on drop. Killed and
/// restarted through a shared reference (the randomized harness restarts the shared one).
pub struct MysqlServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl MysqlServer {
    /// `mariadb-install-db`, then `mariadbd` on a free port; returns once the tests' user
    /// can connect.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some((uid, gid)) = crate::run_as() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        // Its own temporary directory: in the shared /tmp, a bootstrap's temporary tables
        // went missing under it once (`Could not remove temporary table`, then aborted).
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("the server's tmpdir");
        if let Some((uid, gid)) = crate::run_as() {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).unwrap();
        }
        let mut install = Command::new(program("mariadb-install-db"));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(FAST)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = crate::run_as() {
            install.uid(uid).gid(gid);
        }
        let out = install.output().expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = Self {
            port: crate::free_port(),
            dir,
            child: Mutex::new(None),
        };
        server.launch();
        server.root(&format!(
            "CREATE USER '{MYSQL_USER}'@'%' IDENTIFIED BY '{MYSQL_PASSWORD}'; \
             GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON *.* \
             TO '{MYSQL_USER}'@'%'; CREATE DATABASE app"
        ));
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Starts `mariadbd` on the data dir and port under a watchdog that kills it when this
    /// test process is gone; waits until it answers.
    fn launch(&self) {
        let script = r#""$@" & c=$!
while [ -d "/proc/$PARENT" ] && kill -0 "$c" 2>/dev/null; do sleep 0.3; done
kill -9 "$c" 2>/dev/null"#;
        let dir = self.dir.path();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(program("mariadbd"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.data().display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg(format!("--port={}", self.port))
            .args(["--bind-address=127.0.0.1", "--skip-networking=0"])
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .args(["--max-connections=800", "--innodb-lock-wait-timeout=5"])
            .args(FAST)
            .env("PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = crate::run_as() {
            cmd.uid(uid).gid(gid);
        }
        *self.child.lock().unwrap() = Some(cmd.spawn().expect("mariadbd"));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.try_root("SELECT 1").is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The tests' URL: user `locked` with its password, database `app`.
    pub fn url(&self) -> String {
        format!(
            "mysql://{MYSQL_USER}:{MYSQL_PASSWORD}@127.0.0.1:{}/app",
            self.port
        )
    }

    /// A locker on this server, its tables in `database` (created when missing).
    pub fn locker(&self, database: &str) -> locked::Locker {
        locked::Locker::builder()
            .database(database)
            .mysql(&self.url())
            .expect("valid url")
    }

    /// The server's process id, from its pid file.
    fn pid(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.path().join("mariadbd.pid")).ok()?;
        text.lines().next().map(str::to_owned)
    }

    /// Sends a signal to the server (`KILL`, `STOP`, `CONT`): one process, its threads
    /// serve every connection.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("a running mariadbd");
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
    }

    /// Kills the server (SIGKILL: no shutdown) and waits for it to be gone.
    pub fn kill(&self) {
        self.signal("KILL");
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.path().join("mariadbd.pid"));
    }

    /// Starts it again on the same data and port (after `kill`).
    pub fn restart(&self) {
        self.launch();
    }

    fn try_root(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(program("mariadb"))
            .arg("--no-defaults")
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
                "-u",
                "root",
            ])
            .args(["--connect-timeout=2", "-N", "-B", "-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL as the server's root (with the `mariadb` client); its output, tab-separated.
    pub fn root(&self, sql: &str) -> String {
        self.try_root(sql)
            .unwrap_or_else(|e| panic!("mariadb: {sql}: {e}"))
    }
}

impl Drop for MysqlServer {
    fn drop(&mut self) {
        if self.child.lock().is_ok_and(|c| c.is_some()) {
            self.kill();
        }
    }
}

/// The server every test of one process shares; each test takes its own database.
pub fn shared_mysql() -> &'static MysqlServer {
    static SERVER: std::sync::OnceLock<MysqlServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(MysqlServer::start)
}
