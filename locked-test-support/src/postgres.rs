//! A real PostgreSQL server of the tests' own: `initdb` in a temp dir and `postgres` on a
//! free loopback port, as an unprivileged user (`nobody`) when the tests run as root, since
//! `initdb` refuses root.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::run_as;

/// The directory of PostgreSQL's programs: the one holding `initdb` on `PATH`, else the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian does not put them on `PATH`).
fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Ok(real) = std::fs::canonicalize(&path)
            && let Some(dir) = real.parent()
        {
            return dir.to_path_buf();
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .filter(|p| p.join("initdb").exists())
        .expect("PostgreSQL's initdb: install the `postgresql` package (scripts/test does)")
}

/// One PostgreSQL server. Shared ones (`shared_postgres`) live under a shell watchdog
/// that stops them with the test process; others are stopped on drop.
pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PgServer {
    /// `initdb`, then `postgres` on a free port; returns once it answers queries.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if let Some((uid, gid)) = run_as() {
            for path in [dir.path(), data.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
            }
        }
        let mut initdb = Command::new(bindir().join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = run_as() {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Self {
            port: crate::free_port(),
            dir,
            child: None,
        };
        server.launch();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts `postgres` on the data dir and port, under a watchdog that kills it when
    /// this test process is gone; waits until it answers.
    fn launch(&mut self) {
        let script = r#""$@" & c=$!
while [ -d "/proc/$PARENT" ] && kill -0 "$c" 2>/dev/null; do sleep 0.3; done
kill -9 "$c" 2>/dev/null"#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(bindir().join("postgres"))
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(self.dir.path())
            .args([
                "-F",
                "-c",
                "max_connections=800",
                "-c",
                "shared_buffers=16MB",
            ])
            .env("PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = run_as() {
            cmd.uid(uid).gid(gid);
        }
        self.child = Some(cmd.spawn().expect("postgres"));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(bindir().join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:secret-pw@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// A locker on this server, in `schema`.
    pub fn locker(&self, schema: &str) -> locked::Locker {
        locked::Locker::builder()
            .schema(schema)
            .postgres(&self.url())
            .expect("valid url")
    }

    /// The server's process id (the postmaster), from its pid file.
    fn pid(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next().map(str::to_owned)
    }

    /// Sends a signal to the postmaster and its backends (`KILL`, `STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("a running postgres");
        // The backends are the postmaster's children: signal them too (STOP must freeze
        // the sessions already open, not only new connections).
        let script = format!("kill -{signal} {pid}; pkill -{signal} -P {pid}; true");
        let _ = Command::new("sh").arg("-c").arg(script).status();
    }

    /// Kills the server (SIGKILL: no shutdown) and waits until its port is free.
    pub fn kill(&mut self) {
        self.signal("KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.data().join("postmaster.pid"));
    }

    /// Starts it again on the same data and port (after `kill`).
    pub fn restart(&mut self) {
        self.launch();
    }

    /// Runs SQL with `psql` (as the server's superuser); its output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-At", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
    }
}

/// The server every test of one process shares; each test takes its own schema.
pub fn shared_postgres() -> &'static PgServer {
    static SERVER: std::sync::OnceLock<PgServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(PgServer::start)
}
