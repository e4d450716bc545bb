//! `locked` against the floor of raw Redis round trips, measured in one process.
//!
//! `cargo bench --bench lock_cycle -- --json target/bench.json [--seconds N]`
//! (`-- --semaphore` for the semaphore's W2 and W3 alone)
//!
//! Starts its own `redis-server` on a free port. Every ratio is measured by alternating
//! short blocks of the floor and the library and taking the median of per-block ratios,
//! because a process's round trip on a noisy machine drifts more than the effect measured.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use locked::{LockError, Locker, locked};
use locked_test_support::bench::{Rounds, alternate, percentile, shares_over_mean, throughput, us};
use locked_test_support::{RedisCluster, RedisServer};
use redis::aio::{ConnectionLike, ConnectionManager};
use serde_json::{Value, json};

static BENCH_LOCKER: OnceLock<Locker> = OnceLock::new();

fn bench_locker() -> &'static Locker {
    BENCH_LOCKER.get().expect("set in main")
}

#[locked(key = "w1:attr:{i}", locker = bench_locker(), logging = false)]
async fn annotated(i: u64) -> Result<(), LockError> {
    std::hint::black_box(i);
    Ok(())
}

/// The floor: what a hand-rolled lock costs with the same client (the connection manager
/// on one server, the cluster client on a cluster).
struct Floor<C> {
    conn: C,
    release: redis::Script,
}

impl<C: ConnectionLike + Send> Floor<C> {
    async fn cycle(&mut self, key: &str, token: &str) {
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(&mut self.conn)
            .await
            .unwrap();
        assert!(set.is_some());
        let _: i64 = self
            .release
            .key(key)
            .arg(token)
            .invoke_async(&mut self.conn)
            .await
            .unwrap();
    }
}

/// The semaphore floor: what a hand-rolled Redis semaphore costs, with the same client.
/// Acquire is one script (trim the lapsed leases, count, add), release one `ZREM`: two
/// round trips per cycle, as the library's.
const SEM_ACQUIRE: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + 30000, ARGV[1])
  return 1
end
return 0";

async fn sem_floor_cycle<C: ConnectionLike + Send>(
    conn: &mut C,
    acquire: &redis::Script,
    key: &str,
) {
    let token = "0123456789abcdef0123456789abcdef";
    let taken: i64 = acquire
        .key(key)
        .arg(token)
        .arg(3)
        .invoke_async(conn)
        .await
        .unwrap();
    assert_eq!(taken, 1);
    let _: i64 = redis::cmd("ZREM")
        .arg(key)
        .arg(token)
        .query_async(conn)
        .await
        .unwrap();
}

async fn commands_processed(conn: &mut ConnectionManager) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Sequential cycles: p50/p99 of the floor and the library, alternating blocks.
async fn w1<C: ConnectionLike + Send>(
    floor: &mut Floor<C>,
    locker: &Locker,
    blocks: usize,
    per_block: usize,
    attribute: bool,
) -> Value {
    let (mut f_all, mut l_all, mut a_all) = (Vec::new(), Vec::new(), Vec::new());
    // Per block: the p50 of the floor, the library and the annotated fn.
    let mut p50s = Rounds::new();
    let opts = locker.options().logging(false);
    let mut n = 0u64;
    for _ in 0..blocks {
        let (mut f, mut l, mut a) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..per_block {
            n += 1;
            let key = format!("w0:{n}");
            let t = Instant::now();
            floor.cycle(&key, "0123456789abcdef0123456789abcdef").await;
            f.push(t.elapsed());
            let key = format!("w1:{n}");
            let t = Instant::now();
            locker
                .acquire(&key, opts)
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
            l.push(t.elapsed());
            if attribute {
                let t = Instant::now();
                annotated(n).await.unwrap();
                a.push(t.elapsed());
            }
        }
        for v in [&mut f, &mut l, &mut a] {
            v.sort();
        }
        let p50 = |v: &[Duration]| us(percentile(v, 0.5));
        p50s.push([p50(&f), p50(&l), if attribute { p50(&a) } else { f64::NAN }]);
        f_all.extend(f);
        l_all.extend(l);
        a_all.extend(a);
    }
    for v in [&mut f_all, &mut l_all, &mut a_all] {
        v.sort();
    }
    let stat = |v: &[Duration]| {
        if v.is_empty() {
            return Value::Null;
        }
        let total: Duration = v.iter().sum();
        json!({
            "cycles_per_s": v.len() as f64 / total.as_secs_f64(),
            "p50_us": us(percentile(v, 0.5)),
            "p99_us": us(percentile(v, 0.99)),
        })
    };
    let [_, ratio, attr_ratio] = p50s.ratios_to(0);
    json!({
        "floor": stat(&f_all),
        "acquire_release": stat(&l_all),
        "annotated_fn": stat(&a_all),
        "p50_ratio_median": ratio,
        "annotated_p50_ratio_median": attr_ratio,
    })
}

/// 64 tasks, each on its own keys, for `dur`: total cycles/s.
async fn concurrent<C: ConnectionLike + Clone + Send + Sync + 'static>(
    kind: &'static str,
    conn: &C,
    locker: &Locker,
    fencing: bool,
    dur: Duration,
) -> f64 {
    concurrent_tasks(kind, conn, locker, fencing, dur, 64).await
}

/// [`concurrent`] with `tasks` tasks (1 for a sequential cycle under `--profile-w1`).
async fn concurrent_tasks<C: ConnectionLike + Clone + Send + Sync + 'static>(
    kind: &'static str,
    conn: &C,
    locker: &Locker,
    fencing: bool,
    dur: Duration,
    tasks_n: usize,
) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + dur;
    let mut tasks = Vec::new();
    for t in 0..tasks_n {
        let count = count.clone();
        let locker = locker.clone();
        // The floor shares one multiplexed connection, as the library does.
        let sem_conn = (kind == "semfloor").then(|| conn.clone());
        let conn = (kind == "floor").then(|| conn.clone());
        tasks.push(tokio::spawn(async move {
            let mut floor = conn.map(|conn| Floor {
                conn,
                release: redis::Script::new(RELEASE),
            });
            let mut sem_floor = sem_conn.map(|c| (c, redis::Script::new(SEM_ACQUIRE)));
            let opts = locker.options().logging(false).fencing(fencing);
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let key = format!("w2:{kind}:{t}:{}", i % 16);
                match (&mut floor, &mut sem_floor) {
                    (Some(f), _) => f.cycle(&key, "0123456789abcdef0123456789abcdef").await,
                    (_, Some((c, acquire))) => sem_floor_cycle(c, acquire, &key).await,
                    _ if kind == "sem" => locker
                        .semaphore(&key, 3)
                        .acquire(opts)
                        .await
                        .unwrap()
                        .release()
                        .await
                        .unwrap(),
                    _ => locker
                        .acquire(&key, opts)
                        .await
                        .unwrap()
                        .release()
                        .await
                        .unwrap(),
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64().max(dur.as_secs_f64())
}

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// 8 tasks contending for one key, ~1 ms critical sections, for `dur`: a lock, or with
/// `permits > 1` a semaphore of that many permits.
async fn w3(
    locker: &Locker,
    dur: Duration,
    cycle: Duration,
    redis: Option<&mut ConnectionManager>,
    permits: u32,
) -> Value {
    const TASKS: usize = 8;
    let counter = Arc::new(AtomicUsize::new(0)); // non-atomic read-await-write
    let overlaps = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let mut redis = redis;
    let cmds_before = match redis.as_deref_mut() {
        Some(c) => Some(commands_processed(c).await),
        None => None,
    };
    let start = Instant::now();
    let end = start + dur;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (locker, counter, overlaps, inside) = (
            locker.clone(),
            counter.clone(),
            overlaps.clone(),
            inside.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let opts = locker
                .options()
                .logging(false)
                .timeout(Duration::from_secs(60));
            let (mut waits, mut holds) = (Vec::new(), Vec::new());
            while Instant::now() < end {
                let asked = Instant::now();
                let guard = if permits == 1 {
                    locker.acquire("w3:hot", opts).await.unwrap()
                } else {
                    locker
                        .semaphore("w3:sem", permits)
                        .acquire(opts)
                        .await
                        .unwrap()
                };
                let got = Instant::now();
                waits.push(got - asked);
                if inside.fetch_add(1, Ordering::SeqCst) >= permits as usize {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let read = counter.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                if permits == 1 {
                    counter.store(read + 1, Ordering::SeqCst);
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                holds.push(got.elapsed());
                guard.release().await.unwrap();
            }
            (waits, holds)
        }));
    }
    let (mut waits, mut holds, mut per_task) = (Vec::new(), Vec::new(), Vec::new());
    for t in tasks {
        let (w, h) = t.await.unwrap();
        per_task.push(w.len());
        waits.extend(w);
        holds.extend(h);
    }
    let elapsed = start.elapsed();
    let sections = waits.len();
    let cmds = match (redis, cmds_before) {
        (Some(c), Some(b)) => {
            Some(commands_processed(c).await.saturating_sub(b + 1) as f64 / sections as f64)
        }
        _ => None,
    };
    waits.sort();
    let hold = holds.iter().sum::<Duration>() / holds.len().max(1) as u32;
    // FCFS with `permits` servers: a waiter has TASKS - permits ahead of it, served
    // `permits` at a time.
    let ideal_wait = (hold + cycle) * (TASKS as u32 - permits) / permits;
    let max_rate = f64::from(permits) / (hold + cycle).as_secs_f64();
    let rate = sections as f64 / elapsed.as_secs_f64();
    let (min_share, max_share) = shares_over_mean(&per_task);
    json!({
        "sections": sections,
        "sections_per_s": rate,
        "theoretical_max_per_s": max_rate,
        "fraction_of_max": rate / max_rate,
        "hold_mean_us": us(hold),
        "wait_p50_us": us(percentile(&waits, 0.5)),
        "wait_p99_us": us(percentile(&waits, 0.99)),
        "wait_max_us": us(*waits.last().unwrap_or(&Duration::ZERO)),
        "fcfs_ideal_wait_us": us(ideal_wait),
        "wait_p99_over_ideal": us(percentile(&waits, 0.99)) / us(ideal_wait),
        "wait_max_over_ideal": us(*waits.last().unwrap_or(&Duration::ZERO)) / us(ideal_wait),
        "fewest_sections_per_task": per_task.iter().min(),
        "most_sections_per_task": per_task.iter().max(),
        "max_share_over_mean": max_share,
        "min_share_over_mean": min_share,
        "redis_commands_per_section": cmds,
        "lost_updates": (permits == 1).then(|| sections - counter.load(Ordering::SeqCst)),
        "overlaps": overlaps.load(Ordering::SeqCst),
    })
}

/// W1, W2 and W3 on a real 3-master cluster, against the floor made with the cluster
/// client on the same cluster.
async fn cluster_section(
    blocks: usize,
    per_block: usize,
    rounds: usize,
    block: Duration,
    seconds: f64,
) -> Value {
    let cluster = RedisCluster::start();
    let locker = cluster.locker("lock:");
    let conn = redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let mut floor = Floor {
        conn: conn.clone(),
        release: redis::Script::new(RELEASE),
    };
    let _ = w1(&mut floor, &locker, 2, 200, false).await;
    let w1v = w1(&mut floor, &locker, blocks, per_block, false).await;
    let cycle = Duration::from_secs_f64(w1v["acquire_release"]["p50_us"].as_f64().unwrap() / 1e6);
    // The same floor on a client whose calls are bounded as the library's are (a response
    // timeout, which the cluster client does not set by default): one timer per request.
    let bounded = redis::cluster::ClusterClientBuilder::new(cluster.urls())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let sides = [("floor", &conn), ("floor", &bounded), ("lib", &conn)];
    let w2 = alternate(rounds, sides, async |(kind, conn)| {
        concurrent(kind, conn, &locker, false, block).await
    })
    .await;
    let [floor_rate, bounded_rate, lib_rate] = w2.medians();
    let w3v = w3(&locker, Duration::from_secs_f64(seconds), cycle, None, 1).await;
    json!({
        "w1_sequential": w1v,
        "w2_64_tasks_own_keys": {
            "floor_cycles_per_s": floor_rate,
            "bounded_floor_cycles_per_s": bounded_rate,
            "default_cycles_per_s": lib_rate,
            "default_ratio_median": w2.ratios_to(0)[2],
            "default_over_bounded_floor_median": w2.ratios_to(1)[2],
        },
        "w3_8_tasks_one_key": w3v,
    })
}

/// W1 and W2 on three independent masters: `Locker::redlock` (through `run`, renewal and
/// wake-ups on) against `rslock` on the same masters, alternating blocks.
async fn redlock_section(blocks: usize, per_block: usize, rounds: usize, block: Duration) -> Value {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = masters.iter().map(RedisServer::url).collect();
    let locker = Locker::redlock(&urls).unwrap();
    let rslock = Arc::new(rslock::LockManager::new(urls.clone()));
    let opts = locker.options().logging(false);
    let ttl = Duration::from_secs(30);
    let lib_cycle = move |key: String| {
        let locker = locker.clone();
        async move { locker.run(&key, opts, || async {}).await.unwrap() }
    };
    let rs_cycle = move |key: String| {
        let rslock = rslock.clone();
        async move {
            let lock = rslock.lock(key.as_bytes(), ttl).await.unwrap();
            rslock.unlock(&lock).await;
        }
    };
    // W1: sequential, fresh keys, p50 per block.
    let (mut lib_all, mut rs_all, mut p50s) = (Vec::new(), Vec::new(), Rounds::new());
    let mut n = 0u64;
    for _ in 0..blocks {
        let (mut l, mut r) = (Vec::new(), Vec::new());
        for _ in 0..per_block {
            n += 1;
            let t = Instant::now();
            lib_cycle(format!("rl:lib:{n}")).await;
            l.push(t.elapsed());
            let t = Instant::now();
            rs_cycle(format!("rl:rs:{n}")).await;
            r.push(t.elapsed());
        }
        l.sort();
        r.sort();
        p50s.push([us(percentile(&r, 0.5)), us(percentile(&l, 0.5))]);
        lib_all.extend(l);
        rs_all.extend(r);
    }
    lib_all.sort();
    rs_all.sort();
    // W2: 64 tasks on their own keys, rslock then `locked` in each round.
    let w2 = alternate(rounds, [false, true], async |lib| {
        let (lib_cycle, rs_cycle) = (lib_cycle.clone(), rs_cycle.clone());
        throughput(64, block, move |t, i| {
            let key = format!("rl:w2:{lib}:{t}:{}", i % 16);
            let (lib_cycle, rs_cycle) = (lib_cycle.clone(), rs_cycle.clone());
            async move {
                if lib {
                    lib_cycle(key).await;
                } else {
                    rs_cycle(key).await;
                }
            }
        })
        .await
    })
    .await;
    let [rs_rate, lib_rate] = w2.medians();
    drop(masters);
    json!({
        "w1_sequential": {
            "locked_p50_us": us(percentile(&lib_all, 0.5)),
            "rslock_p50_us": us(percentile(&rs_all, 0.5)),
            "p50_ratio_median": p50s.ratios_to(0)[1],
        },
        "w2_64_tasks_own_keys": {
            "locked_cycles_per_s": lib_rate,
            "rslock_cycles_per_s": rs_rate,
            "ratio_median": w2.ratios_to(0)[1],
        },
    })
}

async fn memory_w1(seconds: f64) -> Value {
    let locker = Locker::memory();
    let opts = locker.options().logging(false);
    let n = if seconds < 1.0 { 1_000 } else { 200_000u64 };
    let start = Instant::now();
    let mut i = 0u64;
    while i < n {
        i += 1;
        let key = format!("m:{}", i % 1024);
        locker
            .acquire(&key, opts)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    json!({ "cycles_per_s": i as f64 / start.elapsed().as_secs_f64() })
}

/// Redis commands of one uncontended cycle with default options.
async fn uncontended_commands(locker: &Locker, conn: &mut ConnectionManager) -> f64 {
    const N: u64 = 200;
    let before = commands_processed(conn).await;
    for i in 0..N {
        locker
            .acquire(&format!("cmds:{i}"), locker.options())
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    let after = commands_processed(conn).await;
    (after - before - 1) as f64 / N as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let json_path = flag("--json");
    // `cargo test` runs this without `--bench`: a quick smoke run that the bench still works.
    let quick = !args.iter().any(|a| a == "--bench");
    let seconds: f64 = flag("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0.3 } else { 3.0 });
    let (blocks, per_block) = if quick { (2, 20) } else { (15, 300) };
    let w2_ratio_only = args.iter().any(|a| a == "--w2-ratio");
    let redlock_only = args.iter().any(|a| a == "--redlock");
    let semaphore_only = args.iter().any(|a| a == "--semaphore");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let server = RedisServer::start();
        let url = server.url();
        let locker = server.locker();
        BENCH_LOCKER.set(locker.clone()).unwrap();
        let mut conn = ConnectionManager::new(redis::Client::open(url.as_str()).unwrap()).await.unwrap();
        let mut floor = Floor { conn: conn.clone(), release: redis::Script::new(RELEASE) };
        if w2_ratio_only {
            // Only W2's default ratio, 20 alternating rounds: for trying changes quickly.
            let block = Duration::from_millis(200);
            let w2 = alternate(20, ["floor", "lib"], async |kind| {
                concurrent(kind, &conn, &locker, false, block).await
            })
            .await;
            println!("W2 default / floor, median of 20 rounds: {:.3}", w2.ratios_to(0)[1]);
            return;
        }
        if redlock_only {
            // Only the Redlock comparison with rslock.
            let r = redlock_section(blocks, per_block / 3, 10, Duration::from_millis(300)).await;
            println!("{}", serde_json::to_string_pretty(&r).unwrap());
            return;
        }
        if semaphore_only {
            // Only the semaphore's W2 and W3.
            let w1v = w1(&mut floor, &locker, 3, 200, true).await;
            let cycle = Duration::from_secs_f64(w1v["acquire_release"]["p50_us"].as_f64().unwrap() / 1e6);
            let block = Duration::from_secs_f64((seconds / 6.0).max(0.1));
            let r = semaphore_section(&conn, &locker, 10, block, seconds, cycle).await;
            println!("{}", serde_json::to_string_pretty(&r).unwrap());
            return;
        }
        if let Some(kind) = flag("--profile-w2") {
            // For `perf record`: one side alone under W2 load (`floor`, `lib`, `fenced`,
            // `sem` or `semfloor`).
            let kind: &'static str = match kind.as_str() {
                "floor" => "floor",
                "fenced" => "fenced",
                "sem" => "sem",
                "semfloor" => "semfloor",
                _ => "lib",
            };
            let r = concurrent(kind, &conn, &locker, kind == "fenced", Duration::from_secs_f64(seconds)).await;
            println!("W2 {kind} alone: {r:.0} cycles/s");
            return;
        }
        if let Some(kind) = flag("--profile-w1") {
            // For `valgrind --tool=callgrind`: one side alone, one task, sequential cycles.
            let kind: &'static str = if kind == "floor" { "floor" } else { "lib" };
            let r = concurrent_tasks(kind, &conn, &locker, false, Duration::from_secs_f64(seconds), 1).await;
            println!("W1 {kind} alone: {r:.0} cycles/s");
            return;
        }
        // Warm up: connections, scripts loaded, allocator.
        let _ = w1(&mut floor, &locker, 2, 200, true).await;

        let w1v = w1(&mut floor, &locker, blocks, per_block, true).await;
        let cycle = Duration::from_secs_f64(w1v["acquire_release"]["p50_us"].as_f64().unwrap() / 1e6);

        // Short alternating blocks: a ratio per round, the median over rounds.
        let rounds = if quick { 1 } else { 10 };
        let block = Duration::from_secs_f64((seconds / 6.0).max(0.1));
        let w2 = alternate(rounds, ["floor", "lib", "fenced"], async |kind| {
            concurrent(kind, &conn, &locker, kind == "fenced", block).await
        })
        .await;
        let [floor_rate, lib_rate, fenced_rate] = w2.medians();
        let [_, lib_ratio, fenced_ratio] = w2.ratios_to(0);
        let w2v = json!({
            "floor_cycles_per_s": floor_rate,
            "default_cycles_per_s": lib_rate,
            "fencing_cycles_per_s": fenced_rate,
            "default_ratio_median": lib_ratio,
            "fencing_ratio_median": fenced_ratio,
        });

        let semaphore = semaphore_section(&conn, &locker, rounds, block, seconds, cycle).await;

        let uncontended = uncontended_commands(&locker, &mut conn).await;
        let w3v = w3(&locker, Duration::from_secs_f64(seconds), cycle, Some(&mut conn), 1).await;

        let mem_w1 = memory_w1(seconds).await;
        let mem_locker = Locker::memory();
        let mem_cycle = Duration::from_secs_f64(1.0 / mem_w1["cycles_per_s"].as_f64().unwrap());
        let mem_w3 = w3(&mem_locker, Duration::from_secs_f64(seconds), mem_cycle, None, 1).await;

        let cluster = cluster_section(blocks, per_block, rounds, block, seconds).await;
        let redlock = redlock_section(blocks, per_block / 3, rounds, block).await;

        let report = json!({
            "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
            "cluster": cluster,
            "redlock": redlock,
            "semaphore": semaphore,
            "seconds_per_workload": seconds,
            "redis": {
                "w1_sequential": w1v,
                "w2_64_tasks_own_keys": w2v,
                "w3_8_tasks_one_key": w3v,
                "uncontended_commands_per_cycle": uncontended,
                "floor_commands_per_cycle": 4,
            },
            "memory": { "w1_sequential": mem_w1, "w3_8_tasks_one_key": mem_w3 },
        });
        print_table(&report);
        if let Some(path) = json_path {
            std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
            println!("\nwritten to {path}");
        }
        drop(server);
    });
}

/// A semaphore of 3 permits on one server: W2 against its floor in alternating blocks,
/// and W3 (8 tasks, one key).
async fn semaphore_section(
    conn: &ConnectionManager,
    locker: &Locker,
    rounds: usize,
    block: Duration,
    seconds: f64,
    cycle: Duration,
) -> Value {
    let w2 = alternate(rounds, ["semfloor", "sem"], async |kind| {
        concurrent(kind, conn, locker, false, block).await
    })
    .await;
    let [floor_rate, sem_rate] = w2.medians();
    let w3v = w3(locker, Duration::from_secs_f64(seconds), cycle, None, 3).await;
    json!({
        "w2_64_tasks_own_keys": {
            "floor_cycles_per_s": floor_rate,
            "semaphore_cycles_per_s": sem_rate,
            "ratio_median": w2.ratios_to(0)[1],
        },
        "w3_8_tasks_3_permits": w3v,
    })
}

fn print_table(r: &Value) {
    let g = |p: &str| -> f64 { r.pointer(p).and_then(Value::as_f64).unwrap_or(f64::NAN) };
    let mut rows: BTreeMap<usize, (String, String, String)> = BTreeMap::new();
    let mut row = |label: &str, value: String, target: String| {
        let n = rows.len();
        rows.insert(n, (label.to_owned(), value, target));
    };
    row(
        "W0 floor sequential",
        format!(
            "{:.0} cycles/s, p50 {:.0} us, p99 {:.0} us",
            g("/redis/w1_sequential/floor/cycles_per_s"),
            g("/redis/w1_sequential/floor/p50_us"),
            g("/redis/w1_sequential/floor/p99_us")
        ),
        String::new(),
    );
    row(
        "W1 acquire+release",
        format!(
            "{:.0} cycles/s, p50 {:.0} us, p99 {:.0} us",
            g("/redis/w1_sequential/acquire_release/cycles_per_s"),
            g("/redis/w1_sequential/acquire_release/p50_us"),
            g("/redis/w1_sequential/acquire_release/p99_us")
        ),
        String::new(),
    );
    row(
        "W1 p50 / floor p50 (median of blocks)",
        format!("{:.3}x", g("/redis/w1_sequential/p50_ratio_median")),
        "<= 1.1x".into(),
    );
    row(
        "W1 annotated fn p50 / floor p50",
        format!(
            "{:.3}x",
            g("/redis/w1_sequential/annotated_p50_ratio_median")
        ),
        "<= 1.1x".into(),
    );
    row(
        "Cluster W1 p50 / floor p50",
        format!(
            "{:.3}x (floor p50 {:.0} us, lib p50 {:.0} us)",
            g("/cluster/w1_sequential/p50_ratio_median"),
            g("/cluster/w1_sequential/floor/p50_us"),
            g("/cluster/w1_sequential/acquire_release/p50_us")
        ),
        "<= 1.1x".into(),
    );
    row(
        "Cluster W2 default, 64 tasks",
        format!(
            "{:.0} cycles/s ({:.3}x floor {:.0})",
            g("/cluster/w2_64_tasks_own_keys/default_cycles_per_s"),
            g("/cluster/w2_64_tasks_own_keys/default_ratio_median"),
            g("/cluster/w2_64_tasks_own_keys/floor_cycles_per_s")
        ),
        ">= 0.9x".into(),
    );
    row(
        "Cluster W2 / floor with bounded calls",
        format!(
            "{:.3}x (that floor {:.0} cycles/s)",
            g("/cluster/w2_64_tasks_own_keys/default_over_bounded_floor_median"),
            g("/cluster/w2_64_tasks_own_keys/bounded_floor_cycles_per_s")
        ),
        String::new(),
    );
    row(
        "Redlock W1 p50 / rslock p50 (3 masters)",
        format!(
            "{:.3}x (locked {:.0} us, rslock {:.0} us)",
            g("/redlock/w1_sequential/p50_ratio_median"),
            g("/redlock/w1_sequential/locked_p50_us"),
            g("/redlock/w1_sequential/rslock_p50_us")
        ),
        "<= 1x".into(),
    );
    row(
        "Redlock W2 / rslock, 64 tasks",
        format!(
            "{:.3}x (locked {:.0}/s, rslock {:.0}/s)",
            g("/redlock/w2_64_tasks_own_keys/ratio_median"),
            g("/redlock/w2_64_tasks_own_keys/locked_cycles_per_s"),
            g("/redlock/w2_64_tasks_own_keys/rslock_cycles_per_s")
        ),
        ">= 1x".into(),
    );
    row(
        "W0 floor, 64 tasks",
        format!(
            "{:.0} cycles/s",
            g("/redis/w2_64_tasks_own_keys/floor_cycles_per_s")
        ),
        String::new(),
    );
    row(
        "W2 default, 64 tasks",
        format!(
            "{:.0} cycles/s ({:.3}x floor)",
            g("/redis/w2_64_tasks_own_keys/default_cycles_per_s"),
            g("/redis/w2_64_tasks_own_keys/default_ratio_median")
        ),
        ">= 0.9x".into(),
    );
    row(
        "W2 fencing, 64 tasks",
        format!(
            "{:.0} cycles/s ({:.3}x floor)",
            g("/redis/w2_64_tasks_own_keys/fencing_cycles_per_s"),
            g("/redis/w2_64_tasks_own_keys/fencing_ratio_median")
        ),
        ">= 0.8x".into(),
    );
    row(
        "Semaphore W2 / floor, 64 tasks, 3 permits",
        format!(
            "{:.3}x (semaphore {:.0}/s, floor {:.0}/s)",
            g("/semaphore/w2_64_tasks_own_keys/ratio_median"),
            g("/semaphore/w2_64_tasks_own_keys/semaphore_cycles_per_s"),
            g("/semaphore/w2_64_tasks_own_keys/floor_cycles_per_s")
        ),
        ">= 0.9x".into(),
    );
    for (store, base) in [
        ("redis", "/redis/w3_8_tasks_one_key"),
        ("cluster", "/cluster/w3_8_tasks_one_key"),
        ("memory", "/memory/w3_8_tasks_one_key"),
        ("semaphore(3)", "/semaphore/w3_8_tasks_3_permits"),
    ] {
        row(
            &format!("W3 {store}: sections/s"),
            format!(
                "{:.0} of max {:.0} ({:.1}%), hold {:.0} us",
                g(&format!("{base}/sections_per_s")),
                g(&format!("{base}/theoretical_max_per_s")),
                100.0 * g(&format!("{base}/fraction_of_max")),
                g(&format!("{base}/hold_mean_us"))
            ),
            ">= 90%".into(),
        );
        row(
            &format!("W3 {store}: wait p50/p99/max"),
            format!(
                "{:.0}/{:.0}/{:.0} us; ideal {:.0} us; p99 {:.2}x, max {:.2}x",
                g(&format!("{base}/wait_p50_us")),
                g(&format!("{base}/wait_p99_us")),
                g(&format!("{base}/wait_max_us")),
                g(&format!("{base}/fcfs_ideal_wait_us")),
                g(&format!("{base}/wait_p99_over_ideal")),
                g(&format!("{base}/wait_max_over_ideal"))
            ),
            "p99 <= 1.5x, max <= 2x".into(),
        );
        row(
            &format!("W3 {store}: sections per task"),
            format!(
                "{:.0}..{:.0} ({:.2}x..{:.2}x of mean)",
                g(&format!("{base}/fewest_sections_per_task")),
                g(&format!("{base}/most_sections_per_task")),
                g(&format!("{base}/min_share_over_mean")),
                g(&format!("{base}/max_share_over_mean"))
            ),
            "within 2x of mean".into(),
        );
        row(
            &format!("W3 {store}: overlaps, lost updates"),
            format!(
                "{:.0}, {:.0}",
                g(&format!("{base}/overlaps")),
                g(&format!("{base}/lost_updates"))
            ),
            "0".into(),
        );
    }
    row(
        "W3 redis: commands per section",
        format!(
            "{:.2}",
            g("/redis/w3_8_tasks_one_key/redis_commands_per_section")
        ),
        "<= 12".into(),
    );
    row(
        "Uncontended commands per cycle",
        format!(
            "{:.2} (floor 4)",
            g("/redis/uncontended_commands_per_cycle")
        ),
        "<= 4".into(),
    );
    row(
        "Memory W1",
        format!("{:.0} cycles/s", g("/memory/w1_sequential/cycles_per_s")),
        ">= 1,000,000".into(),
    );
    println!("{:<42} {:<70} target", "workload", "measured");
    for (_, (a, b, c)) in rows {
        println!("{a:<42} {b:<70} {c}");
    }
}
