//! The etcd store against a raw floor and against etcd's own lock service, in one process,
//! on a 3-member etcd cluster the bench starts itself (the test support's fixture).
//!
//! `cargo bench --bench etcd --features etcd [-- --json target/etcd.json]`
//!
//! - Floor: what a hand-written etcd lock sends, through the same client (etcd-client, one
//!   channel to the same endpoints): a lease grant of the ttl, a put-if-absent transaction
//!   (`create_revision == 0`, put with the lease), and a lease revoke, which deletes the
//!   key. It renews nothing and watches nothing.
//! - Locked: `Locker::acquire` + `release` on the etcd store.
//! - etcd's lock service (`etcdctl lock`'s server side, v3lock): a lease grant, `lock` with
//!   the lease, and a revoke (which deletes the lock's key; an `unlock` before it would be
//!   a fourth round trip).
//! - Ratios are medians of per-block ratios, the sides alternating in short blocks.
//! - W3: 8 tasks on one key of one `Locker`, ~1 ms sections: woken by the queue on release;
//!   with the gRPC calls and raft writes per section, from the members' `/metrics`.
//!   Under `cargo test` the bench runs a short smoke version of itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use locked::{LockOptions, Locker};
use locked_test_support::EtcdCluster;
use locked_test_support::bench::{alternate, one_key, percentile, throughput, us};
use locked_test_support::etcd_client::{self, Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use serde_json::{Value, json};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const TTL_S: i64 = 30;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Floor,
    Lib,
    Service,
}

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
                let key = format!("floor:{key}");
                let put = TxnOp::put(
                    key.as_str(),
                    TOKEN,
                    Some(PutOptions::new().with_lease(lease)),
                );
                let txn = Txn::new()
                    .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                    .and_then([put]);
                assert!(
                    c.txn(txn).await.unwrap().succeeded(),
                    "the floor's key was taken"
                );
                c.lease_revoke(lease).await.unwrap();
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
            Side::Service => {
                let lease = c.lease_grant(TTL_S, None).await.unwrap().id();
                let opts = etcd_client::LockOptions::new().with_lease(lease);
                c.lock(format!("service:{key}"), Some(opts)).await.unwrap();
                c.lease_revoke(lease).await.unwrap();
            }
        }
    }
}

const SIDES: [Side; 3] = [Side::Floor, Side::Lib, Side::Service];

/// W1: sequential cycles on fresh keys; the median over blocks of each side's p50 over the
/// floor's p50 in the same round.
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
    let [floor, lib, service] = p50s.medians();
    let [_, lib_ratio, service_ratio] = p50s.ratios_to(0);
    json!({
        "floor_p50_us": floor,
        "locked_p50_us": lib,
        "service_p50_us": service,
        "locked_over_floor": lib_ratio,
        "service_over_floor": service_ratio,
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
    let [floor, lib, service] = rates.medians();
    let [_, lib_ratio, service_ratio] = rates.ratios_to(0);
    json!({
        "floor_cycles_per_s": floor,
        "locked_cycles_per_s": lib,
        "service_cycles_per_s": service,
        "locked_over_floor": lib_ratio,
        "service_over_floor": service_ratio,
    })
}

/// W3, with the gRPC calls and raft writes per section it cost.
async fn w3(sides: &Sides, cluster: &EtcdCluster, dur: Duration) -> Value {
    let (calls, writes) = cluster.counted();
    let mut report = one_key(&sides.lib, dur).await;
    let (calls_after, writes_after) = cluster.counted();
    let sections = report["sections"].as_f64().unwrap_or(0.0);
    if let Some(fields) = report.as_object_mut() {
        fields.insert(
            "grpc_calls_per_section".into(),
            json!((calls_after - calls) / sections.max(1.0)),
        );
        fields.insert(
            "raft_writes_per_section".into(),
            json!((writes_after - writes) / sections.max(1.0)),
        );
    }
    report
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
        let cluster = EtcdCluster::start();
        let client = Client::connect(cluster.endpoints(), None).await.unwrap();
        let sides = Sides {
            client,
            lib: cluster.locker("bench:"),
        };
        // Warm up: connections, the client's channels.
        for side in SIDES {
            for i in 0..50 {
                sides.cycle(side, &format!("warm:{i}")).await;
            }
        }
        let report = json!({
            "members": cluster.endpoints().len(),
            "w1_sequential": w1(&sides, blocks, per_block).await,
            "w2_64_tasks_own_keys": w2(&sides, rounds, block).await,
            "w3_8_tasks_one_key": w3(&sides, &cluster, w3_dur).await,
        });
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
        if let Some(path) = json_path {
            std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        }
    });
}
