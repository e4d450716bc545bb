//! Locks across real OS processes: four processes keep a non-atomic counter exact on every
//! Redis store, SQLite, MySQL and etcd; on etcd, four processes' waiters are served in the
//! order they asked; a holder killed with SIGKILL frees its lock within its ttl; a holder paused with SIGSTOP past its ttl loses the lock to a newer fencing token
//! and is not resumed; three processes campaign for leadership, and a killed or stopped
//! leader is replaced without any two terms overlapping.
//!
//! The worker is this test binary itself, started again with `LOCKED_WORKER` set: the
//! `worker` test then plays the role it is given instead of returning at once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use locked::{LockOptions, Locker};
use locked_test_support::{RedisServer, shared_cluster};
use tokio::time::Instant;

/// A non-atomic increment: read, pause, write.
const INCREMENTS: u32 = 40;
/// Calls each process makes under a semaphore permit.
const PERMIT_CALLS: u32 = 10;
/// Counts a holder in (`KEYS[1]`, now inside) and keeps the most ever inside (`KEYS[2]`).
const ENTER: &str = "local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n";
/// A write that only a token at least as new as the last one may make.
const FENCED_WRITE: &str = "local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < last then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2])
return 1";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn locker_for(store: &str, urls: &str) -> Locker {
    let urls: Vec<&str> = urls.split(',').collect();
    match store {
        "redis" => Locker::redis(urls[0]).unwrap(),
        "cluster" => Locker::redis_cluster(&urls).unwrap(),
        "redlock" => Locker::redlock(&urls).unwrap(),
        #[cfg(feature = "sqlite")]
        "sqlite" => Locker::sqlite(urls[0]).unwrap(),
        #[cfg(feature = "mysql")]
        "mysql" => Locker::mysql(urls[0]).unwrap(),
        #[cfg(feature = "etcd")]
        "etcd" => Locker::etcd(&urls).unwrap(),
        other => panic!("unknown store {other}"),
    }
}

/// The data store the workers write to: one plain Redis server.
fn data(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

/// The worker's side. Not a test of its own: returns at once unless started as a worker.
#[test]
fn worker() {
    let role = env("LOCKED_WORKER");
    if role.is_empty() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        if role == "global" {
            let locker = locked::global().unwrap();
            println!("STORE {locker:?}");
            return;
        }
        let locker = locker_for(&env("LOCKED_STORE"), &env("LOCKED_URLS"));
        let data_url = env("LOCKED_DATA");
        match role.as_str() {
            "count" => {
                let opts = LockOptions::default().timeout(Duration::from_secs(60));
                for _ in 0..INCREMENTS {
                    locker
                        .run("counter", opts, || async {
                            let mut db = data(&data_url);
                            let n: u64 = redis::cmd("GET")
                                .arg("counter")
                                .query::<Option<u64>>(&mut db)
                                .unwrap()
                                .unwrap_or(0);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            let _: () = redis::cmd("SET")
                                .arg("counter")
                                .arg(n + 1)
                                .query(&mut db)
                                .unwrap();
                        })
                        .await
                        .unwrap();
                }
                println!("DONE");
            }
            "permit" => {
                let sem = locker.semaphore("exports", 3);
                let opts = LockOptions::default().timeout(Duration::from_secs(60));
                for _ in 0..PERMIT_CALLS {
                    sem.run(opts, || async {
                        let mut db = data(&data_url);
                        let _: i64 = redis::Script::new(ENTER)
                            .key("inside")
                            .key("most")
                            .invoke(&mut db)
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(40)).await;
                        let _: i64 = redis::cmd("DECR").arg("inside").query(&mut db).unwrap();
                        let _: i64 = redis::cmd("INCR").arg("served").query(&mut db).unwrap();
                    })
                    .await
                    .unwrap();
                }
                println!("DONE");
            }
            "hold" => {
                let ttl: u64 = env("LOCKED_TTL_MS").parse().unwrap();
                let opts = LockOptions::default()
                    .ttl(Duration::from_millis(ttl))
                    .fencing(env("LOCKED_FENCING") == "1");
                let out = locker
                    .run("held", opts, || async {
                        let token = locked::fencing_token().unwrap_or(0);
                        println!("HOLDING {token}");
                        // Paused here by the test (SIGSTOP) past the ttl, or killed.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let mut db = data(&data_url);
                        let accepted: i64 = redis::Script::new(FENCED_WRITE)
                            .key("value")
                            .key("value:token")
                            .arg(token)
                            .arg("from the paused holder")
                            .invoke(&mut db)
                            .unwrap();
                        println!(
                            "WRITE {}",
                            if accepted == 1 { "accepted" } else { "refused" }
                        );
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    })
                    .await;
                match out {
                    Err(e) if e.is_lost() => println!("RESULT lost"),
                    other => println!("RESULT {other:?}"),
                }
            }
            "queue" => {
                // Asks for `fifo` once, and records its turn in the data store's `order`.
                let id = env("LOCKED_ID");
                let opts = LockOptions::default().timeout(Duration::from_secs(60));
                locker
                    .run("fifo", opts, || async {
                        let mut db = data(&data_url);
                        let _: i64 = redis::cmd("RPUSH")
                            .arg("order")
                            .arg(&id)
                            .query(&mut db)
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    })
                    .await
                    .unwrap();
                println!("DONE");
            }
            "restore" => {
                let guard = locker
                    .restore(&env("LOCKED_HANDOFF"), LockOptions::default())
                    .await
                    .unwrap();
                println!("RESTORED {}", guard.key());
                guard.release().await.unwrap();
                println!("RELEASED");
            }
            "lead" => lead(&locker, &data_url).await,
            other => panic!("unknown worker role {other}"),
        }
    });
}

/// The host's monotonic clock in microseconds: the same clock in every process.
fn host_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap() * 1_000_000 + u64::try_from(t.tv_nsec).unwrap() / 1_000
}

/// The "lead" role: campaigns for `leader` for ever; in each term prints `LEADING`, then
/// records `<identity>#<term> <host µs>` every 20 ms in the data store's `terms` list, and
/// prints `ENDED` when the term is over (from a task of its own: the body is stopped).
async fn lead(locker: &Locker, data_url: &str) {
    let ttl: u64 = env("LOCKED_TTL_MS").parse().unwrap();
    let id = env("LOCKED_ID");
    let election = locker
        .election("leader")
        .identity(id.clone())
        .options(LockOptions::default().ttl(Duration::from_millis(ttl)));
    let mut terms = 0u32;
    let out: Result<(), _> = election
        .lead_forever(|term| {
            terms += 1;
            let (name, data_url) = (format!("{id}#{terms}"), data_url.to_owned());
            async move {
                let mut db = data(&data_url);
                println!("LEADING {name} {:?}", term.fencing_token());
                tokio::spawn({
                    let (term, name) = (term.clone(), name.clone());
                    async move {
                        let why = term.lost().await;
                        println!("ENDED {name} {why}");
                    }
                });
                loop {
                    let record = format!("{name} {}", host_us());
                    let _: i64 = redis::cmd("RPUSH")
                        .arg("terms")
                        .arg(record)
                        .query(&mut db)
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
        .await;
    println!("RESULT {out:?}");
}

/// A worker process and the lines it prints.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn start(role: &str, store: &str, urls: &str, data: &str, extra: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["worker", "--exact", "--nocapture", "--test-threads", "1"])
            .env("LOCKED_WORKER", role)
            .env("LOCKED_STORE", store)
            .env("LOCKED_URLS", urls)
            .env("LOCKED_DATA", data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line holding `prefix`, from `prefix` on (the harness may print its
    /// `test worker ... ` in front), within `limit`.
    fn expect(&self, prefix: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(prefix) => {
                    let at = line.find(prefix).unwrap_or(0);
                    return line[at..].to_owned();
                }
                Ok(_) => continue,
                Err(_) => panic!("the worker printed no `{prefix}` line within {limit:?}"),
            }
        }
    }

    /// The next line holding `prefix` if one came already, else `None` at once.
    fn poll(&self, prefix: &str) -> Option<String> {
        while let Ok(line) = self.lines.try_recv() {
            if let Some(at) = line.find(prefix) {
                return Some(line[at..].to_owned());
            }
        }
        None
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal}");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn counter_stays_exact(store: &str, urls: &str, data: &RedisServer) {
    let workers: Vec<Worker> = (0..4)
        .map(|_| Worker::start("count", store, urls, &data.url(), &[]))
        .collect();
    let start = std::time::Instant::now();
    for w in &workers {
        w.expect("DONE", Duration::from_secs(120));
    }
    let n: u64 = redis::cmd("GET")
        .arg("counter")
        .query(&mut data.client())
        .unwrap();
    println!(
        "{store}: 4 processes x {INCREMENTS} increments = {n} in {:?}",
        start.elapsed()
    );
    assert_eq!(n, 4 * u64::from(INCREMENTS), "lost updates on {store}");
}

/// 4 processes share a semaphore of 3 permits: never more than 3 inside at once, more
/// than one at a time (the permits are shared, not a lock), and every call served.
fn permits_are_never_exceeded(store: &str, urls: &str, data: &RedisServer) {
    let workers: Vec<Worker> = (0..4)
        .map(|_| Worker::start("permit", store, urls, &data.url(), &[]))
        .collect();
    for w in &workers {
        w.expect("DONE", Duration::from_secs(120));
    }
    let (most, served): (u64, u64) = redis::pipe()
        .cmd("GET")
        .arg("most")
        .cmd("GET")
        .arg("served")
        .query(&mut data.client())
        .unwrap();
    println!("{store}: 4 processes, 3 permits: at most {most} inside, {served} calls served");
    assert!(most <= 3, "{most} holders of 3 permits at once on {store}");
    assert!(most >= 2, "the permits were never shared on {store}");
    assert_eq!(
        served,
        4 * u64::from(PERMIT_CALLS),
        "calls not served on {store}"
    );
}

/// Every store that reaches across processes, by name and URLs, with its servers kept
/// alive by the caller.
fn each_shared_store(check: impl Fn(&str, &str, &RedisServer)) {
    let single = RedisServer::start();
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let redlock: Vec<String> = masters.iter().map(RedisServer::url).collect();
    #[allow(unused_mut)]
    let mut stores = vec![
        ("redis", single.url()),
        ("cluster", shared_cluster().urls().join(",")),
        ("redlock", redlock.join(",")),
    ];
    #[cfg(feature = "sqlite")]
    let sqlite = SqliteFile::new("permits");
    #[cfg(feature = "sqlite")]
    stores.push(("sqlite", sqlite.path()));
    #[cfg(feature = "mysql")]
    stores.push(("mysql", mysql_url("permits")));
    #[cfg(feature = "etcd")]
    stores.push(("etcd", etcd_urls()));
    for (store, urls) in stores {
        check(store, &urls, &RedisServer::start());
    }
}

#[test]
fn four_processes_share_three_permits_on_every_store() {
    each_shared_store(permits_are_never_exceeded);
}

#[test]
fn four_processes_keep_a_counter_exact_on_single_redis() {
    let (store, data) = (RedisServer::start(), RedisServer::start());
    counter_stays_exact("redis", &store.url(), &data);
}

#[test]
fn four_processes_keep_a_counter_exact_on_a_cluster() {
    let data = RedisServer::start();
    counter_stays_exact("cluster", &shared_cluster().urls().join(","), &data);
}

#[test]
fn four_processes_keep_a_counter_exact_on_redlock() {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = masters.iter().map(RedisServer::url).collect();
    let data = RedisServer::start();
    counter_stays_exact("redlock", &urls.join(","), &data);
}

/// A SQLite file in a directory of its own, removed afterwards.
#[cfg(feature = "sqlite")]
struct SqliteFile(std::path::PathBuf);

#[cfg(feature = "sqlite")]
impl SqliteFile {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "locked-processes-{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> String {
        self.0.join("locks.db").display().to_string()
    }
}

#[cfg(feature = "sqlite")]
impl Drop for SqliteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(feature = "sqlite")]
#[test]
fn four_processes_keep_a_counter_exact_on_sqlite() {
    let (file, data) = (SqliteFile::new("counter"), RedisServer::start());
    counter_stays_exact("sqlite", &file.path(), &data);
}

/// The shared MariaDB server's URL, its tables in `database` (created on first use).
#[cfg(feature = "mysql")]
fn mysql_url(database: &str) -> String {
    let server = locked_test_support::shared_mysql();
    server.url().replace(
        &format!(":{}/app", server.port),
        &format!(":{}/{database}", server.port),
    )
}

#[cfg(feature = "mysql")]
#[test]
fn four_processes_keep_a_counter_exact_on_mysql() {
    let data = RedisServer::start();
    counter_stays_exact("mysql", &mysql_url("counter"), &data);
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_holder_killed_frees_its_lock_within_ttl() {
    let (url, data) = (mysql_url("killed"), RedisServer::start());
    let locker = Locker::mysql(&url).unwrap();
    killed_holder_frees_its_lock_within_ttl("mysql", &url, &data, locker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_killed_frees_its_lock_within_ttl() {
    let (store, data) = (RedisServer::start(), RedisServer::start());
    killed_holder_frees_its_lock_within_ttl("redis", &store.url(), &data, store.locker()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_holder_killed_frees_its_lock_within_ttl() {
    let (file, data) = (SqliteFile::new("killed"), RedisServer::start());
    let locker = Locker::sqlite(&file.path()).unwrap();
    killed_holder_frees_its_lock_within_ttl("sqlite", &file.path(), &data, locker).await;
}

/// A worker holds `held` (ttl 2 s) and is SIGKILLed: `locker` takes it within the ttl.
async fn killed_holder_frees_its_lock_within_ttl(
    store: &str,
    urls: &str,
    data: &RedisServer,
    locker: Locker,
) {
    let ttl = Duration::from_secs(2);
    let worker = Worker::start(
        "hold",
        store,
        urls,
        &data.url(),
        &[("LOCKED_TTL_MS", "2000")],
    );
    worker.expect("HOLDING", Duration::from_secs(20));
    worker.signal("KILL");
    let killed = Instant::now();
    let opts = LockOptions::default()
        .timeout(Duration::from_secs(20))
        .retry_interval(Duration::from_millis(20));
    locker.run("held", opts, || async {}).await.unwrap();
    let took = killed.elapsed();
    println!("{store}: holder SIGKILLed: the lock was taken again {took:?} later (ttl {ttl:?})");
    assert!(took < ttl + Duration::from_millis(1500), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_paused_past_ttl_is_fenced_off_and_ends_lost() {
    let (store, data) = (RedisServer::start(), RedisServer::start());
    let worker = Worker::start(
        "hold",
        "redis",
        &store.url(),
        &data.url(),
        &[("LOCKED_TTL_MS", "1000"), ("LOCKED_FENCING", "1")],
    );
    let old: u64 = worker.expect("HOLDING", Duration::from_secs(20))[8..]
        .parse()
        .unwrap();
    worker.signal("STOP");
    // Meanwhile another process (this one) takes the lock with a newer token, and writes.
    let locker = store.locker();
    let opts = LockOptions::default()
        .fencing(true)
        .ttl(Duration::from_secs(10))
        .timeout(Duration::from_secs(20));
    let guard = locker.acquire("held", opts).await.unwrap();
    let new = guard.fencing_token().unwrap();
    assert!(new > old, "token {new} after {old}");
    let accepted: i64 = redis::Script::new(FENCED_WRITE)
        .key("value")
        .key("value:token")
        .arg(new)
        .arg("from the new holder")
        .invoke(&mut data.client())
        .unwrap();
    assert_eq!(accepted, 1, "the new holder's write");
    worker.signal("CONT");
    // The paused holder's body is not resumed (it woke past the lock's end), so it makes
    // no late write; were it resumed, the fence would refuse the write. Its call ends Lost.
    let result = worker.expect("RESULT", Duration::from_secs(20));
    assert_eq!(result, "RESULT lost");
    let value: String = redis::cmd("GET")
        .arg("value")
        .query(&mut data.client())
        .unwrap();
    assert_eq!(value, "from the new holder");
    guard.release().await.unwrap();
    println!(
        "holder SIGSTOPped past its ttl: not resumed after token {new} (its own: {old}), call ended Lost"
    );
}

/// The original's troubleshooting case 3: a service that fell back to the memory store
/// without knowing it. With no `tracing` subscriber installed, the warning still shows.
#[test]
fn memory_fallback_warns_on_stderr_without_a_subscriber() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["worker", "--exact", "--nocapture", "--test-threads", "1"])
        .env("LOCKED_WORKER", "global")
        .env_remove("LOCK_STORE")
        .env_remove("LOCK_REDIS_URL")
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains("STORE") && stdout.contains("memory"),
        "{stdout}"
    );
    assert!(
        stderr.contains("memory store: not shared between processes"),
        "no warning on stderr: {stderr}"
    );
    assert_eq!(
        stderr.matches("memory store:").count(),
        1,
        "warned once: {stderr}"
    );
}

/// The origin's hand-off: an HTTP handler takes the lock, a queue worker (another process)
/// restores it, finishes the job and releases; the first then finds the key free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_between_two_processes() {
    let store = RedisServer::start();
    let locker = store.locker();
    let handed = locker
        .acquire("held", LockOptions::default())
        .await
        .unwrap()
        .handoff();
    assert!(locker.is_locked("held").await.unwrap());
    let worker = Worker::start(
        "restore",
        "redis",
        &store.url(),
        &store.url(),
        &[("LOCKED_HANDOFF", handed.as_str())],
    );
    assert_eq!(
        worker.expect("RESTORED", Duration::from_secs(20)),
        "RESTORED lock:held"
    );
    worker.expect("RELEASED", Duration::from_secs(20));
    assert!(!locker.is_locked("held").await.unwrap());
}

/// Which of `workers` prints a `LEADING` line first, within `limit`, and the line.
fn next_leader(workers: &[Worker], limit: Duration) -> (usize, String) {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        for (i, w) in workers.iter().enumerate() {
            if let Some(line) = w.poll("LEADING") {
                return (i, line);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no worker led within {limit:?}");
}

/// Issue 21 across processes: three processes campaign. The leader is SIGKILLed: another
/// leads within the ttl and a margin. That one is SIGSTOPped past its ttl: the third leads,
/// and after SIGCONT the stopped one's term ends (its body is not resumed). The terms each
/// process recorded, on the host's clock, never overlap.
fn leaders_fail_over_without_overlap(store: &str, urls: &str, data: &RedisServer) {
    let ttl = Duration::from_millis(1500);
    let workers: Vec<Worker> = (0..3)
        .map(|i| {
            let id = format!("w{i}");
            Worker::start(
                "lead",
                store,
                urls,
                &data.url(),
                &[("LOCKED_TTL_MS", "1500"), ("LOCKED_ID", id.as_str())],
            )
        })
        .collect();
    let (first, _) = next_leader(&workers, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    workers[first].signal("KILL");
    let killed = std::time::Instant::now();
    let (second, _) = next_leader(&workers, ttl + Duration::from_secs(10));
    let kill_failover = killed.elapsed();
    assert_ne!(second, first);
    assert!(
        kill_failover < ttl + Duration::from_millis(1500),
        "{store}: a standby led {kill_failover:?} after the leader was killed (ttl {ttl:?})"
    );
    std::thread::sleep(Duration::from_millis(300));
    workers[second].signal("STOP");
    let stopped = std::time::Instant::now();
    let (third, _) = next_leader(&workers, ttl + Duration::from_secs(10));
    let stop_failover = stopped.elapsed();
    assert_ne!(third, second, "{store}: the stopped leader led again");
    assert!(
        stop_failover < ttl + Duration::from_millis(1500),
        "{store}: a standby led {stop_failover:?} after the leader was stopped"
    );
    // Past the stopped leader's ttl, and the third leads: let the stopped one run again.
    std::thread::sleep(Duration::from_millis(300));
    let resumed_us = host_us();
    workers[second].signal("CONT");
    let ended = workers[second].expect("ENDED", Duration::from_secs(10));
    assert!(ended.contains("was lost"), "{store}: {ended}");
    std::thread::sleep(Duration::from_millis(500));
    // Every record of every term, per term: its first and last moment.
    let records: Vec<String> = redis::cmd("LRANGE")
        .arg("terms")
        .arg(0)
        .arg(-1)
        .query(&mut data.client())
        .unwrap();
    let mut spans: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut times: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for r in &records {
        let (name, at) = r.split_once(' ').unwrap();
        let at: u64 = at.parse().unwrap();
        let span = spans.entry(name.to_owned()).or_insert((at, at));
        span.0 = span.0.min(at);
        span.1 = span.1.max(at);
        times.entry(name.to_owned()).or_default().push(at);
    }
    let mut spans: Vec<(String, (u64, u64))> = spans.into_iter().collect();
    spans.sort_by_key(|(_, (start, _))| *start);
    assert!(spans.len() >= 3, "{store}: three terms expected: {spans:?}");
    let stopped_name = format!("w{second}#");
    for pair in spans.windows(2) {
        let ((a, _), (b, (b_start, _))) = (&pair[0], &pair[1]);
        // A step that was running when the process was stopped finishes when it runs
        // again: no lock can take back an instruction already under way, which is what
        // the fence is for. What the library promises is that no step *begins* past the
        // lock's end, so the stopped term may show one record, taken just after SIGCONT,
        // and no more.
        let late: Vec<u64> = times[a]
            .iter()
            .copied()
            .filter(|at| at >= b_start)
            .collect();
        let in_flight = a.starts_with(&stopped_name)
            && late.len() == 1
            && (resumed_us..resumed_us + 1_000_000).contains(&late[0]);
        assert!(
            late.is_empty() || in_flight,
            "{store}: term {a} recorded at {late:?} µs, after term {b} began at {b_start} µs \
             (first leader w{first}, killed; second w{second}, stopped, resumed at \
             {resumed_us} µs; third w{third}); terms: {spans:?}"
        );
    }
    println!(
        "{store}: leader SIGKILLed: a standby led {kill_failover:?} later; leader SIGSTOPped: \
         {stop_failover:?} (ttl {ttl:?}); {} terms, {} records, no overlap",
        spans.len(),
        records.len()
    );
}

#[test]
fn leaders_fail_over_without_overlap_on_single_redis() {
    let (store, data) = (RedisServer::start(), RedisServer::start());
    leaders_fail_over_without_overlap("redis", &store.url(), &data);
}

#[test]
fn leaders_fail_over_without_overlap_on_redlock() {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = masters.iter().map(RedisServer::url).collect();
    leaders_fail_over_without_overlap("redlock", &urls.join(","), &RedisServer::start());
}

#[cfg(feature = "sqlite")]
#[test]
fn leaders_fail_over_without_overlap_on_sqlite() {
    let (file, data) = (SqliteFile::new("leaders"), RedisServer::start());
    leaders_fail_over_without_overlap("sqlite", &file.path(), &data);
}

/// The shared etcd cluster's endpoints (each test here uses keys of its own).
#[cfg(feature = "etcd")]
fn etcd_urls() -> String {
    locked_test_support::shared_etcd().endpoints().join(",")
}

#[cfg(feature = "etcd")]
#[test]
fn four_processes_keep_a_counter_exact_on_etcd() {
    let data = RedisServer::start();
    counter_stays_exact("etcd", &etcd_urls(), &data);
}

/// Four processes ask for a held lock one after another (each queued in etcd before the
/// next asks); when it is released, they hold it in the order they asked, exactly.
#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_four_processes_are_served_in_arrival_order_on_etcd() {
    let (urls, server) = (etcd_urls(), RedisServer::start());
    let locker = locker_for("etcd", &urls);
    let opts = LockOptions::default().ttl(Duration::from_secs(30));
    let guard = locker.acquire("fifo", opts).await.unwrap();
    let mut workers = Vec::new();
    for i in 0..4u64 {
        let id = i.to_string();
        workers.push(Worker::start(
            "queue",
            "etcd",
            &urls,
            &server.url(),
            &[("LOCKED_ID", &id)],
        ));
        // In the queue before the next one asks.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let waiters = locker.inspect("fifo").await.unwrap().waiters;
            if waiters > i {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "worker {i} did not queue in 60 s ({waiters} waiting)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    guard.release().await.unwrap();
    for w in &workers {
        w.expect("DONE", Duration::from_secs(60));
    }
    let order: Vec<String> = redis::cmd("LRANGE")
        .arg("order")
        .arg(0)
        .arg(-1)
        .query(&mut data(&server.url()))
        .unwrap();
    assert_eq!(order, ["0", "1", "2", "3"], "the turns, in the order asked");
    assert_eq!(locker.inspect("fifo").await.unwrap().waiters, 0);
}

/// The 2 s ttl is a 2 s etcd lease (whole seconds already), lapsing at the leader's next
/// expiry check.
#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_holder_killed_frees_its_lock_within_ttl() {
    let (urls, data) = (etcd_urls(), RedisServer::start());
    let locker = Locker::etcd(&urls.split(',').collect::<Vec<_>>()).unwrap();
    killed_holder_frees_its_lock_within_ttl("etcd", &urls, &data, locker).await;
}
