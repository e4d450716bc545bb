//! A real `pgbouncer` in transaction mode, on a free loopback port, in front of the tests'
//! PostgreSQL server: what most production services reach PostgreSQL through. A server
//! connection is handed to a client for one transaction only, and only 4 of them are
//! shared by every client of a database, so that a statement prepared in one transaction
//! is really gone in the next. It runs as `nobody` when the tests run as root (pgbouncer
//! refuses root), under a shell watchdog that kills it when the test process is gone.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::PgServer;
use crate::run_as;

/// Server connections per (database, user): few, so that clients really share them.
pub const POOL_SIZE: u32 = 4;

/// The `pgbouncer` program: on `PATH`, else Debian's `/usr/sbin/pgbouncer`.
fn binary() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v pgbouncer"])
        .output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    let debian = PathBuf::from("/usr/sbin/pgbouncer");
    assert!(
        debian.exists(),
        "pgbouncer: install the `pgbouncer` package (scripts/test does)"
    );
    debian
}

/// One `pgbouncer` process in front of one PostgreSQL server.
pub struct PgBouncer {
    pub port: u16,
    /// The server behind it.
    pub server_port: u16,
    dir: tempfile::TempDir,
    /// The watchdog shell; pgbouncer is its child.
    child: Option<Child>,
}

impl PgBouncer {
    /// Starts pgbouncer (transaction mode, trust auth, a pool of [`POOL_SIZE`]) in front of
    /// `server`; returns once a query through it answers.
    pub fn start(server: &PgServer) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = crate::free_port();
        let path = dir.path();
        std::fs::write(path.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        let config = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = transaction\n\
             default_pool_size = {POOL_SIZE}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = 1000\n\
             max_db_connections = {POOL_SIZE}\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            server_port = server.port,
            users = path.join("users.txt").display(),
            log = path.join("pgbouncer.log").display(),
            pid = path.join("pgbouncer.pid").display(),
        );
        std::fs::write(path.join("pgbouncer.ini"), config).unwrap();
        if let Some((uid, gid)) = run_as() {
            for file in ["", "users.txt", "pgbouncer.ini"] {
                std::os::unix::fs::chown(path.join(file), Some(uid), Some(gid)).unwrap();
            }
        }
        let mut bouncer = Self {
            port,
            server_port: server.port,
            dir,
            child: None,
        };
        bouncer.launch();
        bouncer
    }

    /// Starts `pgbouncer` under a watchdog that kills it when this test process is gone;
    /// waits until a query through it answers.
    fn launch(&mut self) {
        let script = r#""$@" & c=$!
while [ -d "/proc/$PARENT" ] && kill -0 "$c" 2>/dev/null; do sleep 0.3; done
kill -9 "$c" 2>/dev/null"#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(binary())
            .arg(self.dir.path().join("pgbouncer.ini"))
            .env("PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = run_as() {
            cmd.uid(uid).gid(gid);
        }
        self.child = Some(cmd.spawn().expect("pgbouncer"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_psql("SELECT 1").as_deref() != Some("1") {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of the database through pgbouncer (same password as the server's URL).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:secret-pw@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// A locker through pgbouncer, in `schema`.
    pub fn locker(&self, schema: &str) -> locked::Locker {
        locked::Locker::builder()
            .schema(schema)
            .postgres(&self.url())
            .expect("valid url")
    }

    /// pgbouncer's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// Runs SQL through pgbouncer with `psql`; its output, or `None` when it failed.
    pub fn try_psql(&self, sql: &str) -> Option<String> {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-At", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "2")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// pgbouncer's process id, from its pid file.
    fn pid(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")).ok()?;
        text.lines().next().map(|l| l.trim().to_owned())
    }

    /// Kills pgbouncer (SIGKILL) and waits for its watchdog: the port stops answering.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        if let Some(mut child) = self.child.take() {
            // Without a pid file yet, the watchdog shell's own kill ends both.
            if self.pid().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.path().join("pgbouncer.pid"));
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
    }
}

/// The pgbouncer every test of one process shares, in front of [`crate::shared_postgres`].
pub fn shared_pgbouncer() -> &'static PgBouncer {
    static BOUNCER: std::sync::OnceLock<PgBouncer> = std::sync::OnceLock::new();
    BOUNCER.get_or_init(|| PgBouncer::start(crate::shared_postgres()))
}
