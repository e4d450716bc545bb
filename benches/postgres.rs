//! The PostgreSQL store against a raw-SQL floor and against sqlx's `PgAdvisoryLock`, in one
//! process, on a PostgreSQL server the bench starts itself.
//!
//! `cargo bench --bench postgres --features postgres [-- --json target/pg.json]`
//!
//! - Floor: the store's own acquire `INSERT ... ON CONFLICT ... RETURNING` and a
//!   compare-token `DELETE`, prepared, through the same driver and pool (tokio-postgres,
//!   deadpool-postgres, 16 connections). It announces nothing and renews nothing.
//! - sqlx: `PgAdvisoryLock::new(key).acquire(conn)` then `release_now()`, on a `PgPool` of 16:
//!   a session advisory lock, which holds its pooled connection while held.
//! - Ratios are medians of per-block ratios, the three sides alternating in short blocks.
//! - `-- --w2-only floor|lib|sqlx`: one side alone under W2 for 5 s (for `top`/`perf`),
//!   with the transactions the server committed per cycle; `-- --w1-only ...` the same
//!   under W1 for 3 s, with the p50.
//!   Under `cargo test` the bench runs a short smoke version of itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use locked::{LockOptions, Locker};
use locked_test_support::PgServer;
use locked_test_support::bench::{alternate, percentile, shares_over_mean, throughput, us};
use serde_json::{Value, json};
use sqlx::postgres::{PgAdvisoryLock, PgPool, PgPoolOptions};

const ACQUIRE: &str = "INSERT INTO floor.locks AS l (key, token, fence, expires_at) \
    SELECT $1, $2, nextval('floor.fence'), clock_timestamp() + 30000 * interval '1 millisecond' \
    ON CONFLICT (key) DO UPDATE SET token = excluded.token, fence = excluded.fence, \
    expires_at = excluded.expires_at \
    WHERE l.expires_at <= clock_timestamp() OR l.token = excluded.token RETURNING fence";
const RELEASE: &str = "DELETE FROM floor.locks WHERE key = $1 AND token = $2";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Floor,
    Lib,
    Sqlx,
}

#[derive(Clone)]
struct Sides {
    floor: Pool,
    lib: Locker,
    sqlx: PgPool,
}

impl Sides {
    async fn cycle(&self, side: Side, key: &str) {
        match side {
            Side::Floor => {
                let c = self.floor.get().await.unwrap();
                let acquire = c.prepare_cached(ACQUIRE).await.unwrap();
                let rows = c.query(&acquire, &[&key, &TOKEN]).await.unwrap();
                assert_eq!(rows.len(), 1);
                let release = c.prepare_cached(RELEASE).await.unwrap();
                c.execute(&release, &[&key, &TOKEN]).await.unwrap();
            }
            Side::Lib => {
                let opts = LockOptions::default().logging(false);
                self.lib
                    .acquire(key, opts)
                    .await
                    .unwrap()
                    .release()
                    .await
                    .unwrap();
            }
            Side::Sqlx => {
                let conn = self.sqlx.acquire().await.unwrap();
                let lock = PgAdvisoryLock::new(key);
                let guard = lock.acquire(conn).await.unwrap();
                guard.release_now().await.unwrap();
            }
        }
    }
}

/// The three sides, in the order each round measures them.
const SIDES: [Side; 3] = [Side::Floor, Side::Lib, Side::Sqlx];

/// W1: sequential cycles on fresh keys; the median over blocks of each side's p50 over
/// the floor's p50 in the same round.
async fn w1(sides: &Sides, blocks: usize, per_block: usize) -> Value {
    let mut n = 0u64;
    let p50s = alternate(blocks, SIDES, async |side| {
        let mut times = Vec::with_capacity(per_block);
        for _ in 0..per_block {
            n += 1;
            let key = format!("w1:{side:?}:{n}");
            let start = Instant::now();
            sides.cycle(side, &key).await;
            times.push(start.elapsed());
        }
        times.sort();
        us(percentile(&times, 0.5))
    })
    .await;
    let [floor, lib, sqlx] = p50s.medians();
    let [_, lib_ratio, sqlx_ratio] = p50s.ratios_to(0);
    json!({
        "floor_p50_us": floor,
        "locked_p50_us": lib,
        "sqlx_p50_us": sqlx,
        "locked_over_floor": lib_ratio,
        "sqlx_over_floor": sqlx_ratio,
    })
}

/// 64 tasks on their own keys for `dur`: cycles/s.
async fn concurrent(sides: &Sides, side: Side, dur: Duration) -> f64 {
    let sides = Arc::new(sides.clone());
    throughput(64, dur, move |t, i| {
        let sides = sides.clone();
        async move {
            sides
                .cycle(side, &format!("w2:{side:?}:{t}:{}", i % 16))
                .await;
        }
    })
    .await
}

async fn w2(sides: &Sides, rounds: usize, block: Duration) -> Value {
    let rates = alternate(rounds, SIDES, async |side| {
        concurrent(sides, side, block).await
    })
    .await;
    let [floor, lib, sqlx] = rates.medians();
    let [_, lib_ratio, sqlx_ratio] = rates.ratios_to(0);
    json!({
        "floor_cycles_per_s": floor,
        "locked_cycles_per_s": lib,
        "sqlx_cycles_per_s": sqlx,
        "locked_over_floor": lib_ratio,
        "sqlx_over_floor": sqlx_ratio,
    })
}

/// W3: 8 tasks on one key, ~1 ms sections, for `dur`: throughput, waits, shares, overlaps.
async fn w3(sides: &Sides, side: Side, dur: Duration) -> Value {
    const TASKS: usize = 8;
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + dur;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (sides, inside, overlaps) = (sides.clone(), inside.clone(), overlaps.clone());
        tasks.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            let opts = LockOptions::default()
                .logging(false)
                .timeout(Duration::from_secs(60));
            while Instant::now() < end {
                let asked = Instant::now();
                let section = async {
                    if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                };
                match side {
                    Side::Sqlx => {
                        let conn = sides.sqlx.acquire().await.unwrap();
                        let lock = PgAdvisoryLock::new("w3");
                        let guard = lock.acquire(conn).await.unwrap();
                        waits.push(asked.elapsed());
                        section.await;
                        guard.release_now().await.unwrap();
                    }
                    _ => {
                        let guard = sides.lib.acquire("w3", opts).await.unwrap();
                        waits.push(asked.elapsed());
                        section.await;
                        guard.release().await.unwrap();
                    }
                }
            }
            waits
        }));
    }
    let (mut waits, mut per_task) = (Vec::new(), Vec::new());
    for t in tasks {
        let w = t.await.unwrap();
        per_task.push(w.len());
        waits.extend(w);
    }
    let elapsed = start.elapsed();
    waits.sort();
    let (min_share, max_share) = shares_over_mean(&per_task);
    json!({
        "sections_per_s": waits.len() as f64 / elapsed.as_secs_f64(),
        "wait_p50_us": us(percentile(&waits, 0.5)),
        "wait_p99_us": us(percentile(&waits, 0.99)),
        "wait_max_us": us(waits.last().copied().unwrap_or_default()),
        "min_share_over_mean": min_share,
        "max_share_over_mean": max_share,
        "overlaps": overlaps.load(Ordering::SeqCst),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let json_path = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let (blocks, per_block, rounds, block, w3_dur) = if quick {
        (
            2,
            20,
            1,
            Duration::from_millis(200),
            Duration::from_millis(300),
        )
    } else {
        (
            10,
            200,
            8,
            Duration::from_millis(600),
            Duration::from_secs(3),
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let server = PgServer::start();
        let url = server.url();
        // The floor's tables: the store's own schema, made by a locker on `floor`.
        let floor_locker = server.locker("floor");
        floor_locker
            .run("make", LockOptions::default(), || async {})
            .await
            .unwrap();
        let config: tokio_postgres::Config = url.parse().unwrap();
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let sides = Sides {
            floor: Pool::builder(manager).max_size(16).build().unwrap(),
            lib: server.locker("bench"),
            sqlx: PgPoolOptions::new()
                .max_connections(16)
                .connect(&url)
                .await
                .unwrap(),
        };
        // Warm up: connections, prepared statements, the schema.
        for side in SIDES {
            for i in 0..50 {
                sides.cycle(side, &format!("warm:{i}")).await;
            }
        }
        if let Some(side) = args
            .iter()
            .position(|a| a == "--w1-only")
            .and_then(|i| args.get(i + 1))
        {
            // One side alone under W1 for 3 s, for profiling: `floor`, `lib` or `sqlx`.
            let side = match side.as_str() {
                "floor" => Side::Floor,
                "sqlx" => Side::Sqlx,
                _ => Side::Lib,
            };
            let commits = || {
                server.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
            };
            let before: f64 = commits().parse().unwrap();
            let (mut times, end) = (Vec::new(), Instant::now() + Duration::from_secs(3));
            while Instant::now() < end {
                let start = Instant::now();
                sides.cycle(side, &format!("w1only:{}", times.len())).await;
                times.push(start.elapsed());
            }
            let after: f64 = commits().parse().unwrap();
            let n = times.len() as f64;
            times.sort();
            println!(
                "W1 {side:?} alone: p50 {:.1} us, {:.2} transactions per cycle",
                us(percentile(&times, 0.5)),
                (after - before) / n
            );
            return;
        }
        if let Some(side) = args
            .iter()
            .position(|a| a == "--w2-only")
            .and_then(|i| args.get(i + 1))
        {
            // One side alone under W2, for profiling: `floor`, `lib` or `sqlx`.
            let side = match side.as_str() {
                "floor" => Side::Floor,
                "sqlx" => Side::Sqlx,
                _ => Side::Lib,
            };
            let commits = || {
                server.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
            };
            let before: f64 = commits().parse().unwrap();
            let rate = concurrent(&sides, side, Duration::from_secs(5)).await;
            let after: f64 = commits().parse().unwrap();
            println!(
                "W2 {side:?} alone: {rate:.0} cycles/s, {:.2} transactions per cycle",
                (after - before) / (rate * 5.0)
            );
            return;
        }
        let report = json!({
            "postgres": server.psql("SHOW server_version"),
            "w1_sequential": w1(&sides, blocks, per_block).await,
            "w2_64_tasks_own_keys": w2(&sides, rounds, block).await,
            "w3_8_tasks_one_key": {
                "locked": w3(&sides, Side::Lib, w3_dur).await,
                "sqlx": w3(&sides, Side::Sqlx, w3_dur).await,
            },
        });
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
        if let Some(path) = json_path {
            std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        }
    });
}
