//! The origin's five scenarios, written with `#[locked]`, each run by several "servers"
//! (separate `Locker`s on one real Redis) at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use locked::{LockError, Locker, locked};
use locked_test_support::{RedisServer, eventually};
use tokio::sync::Mutex;

#[derive(Debug, PartialEq)]
enum ShopError {
    /// The lock could not be had: HTTP 423 in the origin.
    Locked(String),
    /// A business rule refused the request: HTTP 400 in the origin.
    Rejected(String),
}

impl From<LockError> for ShopError {
    fn from(e: LockError) -> Self {
        ShopError::Locked(e.to_string())
    }
}

/// The shared state every server sees (a database, in the origin).
#[derive(Default)]
struct Db {
    processed_orders: Mutex<Vec<String>>,
    payments: AtomicUsize,
    profile_saves: AtomicUsize,
    stock: Mutex<HashMap<u32, u32>>,
    cache: Mutex<HashMap<String, String>>,
    db_reads: AtomicUsize,
    reports: AtomicUsize,
}

/// One application server.
struct Server {
    locker: Locker,
    db: Arc<Db>,
}

impl Server {
    // Scenario 1: prevent duplicate order processing.
    #[locked(key = "order:{order_id}", ttl = "30s", timeout = "5s", locker = self.locker)]
    async fn process_order(&self, order_id: &str) -> Result<String, ShopError> {
        if self
            .db
            .processed_orders
            .lock()
            .await
            .iter()
            .any(|o| o == order_id)
        {
            return Err(ShopError::Rejected(format!(
                "order {order_id} already processed"
            )));
        }
        self.db.payments.fetch_add(1, Ordering::SeqCst); // pay
        tokio::time::sleep(Duration::from_millis(20)).await; // update inventory, notify
        self.db
            .processed_orders
            .lock()
            .await
            .push(order_id.to_owned());
        Ok(format!("order {order_id} processed"))
    }

    // Scenario 2: de-duplicate a scheduled job.
    #[locked(key = "cron:daily-report", ttl = "10m", try_lock, fallback = Self::report_in_progress, locker = self.locker)]
    async fn daily_report(&self) -> String {
        self.db.reports.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        "report generated".to_owned()
    }

    async fn report_in_progress(&self) -> String {
        "Report generation already in progress".to_owned()
    }

    // Scenario 3: prevent duplicate user submissions (operation_key form).
    #[locked(key = "lock:op:update-profile:{user_id}", ttl = "5s", timeout = "200ms", locker = self.locker)]
    async fn update_profile(&self, user_id: u64, name: &str) -> Result<String, ShopError> {
        self.db.profile_saves.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok(format!("profile of {user_id} set to {name}"))
    }

    // Scenario 4: only one process refreshes a cache entry.
    #[locked(key = "cache:refresh:{key}", ttl = "10s", locker = self.locker)]
    async fn refresh(&self, key: &str) -> Result<String, ShopError> {
        if let Some(v) = self.db.cache.lock().await.get(key) {
            return Ok(v.clone());
        }
        self.db.db_reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await; // fetch from the database
        let value = format!("fresh {key}");
        self.db
            .cache
            .lock()
            .await
            .insert(key.to_owned(), value.clone()); // SETEX key 3600
        Ok(value)
    }

    // Scenario 5: inventory deduction.
    #[locked(key = "inventory:{product_id}", ttl = "5s", timeout = "3s", locker = self.locker)]
    async fn deduct(&self, product_id: u32, quantity: u32) -> Result<u32, ShopError> {
        let stock = *self.db.stock.lock().await.get(&product_id).unwrap_or(&0);
        tokio::task::yield_now().await; // a read-modify-write across an await
        if stock < quantity {
            return Err(ShopError::Rejected("insufficient stock".to_owned()));
        }
        self.db
            .stock
            .lock()
            .await
            .insert(product_id, stock - quantity);
        Ok(stock - quantity)
    }
}

fn servers(redis: &RedisServer, n: usize) -> Vec<Arc<Server>> {
    let db = Arc::new(Db::default());
    (0..n)
        .map(|_| {
            Arc::new(Server {
                locker: redis.locker(),
                db: db.clone(),
            })
        })
        .collect()
}

async fn all<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_order_processed_once_across_servers() {
    let redis = RedisServer::start();
    let servers = servers(&redis, 4);
    let tasks = servers.iter().map(|s| {
        let s = s.clone();
        tokio::spawn(async move { s.process_order("ORD-123").await })
    });
    let results = all(tasks.collect()).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert_eq!(
            r,
            &Err(ShopError::Rejected(
                "order ORD-123 already processed".into()
            ))
        );
    }
    assert_eq!(
        servers[0].db.payments.load(Ordering::SeqCst),
        1,
        "paid twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_cron_job_runs_once_others_skip() {
    let redis = RedisServer::start();
    let servers = servers(&redis, 3);
    let first = {
        let s = servers[0].clone();
        tokio::spawn(async move { s.daily_report().await })
    };
    let locker = &servers[1].locker;
    assert!(
        eventually(Duration::from_secs(5), async || {
            locker.is_locked("cron:daily-report").await.unwrap()
        })
        .await
    );
    // While the first server generates, the others skip at once.
    for s in &servers[1..] {
        assert_eq!(
            s.daily_report().await,
            "Report generation already in progress"
        );
    }
    assert_eq!(first.await.unwrap(), "report generated");
    assert_eq!(servers[0].db.reports.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_duplicate_submission_is_refused() {
    let redis = RedisServer::start();
    let servers = servers(&redis, 2);
    let first = {
        let s = servers[0].clone();
        tokio::spawn(async move { s.update_profile(123, "John").await })
    };
    // Wait until the first submission holds the lock, then submit again.
    let locker = &servers[1].locker;
    assert!(
        eventually(Duration::from_secs(5), async || {
            locker
                .is_locked(&locked::operation_key("update-profile", 123))
                .await
                .unwrap()
        })
        .await
    );
    let second = servers[1].update_profile(123, "John").await;
    match second {
        Err(ShopError::Locked(msg)) => assert!(msg.contains("Unable to acquire lock"), "{msg}"),
        other => panic!("expected the duplicate to be refused, got {other:?}"),
    }
    assert_eq!(first.await.unwrap().unwrap(), "profile of 123 set to John");
    assert_eq!(servers[0].db.profile_saves.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_cache_refreshed_by_one_process() {
    let redis = RedisServer::start();
    let servers = servers(&redis, 6);
    let tasks = servers.iter().map(|s| {
        let s = s.clone();
        tokio::spawn(async move { s.refresh("user:1").await })
    });
    for r in all(tasks.collect()).await {
        assert_eq!(r.unwrap(), "fresh user:1");
    }
    assert_eq!(
        servers[0].db.db_reads.load(Ordering::SeqCst),
        1,
        "the database was read more than once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_stock_never_oversold() {
    let redis = RedisServer::start();
    let servers = servers(&redis, 4);
    servers[0].db.stock.lock().await.insert(42, 10);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = servers[i % servers.len()].clone();
        tasks.push(tokio::spawn(async move { s.deduct(42, 1).await }));
    }
    let results = all(tasks).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        10,
        "{results:?}"
    );
    for r in results.iter().filter(|r| r.is_err()) {
        assert_eq!(r, &Err(ShopError::Rejected("insufficient stock".into())));
    }
    assert_eq!(servers[0].db.stock.lock().await[&42], 0);
}
