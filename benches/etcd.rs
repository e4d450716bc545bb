//! The etcd store against a raw floor and against etcd's own lock service, in one process,
//! on a 3-member etcd cluster the bench starts itself (the test support's fixture).
//!
//! `cargo bench --bench etcd --features etcd [-- --json target/etcd.json]`
//!
//! - Floor: what a hand-written lock on etcd needs at least, through the same client
//!   (etcd-client): a lease grant, a put-if-absent transaction (`create_revision == 0`, put
//!   with the lease) and a delete. It revokes nothing (its leases lapse), renews nothing and
//!   announces nothing.
//! - etcd's lock service (`v3lock`, `Lock`/`Unlock` through etcd-client) on a lease granted
//!   per cycle: a grant, a lock, an unlock.
//! - The library: `acquire` + `release` (a grant and a transaction, then a transaction and
//!   a revoke).
//! - W1: sequential cycles on fresh keys; medians of per-block p50s and of per-block ratios
//!   to the floor, the three sides alternating in short blocks. W2: 16 tasks on their own
//!   keys: cycles/s. Under `cargo test` the bench runs a short smoke version of itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use locked::{LockOptions, Locker};
use locked_test_support::EtcdCluster;
use locked_test_support::bench::{alternate, percentile, throughput, us};
use locked_test_support::etcd_client::{
    Client, Compare, CompareOp, LockOptions as EtcdLockOptions, PutOptions, Txn, TxnOp,
};
use serde_json::{Value, json};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// The library's default ttl, for every side's lease.
const TTL_S: i64 = 30;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Floor,
    EtcdLock,
    Lib,
}

const SIDES: [Side; 3] = [Side::Floor, Side::EtcdLock, Side::Lib];

#[derive(Clone)]
struct Sides {
    client: Client,
    lib: Locker,
}

impl Sides {
    async fn cycle(&self, side: Side, key: &str) {
        let mut c = self.client.clone();
        match side {
            Side::Floor => {
                let lease = c.lease_grant(TTL_S, None).await.unwrap().id();
                let take = Txn::new()
                    .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key,
                        TOKEN,
                        Some(PutOptions::new().with_lease(lease)),
                    )]);
                assert!(
                    c.txn(take).await.unwrap().succeeded(),
                    "the floor's key was taken"
                );
                c.delete(key, None).await.unwrap();
            }
            Side::EtcdLock => {
                let lease = c.lease_grant(TTL_S, None).await.unwrap().id();
                let opts = EtcdLockOptions::new().with_lease(lease);
                let owned = c.lock(key, Some(opts)).await.unwrap();
                c.unlock(owned.key().to_vec()).await.unwrap();
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

/// W1: sequential cycles on fresh keys; each side's median p50 and its ratio to the floor.
async fn w1(sides: &Sides, blocks: usize, per_block: usize) -> Value {
    let mut n = 0u64;
    let p50s = alternate(blocks, SIDES, async |side| {
        let mut times = Vec::with_capacity(per_block);
        for _ in 0..per_block {
            n += 1;
            let key = format!("bench:w1:{side:?}:{n}");
            let start = Instant::now();
            sides.cycle(side, &key).await;
            times.push(start.elapsed());
        }
        times.sort();
        us(percentile(&times, 0.5))
    })
    .await;
    let [floor, etcd_lock, lib] = p50s.medians();
    let [_, etcd_lock_ratio, lib_ratio] = p50s.ratios_to(0);
    json!({
        "floor_p50_us": floor,
        "etcd_lock_p50_us": etcd_lock,
        "locked_p50_us": lib,
        "etcd_lock_over_floor": etcd_lock_ratio,
        "locked_over_floor": lib_ratio,
    })
}

/// W2: 16 tasks on their own keys for `block`, per round: cycles/s.
async fn w2(sides: &Sides, rounds: usize, block: Duration) -> Value {
    let sides = Arc::new(sides.clone());
    let rates = alternate(rounds, SIDES, async |side| {
        let sides = sides.clone();
        throughput(16, block, move |t, i| {
            let sides = sides.clone();
            async move {
                sides
                    .cycle(side, &format!("bench:w2:{side:?}:{t}:{i}"))
                    .await;
            }
        })
        .await
    })
    .await;
    let [floor, etcd_lock, lib] = rates.medians();
    let [_, etcd_lock_ratio, lib_ratio] = rates.ratios_to(0);
    json!({
        "floor_cycles_per_s": floor,
        "etcd_lock_cycles_per_s": etcd_lock,
        "locked_cycles_per_s": lib,
        "etcd_lock_over_floor": etcd_lock_ratio,
        "locked_over_floor": lib_ratio,
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
    let (blocks, per_block, rounds, block) = if quick {
        (2, 10, 1, Duration::from_millis(200))
    } else {
        (10, 50, 6, Duration::from_secs(1))
    };
    let cluster = EtcdCluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = Client::connect(cluster.endpoints(), None).await.unwrap();
        let sides = Sides {
            client,
            lib: cluster.locker("bench:"),
        };
        // Warm up: connections on every side.
        for side in SIDES {
            for i in 0..20 {
                sides.cycle(side, &format!("bench:warm:{side:?}:{i}")).await;
            }
        }
        let report = json!({
            "etcd": "3 members on loopback",
            "w1_sequential": w1(&sides, blocks, per_block).await,
            "w2_16_tasks_own_keys": w2(&sides, rounds, block).await,
        });
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
        if let Some(path) = json_path {
            std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        }
    });
}
