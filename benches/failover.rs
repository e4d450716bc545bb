//! Leadership failover (issue 21): how long from the leader's end to a standby's first
//! moment as leader, for a few ttls, on one Redis and on SQLite (with the `sqlite`
//! feature): two processes campaign (this binary, started again as workers); the leader
//! is SIGKILLed at a random point of its renewal cycle, or resigns (SIGTERM: the worker
//! calls `Election::resign`), and the standby reports when it leads, on the host's
//! monotonic clock, which every process shares.
//!
//! ```sh
//! cargo bench --bench failover --features sqlite   # ttl 1 s, 3 s, 10 s; a few rounds each
//! ```
//!
//! `cargo test` runs it once, quickly (ttl 1 s, one round, one Redis).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use locked::{LockOptions, Locker};
use locked_test_support::RedisServer;

/// The host's monotonic clock, in microseconds.
fn host_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap() * 1_000_000 + u64::try_from(t.tv_nsec).unwrap() / 1_000
}

fn locker(store: &str, url: &str) -> Locker {
    match store {
        #[cfg(feature = "sqlite")]
        "sqlite" => Locker::sqlite(url).unwrap(),
        _ => Locker::redis(url).unwrap(),
    }
}

/// A worker: campaigns for ever, printing `LEADING <host µs>` at the start of each term;
/// on SIGTERM resigns and exits.
fn worker(store: &str) {
    let url = std::env::var("LOCKED_URL").unwrap();
    let ttl: u64 = std::env::var("LOCKED_TTL_MS").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let election = locker(store, &url)
            .election("failover")
            .options(LockOptions::default().ttl(Duration::from_millis(ttl)));
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let resign = election.clone();
        tokio::spawn(async move {
            term.recv().await;
            resign.resign().await;
            println!("RESIGNED");
            std::process::exit(0);
        });
        println!("READY");
        let _ = election
            .lead_forever(|_| async {
                println!("LEADING {}", host_us());
                std::future::pending::<std::ops::ControlFlow<()>>().await
            })
            .await;
    });
}

struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn start(store: &str, url: &str, ttl: Duration) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("LOCKED_FAILOVER_WORKER", store)
            .env("LOCKED_URL", url)
            .env("LOCKED_TTL_MS", ttl.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let w = Self { child, lines };
        w.expect("READY", Duration::from_secs(30));
        w
    }

    fn poll(&self, prefix: &str) -> Option<String> {
        while let Ok(line) = self.lines.try_recv() {
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
        None
    }

    fn expect(&self, prefix: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(line) = self.poll(prefix) {
                return line;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no `{prefix}` within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
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

/// Which of `workers` leads next, and when (host µs), within `limit`.
fn next_leader(workers: &[Worker], limit: Duration) -> (usize, u64) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        for (i, w) in workers.iter().enumerate() {
            if let Some(line) = w.poll("LEADING ") {
                return (i, line["LEADING ".len()..].parse().unwrap());
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no one led within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `rounds` failovers of each kind at `ttl`: (after a SIGKILL, after a resign).
fn failovers(
    store: &str,
    url: &str,
    ttl: Duration,
    rounds: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let limit = ttl * 3 + Duration::from_secs(10);
    let mut workers = vec![
        Worker::start(store, url, ttl),
        Worker::start(store, url, ttl),
    ];
    let (mut killed, mut resigned) = (Vec::new(), Vec::new());
    let mut leader = next_leader(&workers, limit).0;
    for round in 0..rounds * 2 {
        // A point of the renewal cycle that varies from round to round.
        let phase = ttl.mul_f64(0.1 + 0.8 * ((round * 7 % 10) as f64 / 10.0)) / 3;
        std::thread::sleep(Duration::from_millis(200) + phase);
        let kill = round % 2 == 0;
        let at = host_us();
        workers[leader].signal(if kill { "KILL" } else { "TERM" });
        let (next, led_at) = next_leader(&workers, limit);
        assert_ne!(next, leader);
        let took = Duration::from_micros(led_at.saturating_sub(at));
        if kill {
            killed.push(took)
        } else {
            resigned.push(took)
        }
        // The one that ended is replaced by a fresh standby.
        workers[leader] = Worker::start(store, url, ttl);
        leader = next;
    }
    drop(workers);
    (killed, resigned)
}

fn summary(v: &mut [Duration]) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:>7.1} ms, median {:>7.1} ms, max {:>7.1} ms ({} rounds)",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

fn main() {
    if let Ok(store) = std::env::var("LOCKED_FAILOVER_WORKER") {
        return worker(&store);
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    let (ttls, rounds): (&[u64], usize) = if quick {
        (&[1000], 1)
    } else {
        (&[1000, 3000, 10_000], 5)
    };
    let server = RedisServer::start();
    #[allow(unused_mut)]
    let mut stores = vec![("redis", server.url())];
    #[cfg(feature = "sqlite")]
    let dir = tempfile::tempdir().unwrap();
    #[cfg(feature = "sqlite")]
    if !quick {
        stores.push((
            "sqlite",
            dir.path().join("failover.db").display().to_string(),
        ));
    }
    println!("failover: leader ended -> standby leads (host monotonic clock)");
    for (store, url) in &stores {
        for &ttl in ttls {
            let ttl = Duration::from_millis(ttl);
            let (mut killed, mut resigned) = failovers(store, url, ttl, rounds);
            println!(
                "{store:<7} ttl {:>5} ms  SIGKILL: {}",
                ttl.as_millis(),
                summary(&mut killed)
            );
            println!(
                "{store:<7} ttl {:>5} ms  resign:  {}",
                ttl.as_millis(),
                summary(&mut resigned)
            );
        }
    }
}
