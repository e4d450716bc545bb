//! The MySQL store against a raw-SQL floor, in one process, on a MariaDB server the bench
//! starts itself (the test support's fixture).
//!
//! `cargo bench --bench mysql --features mysql [-- --json target/mysql.json]`
//!
//! - Floor: the store's own acquire (`INSERT ... ON DUPLICATE KEY UPDATE` that takes an
//!   expired or own row) and its compare-token `DELETE`, prepared, through the same driver
//!   and pool settings (mysql_async, 16 connections kept while idle, READ COMMITTED
//!   sessions). Sequential
//!   cycles (W1) run on one connection; 64 tasks (W2) share the pool. It announces nothing
//!   and renews nothing.
//! - Ratios are medians of per-block ratios, the two sides alternating in short blocks.
//! - W3: 8 tasks on one key of one `Locker`, ~1 ms sections: woken by the queue on release.
//!   Under `cargo test` the bench runs a short smoke version of itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use locked::{LockOptions, Locker};
use locked_test_support::MysqlServer;
use locked_test_support::bench::{alternate, one_key, percentile, throughput, us};
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use serde_json::{Value, json};

/// The server's clock in ms, as the store writes it.
const NOW: &str = "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn acquire_sql() -> String {
    let free = format!("(expires_at <= {NOW} OR token = VALUES(token))");
    format!(
        "INSERT INTO `floor`.locked_locks (k, token, fence, expires_at) \
         VALUES (?, ?, NULL, {NOW} + 30000) \
         ON DUPLICATE KEY UPDATE fence = IF({free}, NULL, fence), \
         token = IF({free}, VALUES(token), token), \
         expires_at = IF(token = VALUES(token), VALUES(expires_at), expires_at)"
    )
}

fn release_sql() -> String {
    format!("DELETE FROM `floor`.locked_locks WHERE k IN (?) AND token = ? AND expires_at > {NOW}")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Floor,
    Lib,
}

#[derive(Clone)]
struct Sides {
    floor: Pool,
    lib: Locker,
    acquire: Arc<String>,
    release: Arc<String>,
}

impl Sides {
    async fn floor_cycle(&self, conn: &mut mysql_async::Conn, key: &str) {
        conn.exec_drop(self.acquire.as_str(), (key, TOKEN))
            .await
            .unwrap();
        assert!(conn.affected_rows() > 0, "the floor's key was taken");
        conn.exec_drop(self.release.as_str(), (key, TOKEN))
            .await
            .unwrap();
        assert_eq!(conn.affected_rows(), 1);
    }

    async fn cycle(&self, side: Side, key: &str) {
        match side {
            Side::Floor => {
                let mut conn = self.floor.get_conn().await.unwrap();
                self.floor_cycle(&mut conn, key).await;
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
        }
    }
}

const SIDES: [Side; 2] = [Side::Floor, Side::Lib];

/// W1: sequential cycles on fresh keys (the floor on one connection); the median over
/// blocks of the library's p50 over the floor's p50 in the same round.
async fn w1(sides: &Sides, blocks: usize, per_block: usize) -> Value {
    let mut n = 0u64;
    let mut conn = sides.floor.get_conn().await.unwrap();
    let p50s = alternate(blocks, SIDES, async |side| {
        let mut times = Vec::with_capacity(per_block);
        for _ in 0..per_block {
            n += 1;
            let key = format!("w1:{side:?}:{n}");
            let start = Instant::now();
            match side {
                Side::Floor => sides.floor_cycle(&mut conn, &key).await,
                Side::Lib => sides.cycle(side, &key).await,
            }
            times.push(start.elapsed());
        }
        times.sort();
        us(percentile(&times, 0.5))
    })
    .await;
    let [floor, lib] = p50s.medians();
    let [_, ratio] = p50s.ratios_to(0);
    json!({
        "floor_p50_us": floor,
        "locked_p50_us": lib,
        "locked_over_floor": ratio,
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
    let [floor, lib] = rates.medians();
    let [_, ratio] = rates.ratios_to(0);
    json!({
        "floor_cycles_per_s": floor,
        "locked_cycles_per_s": lib,
        "locked_over_floor": ratio,
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
            20,
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
        let server = MysqlServer::start();
        // The floor's tables: the store's own, made by a locker on `floor`.
        server
            .locker("floor")
            .run("make", LockOptions::default(), || async {})
            .await
            .unwrap();
        let opts = OptsBuilder::from_opts(Opts::from_url(&server.url()).unwrap())
            .pool_opts(
                PoolOpts::new()
                    .with_constraints(PoolConstraints::new(0, 16).unwrap())
                    .with_inactive_connection_ttl(Duration::from_secs(300))
                    .with_reset_connection(false),
            )
            .prefer_socket(false)
            .stmt_cache_size(64)
            .setup(vec![
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            ]);
        let sides = Sides {
            floor: Pool::new(opts),
            lib: server.locker("bench"),
            acquire: Arc::new(acquire_sql()),
            release: Arc::new(release_sql()),
        };
        // Warm up: connections, prepared statements, the tables.
        for side in SIDES {
            for i in 0..50 {
                sides.cycle(side, &format!("warm:{i}")).await;
            }
        }
        let report = json!({
            "mysql": server.root("SELECT VERSION()"),
            "w1_sequential": w1(&sides, blocks, per_block).await,
            "w2_64_tasks_own_keys": w2(&sides, rounds, block).await,
            "w3_8_tasks_one_key": one_key(&sides.lib, w3_dur).await,
        });
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
        if let Some(path) = json_path {
            std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        }
        sides.floor.disconnect().await.unwrap();
    });
}
