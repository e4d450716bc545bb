//! What only a Redis Cluster can show: keys spread over the masters, the cross-slot
//! refusal, slot migration, a master failover, and replica acknowledgements. Every other
//! promise runs on the cluster through the store list of the behaviour tests.
//!
//! The tests that change the topology or stop a process each start a cluster of their own
//! and run one at a time (a 6-node cluster on a 2-core machine is load enough).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use locked::{LockError, LockOptions};
use locked_test_support::{ClusterNode, RedisCluster, eventually, shared_cluster};
use tokio::time::Instant;

/// One topology-changing test at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn query<T: redis::FromRedisValue>(node: &ClusterNode, cmd: &mut redis::Cmd) -> T {
    cmd.query(&mut node.client()).unwrap()
}

/// `GET` on a replica (which answers reads only after `READONLY`).
fn replica_get(node: &ClusterNode, key: &str) -> Option<String> {
    let (value,): (Option<String>,) = redis::pipe()
        .cmd("READONLY")
        .ignore()
        .cmd("GET")
        .arg(key)
        .query(&mut node.client())
        .unwrap_or((None,));
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_all_three_masters() {
    let cluster = shared_cluster();
    let locker = cluster.locker("lock:spread:");
    let mut masters = HashSet::new();
    let mut guards = Vec::new();
    for i in 0..30 {
        let guard = locker
            .acquire(&format!("order:{i}"), LockOptions::default())
            .await
            .unwrap();
        let (master, _) = cluster.owner(guard.key());
        // The token is on the master that owns the slot, in the documented format.
        let stored: Option<String> = query(master, redis::cmd("GET").arg(guard.key()));
        assert!(stored.is_some_and(|t| t.len() >= 32), "{}", guard.key());
        let pttl: i64 = query(master, redis::cmd("PTTL").arg(guard.key()));
        assert!(pttl > 0 && pttl <= 30_000, "PTTL {pttl}");
        masters.insert(master.port);
        guards.push(guard);
    }
    assert_eq!(masters.len(), 3, "30 keys landed on {masters:?}");
    for guard in guards {
        guard.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_keys_are_refused_before_any_command_and_leave_nothing() {
    let cluster = shared_cluster();
    let locker = cluster.locker("lock:xslot:");
    let keys = ["account:1", "account:2"];
    let err = locker
        .run_all(&keys, LockOptions::default(), || async {
            unreachable!("ran without its locks")
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LockError::InvalidKey { .. }), "{err:?}");
    assert!(msg.contains("slot"), "{msg}");
    assert!(
        msg.contains("{account}:1"),
        "the hash-tag fix is shown: {msg}"
    );
    let mut conn = cluster.client();
    for key in keys {
        let full = locker.full_key(key).unwrap();
        let n: i64 = redis::cmd("EXISTS").arg(&full).query(&mut conn).unwrap();
        assert_eq!(n, 0, "{full} was left behind");
    }
    // The same keys with a shared tag are taken together.
    let tagged = ["{account}:1", "{account}:2"];
    let both = locker
        .acquire_all(&tagged, LockOptions::default())
        .await
        .unwrap();
    assert_eq!(both.keys().len(), 2);
    both.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_with_brace_but_no_tag_is_refused_on_a_cluster() {
    let locker = shared_cluster().locker("lock:brace:");
    let err = locker
        .acquire("odd}key", LockOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::InvalidKey { .. }), "{err:?}");
    assert!(err.to_string().contains("tag"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_acquire_of_own_token_counts_as_acquired() {
    // What the cluster client does after an I/O error: the same `SET NX` again. The
    // library sends `SET key token NX PX ttl GET`; the second send answers our own token.
    let cluster = shared_cluster();
    let mut conn = cluster.client();
    let key = "lock:resend:job";
    let set = |conn: &mut redis::cluster::ClusterConnection| -> Option<String> {
        redis::cmd("SET")
            .arg(key)
            .arg("token-a")
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .arg("GET")
            .query(conn)
            .unwrap()
    };
    assert_eq!(set(&mut conn), None, "first send: set");
    assert_eq!(
        set(&mut conn).as_deref(),
        Some("token-a"),
        "re-send: our own token"
    );
    // The library reads that answer as acquired: another locker is refused, and the lock
    // stays the first holder's.
    let locker = cluster.locker("lock:");
    assert!(
        locker
            .try_acquire("resend:job", LockOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    let _: i64 = redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_migrated_while_waiter_waits_and_holder_renews() {
    let _alone = ALONE.lock().await;
    let cluster = RedisCluster::start();
    let holder_locker = cluster.locker("lock:");
    let waiter_locker = cluster.locker("lock:");
    let key = "lock:moving";
    let (src, _) = cluster.owner(key);
    let src_port = src.port;
    let slot: i64 = query(src, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key));
    let masters: Vec<&ClusterNode> = cluster
        .nodes
        .iter()
        .filter(|n| {
            let role: redis::Value = query(n, &mut redis::cmd("ROLE"));
            role.role_name() == "master"
        })
        .collect();
    let dst = masters.iter().find(|n| n.port != src_port).unwrap();

    let moved = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let opts = LockOptions::default()
        .ttl(Duration::from_secs(1))
        .timeout(Duration::from_secs(60));
    let holder = {
        let (moved, entered) = (moved.clone(), entered.clone());
        tokio::spawn(async move {
            holder_locker
                .run("moving", opts, || async move {
                    entered.notify_one();
                    moved.notified().await;
                    // Renewals after the move must reach the new owner.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                })
                .await
        })
    };
    entered.notified().await;
    let waiter = tokio::spawn(async move {
        let waiting = opts.retry_interval(Duration::from_millis(200));
        waiter_locker
            .run("moving", waiting, || async { Instant::now() })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Move the slot: IMPORTING/MIGRATING, MIGRATE the keys, then NODE everywhere.
    let id = |n: &ClusterNode| -> String { query(n, redis::cmd("CLUSTER").arg("MYID")) };
    let (src_id, dst_id) = (id(src), id(dst));
    let _: () = query(
        dst,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&src_id),
    );
    let _: () = query(
        src,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&dst_id),
    );
    let keys: Vec<String> = query(
        src,
        redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(100),
    );
    assert!(
        keys.iter().any(|k| k == key),
        "the lock is in its slot: {keys:?}"
    );
    let _: () = query(
        src,
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(dst.port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys),
    );
    for node in &masters {
        let _: () = query(
            node,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&dst_id),
        );
    }
    let moved_at = Instant::now();
    moved.notify_one();

    let held = holder.await.unwrap();
    assert!(
        held.is_ok(),
        "the holder kept its lock across the move: {held:?}"
    );
    let got = waiter
        .await
        .unwrap()
        .expect("the waiter got the lock after the move");
    assert!(
        got > moved_at,
        "the waiter got in while the holder held the lock"
    );
    let (owner, _) = cluster.owner(key);
    assert_eq!(
        owner.port, dst.port,
        "the slot now lives on the destination"
    );
}

/// The first element of a `ROLE` reply: `master` or `slave`.
trait RoleName {
    fn role_name(self) -> String;
}

impl RoleName for redis::Value {
    fn role_name(self) -> String {
        match self {
            redis::Value::Array(items) => match items.into_iter().next() {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                Some(redis::Value::SimpleString(s)) => s,
                _ => String::new(),
            },
            _ => String::new(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_killed_while_held_replica_keeps_lock_and_body_completes() {
    let _alone = ALONE.lock().await;
    let cluster = RedisCluster::start();
    let holder_locker = cluster.locker("lock:");
    let rival = cluster.locker("lock:");
    let key = "lock:failover";
    let (master, replica) = cluster.owner(key);

    let entered = Arc::new(tokio::sync::Notify::new());
    let finish = Arc::new(tokio::sync::Notify::new());
    let opts = LockOptions::default().ttl(Duration::from_secs(10));
    let holder = {
        let (entered, finish) = (entered.clone(), finish.clone());
        tokio::spawn(async move {
            holder_locker
                .run("failover", opts, || async move {
                    entered.notify_one();
                    finish.notified().await;
                    "completed"
                })
                .await
        })
    };
    entered.notified().await;
    // The replica has the lock (asynchronous replication, long done by now).
    assert!(
        eventually(Duration::from_secs(10), async || replica_get(replica, key)
            .is_some())
        .await
    );
    let start = Instant::now();
    master.signal("KILL");

    // While the replica takes over, nobody else gets the lock.
    let stolen = Arc::new(AtomicBool::new(false));
    let promoted = {
        let stolen = stolen.clone();
        let probe = async move {
            loop {
                if let Ok(Some(guard)) = rival.try_acquire("failover", LockOptions::default()).await
                {
                    stolen.store(true, Ordering::SeqCst);
                    drop(guard);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let became_master = eventually(Duration::from_secs(30), async || {
            let role: redis::Value = redis::cmd("ROLE")
                .query(&mut replica.client())
                .unwrap_or(redis::Value::Nil);
            role.role_name() == "master"
        });
        tokio::select! {
            ok = became_master => ok,
            _ = probe => unreachable!(),
        }
    };
    assert!(promoted, "the replica was not promoted within 30 s");
    let failover = start.elapsed();
    // Give the holder a renewal on the new master, then probe once more.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        replica_get(replica, key).is_some(),
        "the promoted replica lost the lock"
    );
    finish.notify_one();
    let out = holder.await.unwrap();
    assert_eq!(out.unwrap(), "completed", "the holder's body completed");
    assert!(
        !stolen.load(Ordering::SeqCst),
        "another caller got the lock during the failover"
    );
    println!("failover: replica promoted {failover:?} after the master was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_stalled_replica_fails_within_bound_and_leaves_no_lock() {
    let _alone = ALONE.lock().await;
    let cluster = RedisCluster::start();
    let locker = cluster.locker("lock:");
    let key = "lock:durable";
    let (_, replica) = cluster.owner(key);
    let within = Duration::from_millis(300);
    let opts = LockOptions::default()
        .replicas(1, within)
        .timeout(Duration::from_secs(1));

    // Healthy: the replica acknowledges.
    let guard = locker.acquire("durable", opts).await.unwrap();
    guard.release().await.unwrap();

    replica.signal("STOP");
    let start = Instant::now();
    let err = locker.acquire("durable", opts).await.unwrap_err();
    let took = start.elapsed();
    replica.signal("CONT");
    let msg = err.to_string();
    assert!(err.is_backend(), "{err:?}");
    assert!(msg.contains("0 of 1 replica"), "{msg}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(
        eventually(Duration::from_secs(5), async || !locker
            .is_locked("durable")
            .await
            .unwrap_or(true))
        .await,
        "a lock was left behind"
    );

    // Resumed: it succeeds again.
    let again = eventually(Duration::from_secs(20), async || {
        match locker.acquire("durable", opts).await {
            Ok(guard) => guard.release().await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    assert!(
        again,
        "acquire with replicas(1) did not recover after SIGCONT"
    );
    println!("replicas(1) with a stalled replica failed in {took:?}: {msg}");
}
