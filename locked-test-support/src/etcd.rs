//! A real etcd cluster of the tests' own: `etcd` on free loopback client and peer ports,
//! data dirs in a temp dir, as an unprivileged user (`nobody`) when the tests run as root,
//! each member under a shell watchdog that kills it when the test process is gone. Three
//! members ([`EtcdCluster::start`]), or one ([`EtcdCluster::start_single`]), or one serving
//! `https://` with a certificate the test made ([`EtcdCluster::start_tls`]), maybe asking
//! clients for theirs ([`EtcdCluster::start_tls_with`]); auth can be
//! turned on ([`EtcdCluster::enable_auth`]); members are killed, restarted, paused
//! (SIGSTOP) and resumed. Debian's `etcd-server` package has `/usr/bin/etcd` and
//! `etcd-client` has `etcdctl` (`scripts/test` installs them).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn program(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let path = PathBuf::from(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "`{name}` not found: install etcd (apt-get install -y etcd-server etcd-client; \
         scripts/test does)"
    )
}

/// One member: its name, ports and the watchdog of its process.
pub struct EtcdMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Mutex<Option<Child>>,
}

/// What a TLS member serves and trusts, PEM.
pub struct EtcdTls {
    /// The CA that signed `cert` (what `etcdctl` trusts), and the clients' when asked.
    pub ca: String,
    /// The member's certificate (naming `127.0.0.1`) and key.
    pub cert: String,
    pub key: String,
    /// A client certificate and key signed by `ca`: the member then requires one
    /// (`--client-cert-auth`), and `etcdctl` shows this one.
    pub client: Option<(String, String)>,
}

/// The members of one cluster. Members are killed, restarted, paused and resumed through
/// a shared reference; everything is killed on drop (a shared one's watchdogs kill it when
/// the test process is gone).
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    dir: tempfile::TempDir,
    /// Whether the members serve `https://` (their certificates in `dir`).
    tls: bool,
    /// Whether they require a client certificate (`etcdctl` then shows `dir`'s).
    client_auth: bool,
    /// `user:password` for `etcdctl`, once auth is on.
    auth: Mutex<Option<String>>,
}

impl EtcdCluster {
    /// Starts three members and waits (up to 60 s) until the cluster is healthy.
    pub fn start() -> Self {
        Self::start_members(3, None)
    }

    /// Starts one member (a cluster of its own, e.g. for auth) and waits until healthy.
    pub fn start_single() -> Self {
        Self::start_members(1, None)
    }

    /// Starts one member serving `https://127.0.0.1:port` with this certificate and key
    /// (PEM; the certificate must name `127.0.0.1`), and waits until healthy. Its peers
    /// talk plain HTTP (there are none).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::start_tls_with(&EtcdTls {
            ca: cert_pem.to_owned(),
            cert: cert_pem.to_owned(),
            key: key_pem.to_owned(),
            client: None,
        })
    }

    /// Starts one member serving `https://` as `tls` says, and waits until healthy.
    pub fn start_tls_with(tls: &EtcdTls) -> Self {
        Self::start_members(1, Some(tls))
    }

    fn start_members(n: usize, tls: Option<&EtcdTls>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let owner = crate::run_as();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let members: Vec<EtcdMember> = (0..n)
            .map(|i| EtcdMember {
                name: format!("m{i}"),
                client_port: crate::free_port(),
                peer_port: crate::free_port(),
                child: Mutex::new(None),
            })
            .collect();
        let cluster = Self {
            members,
            dir,
            tls: tls.is_some(),
            client_auth: tls.is_some_and(|t| t.client.is_some()),
            auth: Mutex::new(None),
        };
        if let Some(tls) = tls {
            let mut files = vec![
                (cluster.path("ca.crt"), &tls.ca),
                (cluster.path("server.crt"), &tls.cert),
                (cluster.path("server.key"), &tls.key),
            ];
            if let Some((cert, key)) = &tls.client {
                files.push((cluster.path("client.crt"), cert));
                files.push((cluster.path("client.key"), key));
            }
            for (path, pem) in files {
                std::fs::write(&path, pem).expect("write the certificate");
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
                }
            }
        }
        for i in 0..n {
            cluster.launch(i);
        }
        cluster.wait_healthy(Duration::from_secs(60));
        cluster
    }

    /// A file of the cluster's temp dir.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The member's TLS flags: its certificate, and the CA of its clients' when it asks.
    fn tls_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.tls {
            args.push(format!("--cert-file={}", self.path("server.crt").display()));
            args.push(format!("--key-file={}", self.path("server.key").display()));
        }
        if self.client_auth {
            args.push("--client-cert-auth".to_owned());
            args.push(format!(
                "--trusted-ca-file={}",
                self.path("ca.crt").display()
            ));
        }
        args
    }

    /// `http` or `https`.
    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// Member `i`'s client URL.
    pub fn client_url(&self, i: usize) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.scheme(),
            self.members[i].client_port
        )
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// The members' logs (the last lines), for a failure message.
    pub fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| {
                let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {}:\n{}", self.members[i].name, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn pid_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.pid", self.members[i].name))
    }

    fn launch(&self, i: usize) {
        let m = &self.members[i];
        let script = r#""$@" 2>>"$LOG" & c=$!
echo "$c" > "$PIDFILE"
while [ -d "/proc/$PARENT" ] && kill -0 "$c" 2>/dev/null; do sleep 0.3; done
kill -9 "$c" 2>/dev/null"#;
        let client = self.client_url(i);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(program("etcd"))
            .arg(format!("--name={}", m.name))
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join(&m.name).display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster()))
            .arg("--initial-cluster-token=locked-tests")
            .arg("--initial-cluster-state=new")
            .args(["--logger=zap", "--log-outputs=stderr"])
            .args(["--heartbeat-interval=100", "--election-timeout=1000"])
            .arg("--snapshot-count=10000")
            .env("PARENT", std::process::id().to_string())
            .env("LOG", self.log_path(i))
            .env("PIDFILE", self.pid_path(i))
            .args(self.tls_args())
            .env("ETCD_UNSUPPORTED_ARCH", "")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = crate::run_as() {
            cmd.uid(uid).gid(gid);
        }
        *m.child.lock().unwrap() = Some(cmd.spawn().expect("sh for etcd"));
    }

    /// Waits until every running member answers `endpoint health`, up to `limit`.
    pub fn wait_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let running: Vec<String> = (0..self.members.len())
                .filter(|&i| self.is_running(i))
                .map(|i| self.client_url(i))
                .collect();
            if self
                .etcdctl(&running.join(","), &["endpoint", "health"])
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the etcd cluster did not become healthy:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn etcdctl(&self, endpoints: &str, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(program("etcdctl"));
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(["--dial-timeout=2s", "--command-timeout=3s"]);
        if self.tls {
            cmd.arg(format!("--cacert={}", self.path("ca.crt").display()));
        }
        if self.client_auth {
            cmd.arg(format!("--cert={}", self.path("client.crt").display()));
            cmd.arg(format!("--key={}", self.path("client.key").display()));
        }
        if let Some(user) = &*self.auth.lock().unwrap() {
            cmd.arg(format!("--user={user}"));
        }
        let out = cmd.args(args).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `etcdctl ARGS` on every member (as root once auth is on), its output or its error.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        self.etcdctl(&self.endpoints().join(","), args)
    }

    /// Adds the user `root` with `password` and turns auth on: from now on every request
    /// needs a user (`http://root:password@...`); `etcdctl` here uses root.
    pub fn enable_auth(&self, password: &str) {
        let add = format!("--new-user-password={password}");
        self.ctl(&["user", "add", "root", &add, "--interactive=false"])
            .expect("etcdctl user add root");
        self.ctl(&["auth", "enable"]).expect("etcdctl auth enable");
        *self.auth.lock().unwrap() = Some(format!("root:{password}"));
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len())
            .map(|i| self.client_url(i))
            .collect()
    }

    /// What the members counted so far: gRPC calls started (each unary request, each
    /// stream such as a keep-alive's or a watch's) and proposals committed (writes through
    /// the raft log; the same on every member, so the most any member counts), from each
    /// member's `/metrics` on its client URL (plain HTTP members only).
    pub fn counted(&self) -> (f64, f64) {
        use std::io::{Read, Write};
        let (mut calls, mut writes) = (0.0, 0.0f64);
        for e in self.endpoints() {
            let addr = e.trim_start_matches("http://").to_owned();
            let mut body = String::new();
            let mut conn = std::net::TcpStream::connect(&addr).expect("a member's client port");
            write!(conn, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
            conn.read_to_string(&mut body).unwrap();
            let value = |line: &str| -> f64 {
                line.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0)
            };
            for line in body.lines() {
                if line.starts_with("grpc_server_started_total{") {
                    calls += value(line);
                } else if line.starts_with("etcd_server_proposals_committed_total ") {
                    writes = writes.max(value(line));
                }
            }
        }
        (calls, writes)
    }

    /// A locker on every member, under `prefix`.
    pub fn locker(&self, prefix: &str) -> locked::Locker {
        locked::Locker::builder()
            .prefix(prefix)
            .etcd(&self.endpoints())
            .expect("valid endpoints")
    }

    /// The index of the member that leads now, if one does.
    pub fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            let url = self.client_url(i);
            let Ok(json) = self.etcdctl(&url, &["endpoint", "status", "-w", "json"]) else {
                continue;
            };
            let number = |field: &str| {
                let at = json.find(field)? + field.len();
                let digits: String = json[at..]
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse::<u64>().ok()
            };
            if let (Some(me), Some(leader)) = (number("\"member_id\":"), number("\"leader\":"))
                && me == leader
            {
                return Some(i);
            }
        }
        None
    }

    /// Member `i`'s etcd process id, as its watchdog wrote it (waiting up to 5 s for it).
    fn pid(&self, i: usize) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::fs::read_to_string(self.pid_path(i)) {
                Ok(pid) if !pid.trim().is_empty() => return Some(pid.trim().to_owned()),
                _ if Instant::now() > deadline => return None,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to member `i`'s etcd process.
    fn signal(&self, i: usize, signal: &str) {
        assert!(self.is_running(i), "member {i} does not run");
        let pid = self.pid(i).expect("the member's process id");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Pauses member `i` (SIGSTOP): it keeps its sockets but answers nothing, neither
    /// clients nor peers, until [`EtcdCluster::resume`].
    pub fn pause(&self, i: usize) {
        self.signal(i, "STOP");
    }

    /// Resumes member `i` after [`EtcdCluster::pause`] (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.signal(i, "CONT");
    }

    /// Kills member `i` (SIGKILL: no shutdown) and waits for it to be gone.
    pub fn kill(&self, i: usize) {
        if let Some(mut child) = self.members[i].child.lock().unwrap().take() {
            // etcd itself, by the process id its watchdog wrote, then the watchdog.
            let deadline = Instant::now() + Duration::from_secs(5);
            if let Some(pid) = self.pid(i) {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                while std::path::Path::new(&format!("/proc/{pid}")).exists()
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = std::fs::remove_file(self.pid_path(i));
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data dir and ports (after `kill`).
    pub fn restart(&self, i: usize) {
        self.launch(i);
    }

    /// Whether member `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.lock().unwrap().is_some()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// The cluster every test of one process shares; each test takes a prefix of its own.
pub fn shared_etcd() -> &'static EtcdCluster {
    static CLUSTER: std::sync::OnceLock<EtcdCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(EtcdCluster::start)
}
