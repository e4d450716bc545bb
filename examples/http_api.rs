//! The original guide's test HTTP API, as axum handlers on `locked`.
//!
//! ```sh
//! cargo run --example http_api            # serves on 127.0.0.1:$PORT (default 3333)
//! cargo run --example http_api -- --demo  # calls every route once in-process and exits
//! ```
//!
//! It runs on the global locker: the memory store by default, Redis when `REDIS_URL` is set.
//! On Redis, run two instances (`PORT=3333` and `PORT=3334`, the same `REDIS_URL`) and post
//! the same order to both: one processes it, the other says it already was.
//! Routes and status codes, as the original behaves:
//! - `GET /api/distributed-lock/basic`: 200.
//! - `POST /api/distributed-lock/order/{id}`: 200 the first time; 400 "order already
//!   processed" for an order seen before, by any instance (the order table is kept in the
//!   lock store's Redis, or in this process on the memory store and the other stores).
//! - `POST /api/distributed-lock/cleanup`: try mode; 200 with the report, or 200 "already
//!   in progress" while another run holds the lock.
//! - `POST /api/distributed-lock/user/{id}/operation` with
//!   `{"action": "update-profile", "data": {"name": "John"}}`: 200, or 423 "please do not
//!   submit twice" while the same submission is in flight.
//! - `GET /api/distributed-lock/check?key=my-task`: 200 `{key, locked}`.
//! - `GET /api/distributed-lock/concurrent-test`: runs concurrent locked calls and reports
//!   that they were serialised (the most ever inside at once), with counts and timings.
//! - `DELETE /api/distributed-lock/force-release?key=stuck-task`: 200 `{key, released}`.
//! - Bad input (a missing `key`, malformed JSON, a body that is not an object, a user id
//!   that is not a number) is a 400 with a JSON message.
//! - With the `metrics` feature (`cargo run --example http_api --features metrics`),
//!   `GET /metrics` serves the lock metrics in Prometheus text format.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Query};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use locked::{LockError, locked, operation_key};
use redis::AsyncCommands;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A handler error: the lock could not be had (423), the request was refused (400), or a
/// store is down (503).
enum ApiError {
    Locked(LockError),
    BadRequest(String),
    Unavailable(String),
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::BadRequest(format!("the body is not valid JSON: {}", e.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<LockError> for ApiError {
    fn from(e: LockError) -> Self {
        ApiError::Locked(e)
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::Unavailable(format!("the order table is unavailable: {e}"))
    }
}

/// The processed orders (the original's order table), where every instance sees them: in
/// the lock store's Redis (keys `processed:{id}`, each expiring after [`ORDER_TTL`] so the
/// table does not grow forever) when the store is one Redis server; in this process
/// otherwise.
enum Orders {
    Redis(redis::aio::ConnectionManager),
    Memory(Mutex<HashSet<String>>),
}

static ORDERS: OnceLock<Orders> = OnceLock::new();

/// How long Redis remembers a processed order (`SET processed:{id} 1 EX 86400`): a day,
/// after which the same order id would be processed again. A real service keeps its orders
/// in its database; this table only shows the lock deduplicating across instances.
const ORDER_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl Orders {
    /// The table for the store the global locker reads from the environment.
    async fn from_env() -> redis::RedisResult<Self> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let on_redis = var("LOCK_STORE").is_none_or(|s| s.trim().eq_ignore_ascii_case("redis"));
        match var("LOCK_REDIS_URL").or_else(|| var("REDIS_URL")) {
            Some(url) if on_redis => {
                let redis = redis::Client::open(url)?.get_connection_manager().await?;
                Ok(Orders::Redis(redis))
            }
            _ => Ok(Orders::Memory(Mutex::default())),
        }
    }

    async fn contains(&self, id: &str) -> Result<bool, ApiError> {
        match self {
            Orders::Redis(redis) => Ok(redis.clone().exists(format!("processed:{id}")).await?),
            Orders::Memory(table) => Ok(table.lock().map(|t| t.contains(id)).unwrap_or(true)),
        }
    }

    async fn insert(&self, id: &str) -> Result<(), ApiError> {
        match self {
            Orders::Redis(redis) => Ok(redis
                .clone()
                .set_ex(format!("processed:{id}"), 1, ORDER_TTL.as_secs())
                .await?),
            Orders::Memory(table) => {
                if let Ok(mut table) = table.lock() {
                    table.insert(id.to_owned());
                }
                Ok(())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Locked(e) if e.is_timeout() || e.is_busy() => (
                StatusCode::LOCKED,
                format!("please do not submit twice: {e}"),
            ),
            ApiError::Locked(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        };
        (
            status,
            Json(json!({ "success": false, "message": message })),
        )
            .into_response()
    }
}

async fn basic() -> Result<Json<Value>, ApiError> {
    let locker = locked::global()?;
    let out = locker
        .run("my-task", locker.options(), || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            "did something under the lock"
        })
        .await?;
    Ok(Json(json!({ "success": true, "message": out })))
}

/// Scenario 1: an order is processed once, however many servers receive it: the lock makes
/// "check the table, do the work, record it" one step across every instance.
#[locked(key = "order:{id}", ttl = "30s", timeout = "5s")]
async fn process_order(Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let orders = ORDERS
        .get()
        .ok_or(ApiError::Unavailable("no order table".into()))?;
    if orders.contains(&id).await? {
        return Err(ApiError::BadRequest(format!(
            "order already processed: {id}"
        )));
    }
    tokio::time::sleep(Duration::from_millis(20)).await; // pay, update stock, notify
    orders.insert(&id).await?;
    Ok(Json(
        json!({ "success": true, "order": id, "status": "processed" }),
    ))
}

/// Scenario 2: a scheduled job runs on one server; the others skip it.
#[locked(key = "cron:daily-report", ttl = "10m", try_lock, fallback = report_in_progress)]
async fn cleanup() -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    Json(json!({ "success": true, "message": "Report generated" }))
}

async fn report_in_progress() -> Json<Value> {
    Json(json!({ "success": false, "message": "Report generation already in progress" }))
}

/// Scenario 3: one submission per user and action at a time: a duplicate sent while the
/// first is still saving is refused with 423.
async fn user_operation(
    user_id: Result<Path<u64>, PathRejection>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(user_id) = user_id?;
    let Json(body) = body?;
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object: {\"action\": ..., \"data\": {...}}".into(),
        ));
    }
    let action = body["action"]
        .as_str()
        .unwrap_or("update-profile")
        .to_owned();
    let data = body["data"].clone();
    let locker = locked::global()?;
    let opts = locker
        .options()
        .ttl(Duration::from_secs(5))
        .label("user-operation");
    // The same user, action and data: the same submission.
    let key = operation_key(&action, format!("{user_id}:{data}"));
    let saved = locker
        .try_run(&key, opts, || async move {
            tokio::time::sleep(Duration::from_millis(300)).await; // saving
            json!({ "user": user_id, "action": action, "saved": data })
        })
        .await?;
    match saved {
        Some(saved) => Ok(Json(json!({ "success": true, "result": saved }))),
        None => Err(ApiError::Locked(LockError::Busy { key })),
    }
}

async fn check(Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    let key = q
        .get("key")
        .cloned()
        .ok_or_else(|| ApiError::BadRequest("missing ?key=".into()))?;
    let locked = locked::global()?.is_locked(&key).await?;
    Ok(Json(json!({ "key": key, "locked": locked })))
}

/// Ten concurrent calls on one key: they run one at a time, and the report says so.
async fn concurrent_test() -> Result<Json<Value>, ApiError> {
    const CALLS: usize = 10;
    let start = Instant::now();
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            let (inside, most) = (inside.clone(), most.clone());
            tokio::spawn(async move {
                let locker = locked::global()?;
                let opts = locker.options().timeout(Duration::from_secs(10));
                locker
                    .run("concurrent-test", opts, || async move {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let entered = start.elapsed().as_millis();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                        json!({ "call": i, "entered_ms": entered })
                    })
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(
            call.await
                .map_err(|e| ApiError::BadRequest(e.to_string()))??,
        );
    }
    let most = most.load(Ordering::SeqCst);
    Ok(Json(json!({
        "success": true,
        "serialised": most == 1,
        "max_concurrent": most,
        "calls": CALLS,
        "completed": results.len(),
        "total_ms": start.elapsed().as_millis(),
        "results": results,
    })))
}

async fn force_release(Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    let key = q
        .get("key")
        .cloned()
        .ok_or_else(|| ApiError::BadRequest("missing ?key=".into()))?;
    let released = locked::global()?.force_release(&key).await?;
    Ok(Json(json!({ "key": key, "released": released })))
}

/// The Prometheus recorder, installed at start when the `metrics` feature is on.
#[cfg(feature = "metrics")]
static PROMETHEUS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
    std::sync::OnceLock::new();

#[cfg(feature = "metrics")]
async fn metrics_text() -> String {
    PROMETHEUS.get().map(|h| h.render()).unwrap_or_default()
}

fn app() -> Router {
    let router = Router::new();
    #[cfg(feature = "metrics")]
    let router = router.route("/metrics", get(metrics_text));
    router
        .route("/api/distributed-lock/basic", get(basic))
        .route("/api/distributed-lock/order/{id}", post(process_order))
        .route("/api/distributed-lock/cleanup", post(cleanup))
        .route(
            "/api/distributed-lock/user/{id}/operation",
            post(user_operation),
        )
        .route("/api/distributed-lock/check", get(check))
        .route(
            "/api/distributed-lock/concurrent-test",
            get(concurrent_test),
        )
        .route("/api/distributed-lock/force-release", delete(force_release))
}

async fn call(
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> Result<(), Box<dyn std::error::Error>> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ))?;
    let response = app().oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    println!(
        "{method:<6} {uri}\n       {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `RUST_LOG=locked=debug` shows every lock event; warnings show by default.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("locked=warn")),
        )
        .init();
    #[cfg(feature = "metrics")]
    {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
        let _ = PROMETHEUS.set(handle);
    }
    // The store comes from the environment (LOCK_STORE, REDIS_URL); with neither set it is
    // the memory store, and a warning says so.
    let _ = locked::global()?;
    let _ = ORDERS.set(Orders::from_env().await?);
    if std::env::args().any(|a| a == "--demo") {
        call("GET", "/api/distributed-lock/basic", None).await?;
        call("POST", "/api/distributed-lock/order/ORD-123", None).await?;
        call("POST", "/api/distributed-lock/cleanup", None).await?;
        let body = json!({ "action": "update-profile", "data": { "name": "John" } });
        call(
            "POST",
            "/api/distributed-lock/user/123/operation",
            Some(body),
        )
        .await?;
        call("GET", "/api/distributed-lock/check?key=my-task", None).await?;
        call("GET", "/api/distributed-lock/concurrent-test", None).await?;
        let stuck = locked::global()?
            .acquire("stuck-task", locked::global()?.options())
            .await?;
        call(
            "DELETE",
            "/api/distributed-lock/force-release?key=stuck-task",
            None,
        )
        .await?;
        drop(stuck);
        return Ok(());
    }
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|e| format!("PORT={p} is not a port: {e}"))?,
        Err(_) => 3333,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "serving the distributed-lock test API on http://127.0.0.1:{port}/api/distributed-lock/"
    );
    axum::serve(listener, app()).await?;
    Ok(())
}
