//! Network partitions through a TCP fault proxy (`locked_test_support::Proxy`): a holder whose store
//! connection is cut must stop its body before anyone on the other side gets the lock,
//! and its bytes, delivered late once the partition heals, must do no harm. On one Redis,
//! PostgreSQL, Redlock (a minority cut: the holder keeps its lock; a majority cut: it
//! stops) and a Redis Cluster whose nodes the holder reaches through proxies. A leader cut
//! off stops leading before a standby starts (one Redis, PostgreSQL, Redlock).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locked::{LockError, LockGuard, LockOptions, Locker};
use locked_test_support::{Proxy, RedisServer, eventually, free_port, redlock_locker};

/// The holder's ttl: renewed every 500 ms, stopped 150 ms before it would lapse.
const TTL: Duration = Duration::from_millis(1500);
/// How long the other side may wait: the ttl and a generous allowance for a busy machine.
const PATIENCE: Duration = Duration::from_secs(11);

// --- the proxy itself -------------------------------------------------------------------

fn send(conn: &mut TcpStream, bytes: &str) {
    conn.write_all(bytes.as_bytes()).unwrap();
}

/// Reads exactly `len` bytes, or `None` if they did not all come within `limit`.
fn read_exact_within(conn: &mut TcpStream, len: usize, limit: Duration) -> Option<String> {
    conn.set_read_timeout(Some(limit)).unwrap();
    let mut buf = vec![0u8; len];
    conn.read_exact(&mut buf).ok()?;
    Some(String::from_utf8(buf).unwrap())
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn proxy_holds_bytes_while_cut_delivers_them_in_order_on_heal_and_resets() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let counter = |server: &RedisServer| -> Option<i64> {
        redis::cmd("GET")
            .arg("proxied")
            .query(&mut server.client())
            .unwrap()
    };

    let mut old = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    send(&mut old, "PING\r\n");
    let pong = read_exact_within(&mut old, 7, Duration::from_secs(10));
    assert_eq!(pong.as_deref(), Some("+PONG\r\n"));
    assert!(wait_until(Duration::from_secs(5), || proxy.connections() == 1));

    proxy.cut();
    // Both on the connection opened before the cut and on one opened during it.
    send(&mut old, "INCR proxied\r\n");
    let mut new = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    assert!(wait_until(Duration::from_secs(5), || proxy.connections() == 2));
    send(&mut old, "INCR proxied\r\n");
    send(&mut new, "PING\r\n");
    // Nothing reaches the server, nothing comes back, nothing is closed.
    assert_eq!(
        read_exact_within(&mut old, 1, Duration::from_millis(500)),
        None
    );
    assert_eq!(counter(&server), None, "a byte passed the cut");
    assert_eq!(proxy.connections(), 2);

    proxy.heal();
    // The held commands arrive late, in order.
    let replies = read_exact_within(&mut old, 8, Duration::from_secs(10));
    assert_eq!(replies.as_deref(), Some(":1\r\n:2\r\n"));
    let pong = read_exact_within(&mut new, 7, Duration::from_secs(10));
    assert_eq!(pong.as_deref(), Some("+PONG\r\n"));
    assert_eq!(counter(&server), Some(2));

    proxy.reset();
    // Both connections end abruptly; a new one works.
    let mut byte = [0u8; 1];
    old.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match old.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("after a reset, read gave {other:?}"),
    }
    assert!(wait_until(Duration::from_secs(5), || proxy.connections() == 0));
    let mut fresh = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    send(&mut fresh, "INCR proxied\r\n");
    let three = read_exact_within(&mut fresh, 4, Duration::from_secs(10));
    assert_eq!(three.as_deref(), Some(":3\r\n"));
}

// --- the holder and the timeline --------------------------------------------------------

/// When a body was last seen running (one monotonic clock for every party).
#[derive(Default)]
struct Alive(Mutex<Option<Instant>>);

impl Alive {
    fn mark(&self) {
        *self.0.lock().unwrap() = Some(Instant::now());
    }

    fn last(&self) -> Option<Instant> {
        *self.0.lock().unwrap()
    }
}

/// Holder A: `run` with a body that marks itself alive every 10 ms until `done` (or 60 s,
/// which fails the test), after keeping its lock's hand-off string (its token) in `ticket`
/// when given one.
#[derive(Clone, Default)]
struct Holder {
    alive: Arc<Alive>,
    ticket: Option<Arc<Mutex<Option<String>>>>,
    done: Arc<AtomicBool>,
}

impl Holder {
    fn with_ticket() -> Self {
        Self {
            ticket: Some(Arc::default()),
            ..Self::default()
        }
    }

    fn spawn(
        &self,
        locker: &Locker,
        key: &str,
        ttl: Duration,
    ) -> tokio::task::JoinHandle<Result<(), LockError>> {
        let (locker, key, me) = (locker.clone(), key.to_owned(), self.clone());
        tokio::spawn(async move {
            let opts = LockOptions::default().ttl(ttl);
            locker
                .run(&key, opts, || async move {
                    if let Some(ticket) = &me.ticket {
                        *ticket.lock().unwrap() = locked::handoff();
                    }
                    let give_up = Instant::now() + Duration::from_secs(60);
                    while !me.done.load(Ordering::SeqCst) && Instant::now() < give_up {
                        me.alive.mark();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
                .await
        })
    }

    async fn entered(&self) {
        assert!(
            eventually(Duration::from_secs(20), async || self
                .alive
                .last()
                .is_some())
            .await,
            "holder A never got its lock"
        );
    }

    fn ticket(&self) -> String {
        let ticket = self.ticket.as_ref().expect("a holder with a ticket");
        ticket
            .lock()
            .unwrap()
            .clone()
            .expect("a hand-off inside the body")
    }
}

/// B: waits for `key` (up to `patience`, holding it 30 s once in); returns its guard and
/// when it got in.
fn spawn_waiter(
    locker: &Locker,
    key: &str,
    patience: Duration,
) -> tokio::task::JoinHandle<(Result<LockGuard, LockError>, Instant)> {
    let (locker, key) = (locker.clone(), key.to_owned());
    tokio::spawn(async move {
        let opts = LockOptions::default()
            .ttl(Duration::from_secs(30))
            .timeout(patience);
        let out = locker.acquire(&key, opts).await;
        (out, Instant::now())
    })
}

/// The lost-side scenario, whatever the store: A (on `a`, whose store connections `cut`
/// cuts) holds `key`; B (on `b`) waits for it; cut: A must end `Lost`, its body's last
/// sign of life before B gets in, and B must get in. Then `heal`: A's late renewals and
/// release harm nothing, A's token is worthless, and after B's release a third locker
/// (`c`) takes the key at once.
async fn cut_holder_stops_before_the_other_side_gets_in(
    name: &str,
    [a, b, c]: [&Locker; 3],
    key: &str,
    ttl: Duration,
    cut: impl AsyncFn(),
    heal: impl Fn(),
) {
    let holder = Holder::with_ticket();
    let a_task = holder.spawn(a, key, ttl);
    holder.entered().await;
    // Renewed through the proxy first: A runs past its first ttl.
    let entered = Instant::now();
    assert!(
        eventually(PATIENCE, async || a_task.is_finished()
            || holder.alive.last().is_some_and(|t| t > entered + ttl))
        .await
    );
    assert!(
        !a_task.is_finished(),
        "{name}: A stopped before the cut: {:?}",
        a_task.await
    );
    let patience = ttl + Duration::from_secs(10);
    let b_task = spawn_waiter(b, key, patience);
    let ticket = holder.ticket();

    cut().await;
    let cut_at = Instant::now();
    let a_out = tokio::time::timeout(patience, a_task)
        .await
        .unwrap_or_else(|_| panic!("{name}: A still ran {patience:?} after the cut"))
        .unwrap();
    let a_returned = Instant::now();
    let err = a_out.expect_err("A's body ended by itself, holding a lock it could not renew");
    assert!(err.is_lost(), "{name}: A ended with {err:?}, not Lost");
    let (b_out, b_entered) = b_task.await.unwrap();
    let b_guard = b_out.unwrap_or_else(|e| panic!("{name}: B never got in: {e}"));

    let last_alive = holder.alive.last().unwrap();
    let since = |t: Instant| t.saturating_duration_since(cut_at);
    println!(
        "{name}: cut at 0; A's body last alive at {:?}, A returned Lost at {:?}, B entered at \
         {:?} (ttl {ttl:?}); A: {err}",
        since(last_alive),
        since(a_returned),
        since(b_entered),
    );
    assert!(
        last_alive < b_entered,
        "{name}: A's body ran at {:?} after the cut, B was in at {:?}",
        since(last_alive),
        since(b_entered)
    );
    assert!(
        b_entered - cut_at < patience,
        "{name}: B got in only {:?} after the cut",
        b_entered - cut_at
    );

    // Heal: A's renewals and its release, held since the cut, reach the store now.
    heal();
    // A's own locker, through the healed connection: its token no longer holds anything
    // (and so it can neither release nor extend B's lock).
    let mut restored = None;
    assert!(
        eventually(Duration::from_secs(20), async || {
            match a
                .restore(&ticket, LockOptions::default().renew(false))
                .await
            {
                Err(e) if e.is_backend() => false,
                other => {
                    restored = Some(other);
                    true
                }
            }
        })
        .await,
        "{name}: A's locker did not reach the store again after the heal"
    );
    match restored.unwrap() {
        Err(e) => assert!(e.is_lost(), "{name}: restoring A's token: {e:?}"),
        Ok(guard) => panic!("{name}: A's old token restored B's lock: {:?}", guard.key()),
    }
    // B's lock is still B's: not deleted nor shortened by A's late bytes.
    let left = b_guard
        .remaining()
        .await
        .unwrap_or_else(|e| panic!("{name}: B's lock after the heal: {e}"));
    assert!(
        left > Duration::from_secs(5),
        "{name}: B's lock has {left:?} left"
    );
    b_guard
        .release()
        .await
        .unwrap_or_else(|e| panic!("{name}: B's release: {e}"));
    // Nothing else holds the key.
    let third = c
        .try_acquire(key, LockOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{name}: the third locker: {e}"));
    let third = third.unwrap_or_else(|| panic!("{name}: the key is still held after B's release"));
    third.release().await.unwrap();
}

// --- one Redis --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holder_behind_a_cut_stops_before_the_other_side_gets_in() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let a = Locker::redis(&proxy.redis_url()).unwrap();
    let (b, c) = (server.locker(), server.locker());
    cut_holder_stops_before_the_other_side_gets_in(
        "redis",
        [&a, &b, &c],
        "part:redis",
        TTL,
        async || proxy.cut(),
        || proxy.heal(),
    )
    .await;
}

// --- PostgreSQL -------------------------------------------------------------------------

/// A proxy in front of `server`, and a locker (on `schema`) that reaches it through it.
#[cfg(feature = "postgres")]
fn proxied_postgres(server: &locked_test_support::PgServer, schema: &str) -> (Proxy, Locker) {
    let proxy = Proxy::start(server.port);
    let url = server.url().replace(
        &format!("127.0.0.1:{}/", server.port),
        &format!("127.0.0.1:{}/", proxy.port()),
    );
    assert_ne!(url, server.url());
    let a = Locker::builder().schema(schema).postgres(&url).unwrap();
    (proxy, a)
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_holder_behind_a_cut_stops_before_the_other_side_gets_in() {
    let server = locked_test_support::shared_postgres();
    let schema = "partition_pg";
    let (proxy, a) = proxied_postgres(server, schema);
    let (b, c) = (server.locker(schema), server.locker(schema));
    cut_holder_stops_before_the_other_side_gets_in(
        "postgres",
        [&a, &b, &c],
        "part:pg",
        TTL,
        async || proxy.cut(),
        || proxy.heal(),
    )
    .await;
}

// --- Redlock ----------------------------------------------------------------------------

/// Three masters; A reaches the first `proxied` of them through proxies.
fn redlock_with_proxies(proxied: usize) -> (Vec<RedisServer>, Vec<Proxy>, Locker) {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let proxies: Vec<Proxy> = masters[..proxied]
        .iter()
        .map(|m| Proxy::start(m.port()))
        .collect();
    let urls: Vec<String> = proxies
        .iter()
        .map(Proxy::redis_url)
        .chain(masters[proxied..].iter().map(RedisServer::url))
        .collect();
    let a = Locker::redlock(&urls).unwrap();
    (masters, proxies, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_minority_cut_keeps_the_lock_and_the_other_side_out() {
    let (masters, proxies, a) = redlock_with_proxies(1);
    let b = redlock_locker(&masters);
    let key = "part:minority";
    let holder = Holder::default();
    let a_task = holder.spawn(&a, key, TTL);
    holder.entered().await;

    proxies[0].cut();
    let cut_at = Instant::now();
    // B waits three ttls: A's renewals reach two masters of three all along, so B must
    // time out, and A's body must run on through it.
    let opts = LockOptions::default().timeout(3 * TTL);
    let b_out = b.acquire(key, opts).await;
    let b_gave_up = Instant::now();
    match b_out {
        Err(e) => assert!(e.is_timeout(), "B: {e:?}"),
        Ok(guard) => panic!(
            "B got in {:?} after a minority cut, with A still holding ({:?})",
            cut_at.elapsed(),
            guard.key()
        ),
    }
    assert!(
        eventually(PATIENCE, async || a_task.is_finished()
            || holder.alive.last().is_some_and(|t| t > b_gave_up))
        .await
    );
    assert!(
        !a_task.is_finished(),
        "A stopped under a minority cut: {:?}",
        a_task.await
    );
    println!(
        "redlock minority cut: A still alive {:?} after the cut; B timed out after {:?}",
        holder.alive.last().unwrap() - cut_at,
        b_gave_up - cut_at
    );

    // A releases normally (on the two masters it reaches; the third is told once healed).
    holder.done.store(true, Ordering::SeqCst);
    let out = tokio::time::timeout(PATIENCE, a_task)
        .await
        .unwrap()
        .unwrap();
    out.unwrap_or_else(|e| panic!("A's run under a minority cut: {e}"));
    proxies[0].heal();
    let guard = b
        .try_acquire(key, LockOptions::default())
        .await
        .unwrap()
        .expect("free once A released");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_majority_cut_stops_the_holder_before_the_other_side_gets_in() {
    let (masters, proxies, a) = redlock_with_proxies(2);
    let (b, c) = (redlock_locker(&masters), redlock_locker(&masters));
    cut_holder_stops_before_the_other_side_gets_in(
        "redlock majority",
        [&a, &b, &c],
        "part:majority",
        TTL,
        async || proxies.iter().for_each(Proxy::cut),
        || proxies.iter().for_each(Proxy::heal),
    )
    .await;
}

// --- Redis Cluster ----------------------------------------------------------------------
//
// Cluster clients go where the cluster's `CLUSTER SLOTS` says, not where their seeds
// point. With `cluster-preferred-endpoint-type unknown-endpoint` a node names no host
// there (NULL), and the client (redis-rs) uses the host it asked: the nodes listen on
// 127.0.0.1:<port>; A's seeds are 127.0.0.2:<port>, where a proxy per node listens (same
// port, another loopback address), so every connection A opens goes through a proxy, and
// B's (seeds on 127.0.0.1) go straight to the nodes. The cluster bus is direct.

/// A cluster node of this file's own.
struct Node {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Free on 127.0.0.1, its bus port (+10000) too, and on 127.0.0.2 for A's proxy.
        let port = loop {
            let port = free_port();
            let free = |addr: (Ipv4Addr, u16)| std::net::TcpListener::bind(addr).is_ok();
            if port <= 55_535
                && free((Ipv4Addr::LOCALHOST, port + 10_000))
                && free((Ipv4Addr::new(127, 0, 0, 2), port))
            {
                break port;
            }
        };
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1500"])
            .args(["--cluster-preferred-endpoint-type", "unknown-endpoint"])
            .arg("--cluster-config-file")
            .arg(dir.path().join("nodes.conf"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let node = Self {
            child,
            port,
            _dir: dir,
        };
        assert!(
            wait_until(Duration::from_secs(20), || node.info("PING").is_some()),
            "cluster node on {port} did not start"
        );
        node
    }

    /// A one-word command's reply (`PING`, `CLUSTER INFO`), `None` if it fails.
    fn info(&self, cmd: &str) -> Option<String> {
        let mut words = cmd.split(' ');
        let mut cmd = redis::cmd(words.next().unwrap());
        cmd.arg(words.collect::<Vec<_>>());
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| {
                c.set_read_timeout(Some(Duration::from_secs(2)))?;
                cmd.query(&mut c)
            })
            .ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three masters, no replicas, every slot served.
fn start_cluster() -> Vec<Node> {
    let nodes: Vec<Node> = (0..3).map(|_| Node::start()).collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "redis-cli --cluster create:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ready = wait_until(Duration::from_secs(60), || {
        nodes.iter().all(|n| {
            n.info("CLUSTER INFO").is_some_and(|info| {
                info.contains("cluster_state:ok")
                    && info.contains("cluster_known_nodes:3")
                    && info.contains("cluster_slots_ok:16384")
            })
        })
    });
    assert!(ready, "the cluster was not ready within 60 s");
    nodes
}

/// A dedicated cluster, A's proxies (one per node, on 127.0.0.2) and three lockers: A
/// through the proxies, B and C straight to the nodes.
struct ProxiedCluster {
    proxies: Vec<Proxy>,
    lockers: [Locker; 3],
    /// A connection of the test's own, straight to the nodes.
    direct: redis::cluster::ClusterClient,
    _nodes: Vec<Node>,
}

impl ProxiedCluster {
    async fn start(key: &str) -> Self {
        let nodes = start_cluster();
        let proxies: Vec<Proxy> = nodes
            .iter()
            .map(|n| Proxy::start_on(SocketAddr::from(([127, 0, 0, 2], n.port)), n.port))
            .collect();
        let seeds = |host: &str| -> Vec<String> {
            nodes
                .iter()
                .map(|n| format!("redis://{host}:{}/", n.port))
                .collect()
        };
        let a = Locker::redis_cluster(seeds("127.0.0.2")).unwrap();
        let b = Locker::redis_cluster(seeds("127.0.0.1")).unwrap();
        let c = Locker::redis_cluster(seeds("127.0.0.1")).unwrap();
        // A's traffic goes through the proxies, and only A's.
        assert!(!a.is_locked(key).await.unwrap());
        let through = || proxies.iter().map(Proxy::connections).sum::<usize>();
        let a_only = through();
        assert!(a_only > 0, "A reached the cluster around its proxies");
        assert!(!b.is_locked(key).await.unwrap());
        assert!(!c.is_locked(key).await.unwrap());
        assert_eq!(through(), a_only, "B or C went through A's proxies");
        Self {
            proxies,
            lockers: [a, b, c],
            direct: redis::cluster::ClusterClient::new(seeds("127.0.0.1")).unwrap(),
            _nodes: nodes,
        }
    }

    fn lockers(&self) -> [&Locker; 3] {
        let [a, b, c] = &self.lockers;
        [a, b, c]
    }

    fn cut(&self) {
        self.proxies.iter().for_each(Proxy::cut);
    }

    fn heal(&self) {
        self.proxies.iter().for_each(Proxy::heal);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_holder_behind_a_cut_stops_before_the_other_side_gets_in() {
    let key = "part:cluster";
    let cluster = ProxiedCluster::start(key).await;
    cut_holder_stops_before_the_other_side_gets_in(
        "cluster",
        cluster.lockers(),
        key,
        TTL,
        async || cluster.cut(),
        || cluster.heal(),
    )
    .await;
}

// --- a reset, then a cut ----------------------------------------------------------------
//
// The holder's connection is reset and the network is then dead, with a connection still
// accepted but never answered (a TCP proxy or load balancer in front of a partitioned
// server; a dropped SYN does the same for the connect timeout): the client reconnects,
// and its next commands wait for that reconnection. Timed right after a renewal lands,
// with a ttl whose renewal budget (ttl - ttl/10 - ttl/3) is over the 1 s response
// timeout.

/// The ttl of the reset tests: 2.6 s (renewal budget 1.47 s).
const RESET_TTL: Duration = Duration::from_millis(2600);

/// Waits until a renewal of `key` lands: its `PTTL`, polled on `conn`, jumps up.
async fn renewal_landed(conn: &mut impl redis::aio::ConnectionLike, key: &str) {
    let pttl = redis::cmd("PTTL").arg(key).clone();
    let mut prev: i64 = pttl.query_async(conn).await.unwrap();
    loop {
        let now: i64 = pttl.query_async(conn).await.unwrap();
        if now > prev + 50 {
            return;
        }
        prev = now;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Regression (issue 16, found by this test): a renewal waiting for a reconnection was
/// bounded only by the client's connect + response timeouts (3 s), not by its budget.
async fn repro_16_redis_holder_behind_a_reset_then_cut_stops_before_the_other_side_gets_in() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let a = Locker::redis(&proxy.redis_url()).unwrap();
    let (b, c) = (server.locker(), server.locker());
    let key = "part:redis-reset";
    let full = b.full_key(key).unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let conn = tokio::sync::Mutex::new(client.get_multiplexed_async_connection().await.unwrap());
    cut_holder_stops_before_the_other_side_gets_in(
        "redis reset, then cut",
        [&a, &b, &c],
        key,
        RESET_TTL,
        async || {
            renewal_landed(&mut *conn.lock().await, &full).await;
            proxy.reset();
            proxy.cut();
        },
        || proxy.heal(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_holder_behind_a_reset_then_cut_stops_before_the_other_side_gets_in() {
    let key = "part:cluster-reset";
    let cluster = ProxiedCluster::start(key).await;
    let full = cluster.lockers[1].full_key(key).unwrap();
    let conn = tokio::sync::Mutex::new(cluster.direct.get_async_connection().await.unwrap());
    cut_holder_stops_before_the_other_side_gets_in(
        "cluster reset, then cut",
        cluster.lockers(),
        key,
        RESET_TTL,
        async || {
            renewal_landed(&mut *conn.lock().await, &full).await;
            cluster.proxies.iter().for_each(Proxy::reset);
            cluster.cut();
        },
        || cluster.heal(),
    )
    .await;
}

// --- a late answer ----------------------------------------------------------------------
//
// A's try reaches the store, which takes the lock for it, but the answer is held in the
// network until the lock has expired there (found by the model, seed 631967472: a reply
// held by a cut and delivered on heal). A must not use that answer: the lock it names may
// be anyone's by then.

/// The ttl of the late-answer tests: short, so the lock expires well within the single
/// Redis client's 1 s response timeout and the late answer is delivered, not timed out.
const LATE_TTL: Duration = Duration::from_millis(300);

/// A (on `a`, whose answers `hold` holds) waits for `key`; once the store has taken it for
/// A and let it expire, `heal` delivers the answer. A's body must then run on a lock it
/// holds: B (on `b`, straight to the store) cannot take the key while it runs.
async fn late_answer_is_not_used(
    name: &str,
    [a, b]: [&Locker; 2],
    key: &str,
    hold: impl Fn(),
    heal: impl Fn(),
) {
    assert!(!b.is_locked(key).await.unwrap(), "{name}: {key} is taken");
    hold();
    let run = {
        let (a, b, key) = (a.clone(), b.clone(), key.to_owned());
        tokio::spawn(async move {
            let opts = LockOptions::default()
                .ttl(LATE_TTL)
                .timeout(Duration::from_secs(30));
            a.run(&key.clone(), opts, || async {
                // A body that starts on a lock it does not hold lets B in (asked from a
                // task of its own: from inside the body it would be a nested lock).
                let other = tokio::spawn(async move {
                    let other = b.try_acquire(&key, LockOptions::default()).await;
                    other.map(|g| g.is_some())
                });
                other.await.unwrap()
            })
            .await
        })
    };
    let taken = eventually(PATIENCE, async || b.is_locked(key).await.unwrap()).await;
    assert!(taken, "{name}: A's try never reached the store");
    let expired = eventually(PATIENCE, async || !b.is_locked(key).await.unwrap()).await;
    assert!(expired, "{name}: the lock taken for A never expired");
    heal();
    let outcome = tokio::time::timeout(PATIENCE, run)
        .await
        .unwrap_or_else(|_| panic!("{name}: A's run never ended"))
        .unwrap();
    match outcome {
        Ok(Ok(false)) => {}
        Ok(Ok(true)) => panic!("{name}: B took the key while A's body ran on a late answer"),
        other => panic!("{name}: A's run: {other:?}"),
    }
    assert!(
        !b.is_locked(key).await.unwrap(),
        "{name}: A left the key held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_late_answer_is_given_back_not_used() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let a = Locker::redis(&proxy.redis_url()).unwrap();
    let b = server.locker();
    // Connected before the answers are held.
    assert!(!a.is_locked("part:late-redis").await.unwrap());
    late_answer_is_not_used(
        "redis",
        [&a, &b],
        "part:late-redis",
        || proxy.hold_replies(),
        || proxy.heal(),
    )
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_late_answer_is_given_back_not_used() {
    let server = locked_test_support::shared_postgres();
    let schema = "partition_pg_late";
    let (proxy, a) = proxied_postgres(server, schema);
    let b = server.locker(schema);
    // Its statements prepared (a first try that waits on a prepare's answer would never
    // reach the table).
    let warm = a.acquire("part:late-pg", LockOptions::default()).await;
    warm.unwrap().release().await.unwrap();
    late_answer_is_not_used(
        "postgres",
        [&a, &b],
        "part:late-pg",
        || proxy.hold_replies(),
        || proxy.heal(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_late_answers_are_given_back_not_used() {
    let (masters, proxies, a) = redlock_with_proxies(3);
    let b = redlock_locker(&masters);
    assert!(!a.is_locked("part:late-redlock").await.unwrap());
    late_answer_is_not_used(
        "redlock",
        [&a, &b],
        "part:late-redlock",
        || proxies.iter().for_each(Proxy::hold_replies),
        || proxies.iter().for_each(Proxy::heal),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_late_answer_is_given_back_not_used() {
    let key = "part:late-cluster";
    let cluster = ProxiedCluster::start(key).await;
    let [a, b, _] = cluster.lockers();
    late_answer_is_not_used(
        "cluster",
        [a, b],
        key,
        || cluster.proxies.iter().for_each(Proxy::hold_replies),
        || cluster.heal(),
    )
    .await;
}

// --- leadership (issue 21) ----------------------------------------------------------------

/// A leader (on `a`, whose store connections `cut` cuts) and a standby (on `b`) campaign for
/// `key`; cut: the leader's term ends `Lost`, its body's last tick comes before the
/// standby's first, and the standby leads.
async fn cut_leader_stops_before_the_standby_leads(
    name: &str,
    [a, b]: [&Locker; 2],
    key: &str,
    ttl: Duration,
    cut: impl Fn(),
) {
    type Ticks = Arc<Mutex<Vec<Instant>>>;
    let opts = LockOptions::default().ttl(ttl);
    let campaign = |locker: &Locker, id: &str, ticks: &Ticks| {
        let election = locker.election(key).identity(id).options(opts);
        let ticks = ticks.clone();
        tokio::spawn(async move {
            election
                .lead(|_| async move {
                    loop {
                        ticks.lock().unwrap().push(Instant::now());
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
                .await
        })
    };
    let (a_ticks, b_ticks): (Ticks, Ticks) = Default::default();
    let a_task = campaign(a, "leader-a", &a_ticks);
    assert!(
        eventually(PATIENCE, async || !a_ticks.lock().unwrap().is_empty()).await,
        "{name}: A never led"
    );
    let b_task = campaign(b, "standby-b", &b_ticks);
    // Renewed through the proxy: A leads past its first ttl, B stands by.
    tokio::time::sleep(ttl + ttl / 2).await;
    assert!(b_ticks.lock().unwrap().is_empty(), "{name}: B led beside A");
    cut();
    let cut_at = Instant::now();
    let a_out = tokio::time::timeout(ttl + Duration::from_secs(10), a_task)
        .await
        .unwrap_or_else(|_| panic!("{name}: A still led long after the cut"))
        .unwrap();
    let err = a_out.expect_err("A's term ended by itself");
    assert!(err.is_lost(), "{name}: A's term ended with {err}, not Lost");
    assert!(
        eventually(ttl + Duration::from_secs(10), async || !b_ticks
            .lock()
            .unwrap()
            .is_empty())
        .await,
        "{name}: B never led after the cut"
    );
    let a_last = *a_ticks.lock().unwrap().last().unwrap();
    let b_first = b_ticks.lock().unwrap()[0];
    println!(
        "{name}: leader cut at 0; its body last ran at {:?}; the standby led at {:?} (ttl {ttl:?})",
        a_last.saturating_duration_since(cut_at),
        b_first.saturating_duration_since(cut_at),
    );
    assert!(
        a_last < b_first,
        "{name}: A's body ran {:?} after B began leading",
        a_last - b_first
    );
    b_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_leader_behind_a_cut_stops_before_the_standby_leads() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let a = Locker::redis(&proxy.redis_url()).unwrap();
    let b = server.locker();
    cut_leader_stops_before_the_standby_leads("redis", [&a, &b], "lead-cut:redis", TTL, || {
        proxy.cut()
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leader_behind_a_cut_stops_before_the_standby_leads() {
    let server = locked_test_support::shared_postgres();
    let schema = "partition_lead";
    let (proxy, a) = proxied_postgres(server, schema);
    let b = server.locker(schema);
    cut_leader_stops_before_the_standby_leads("postgres", [&a, &b], "lead-cut:pg", TTL, || {
        proxy.cut()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_leader_behind_a_majority_cut_stops_before_the_standby_leads() {
    let (masters, proxies, a) = redlock_with_proxies(2);
    let b = redlock_locker(&masters);
    cut_leader_stops_before_the_standby_leads("redlock", [&a, &b], "lead-cut:redlock", TTL, || {
        proxies.iter().for_each(Proxy::cut)
    })
    .await;
}
