//! The original guide's test HTTP API, as axum handlers on `locked`.
//!
//! ```sh
//! cargo run --example http_api            # serves on 127.0.0.1:3333 (memory store, or REDIS_URL)
//! cargo run --example http_api -- --demo  # calls every route once in-process and exits
//! ```
//!
//! Routes (as in the original):
//! `GET /api/distributed-lock/basic`, `POST /api/distributed-lock/order/{id}`,
//! `POST /api/distributed-lock/cleanup`, `POST /api/distributed-lock/user/{id}/operation`
//! (body `{"action": "update-profile", "data": {"name": "John"}}`),
//! `GET /api/distributed-lock/check?key=my-task`, `GET /api/distributed-lock/concurrent-test`,
//! `DELETE /api/distributed-lock/force-release?key=stuck-task`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use locked::{LockError, locked, operation_key};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A handler error: the lock could not be had (423), or the request was refused (400).
enum ApiError {
    Locked(LockError),
    BadRequest(String),
}

impl From<LockError> for ApiError {
    fn from(e: LockError) -> Self {
        ApiError::Locked(e)
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

/// Scenario 1: an order is processed once, however many servers receive it.
#[locked(key = "order:{id}", ttl = "30s", timeout = "5s")]
async fn process_order(Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if id.is_empty() || !id.starts_with("ORD-") {
        return Err(ApiError::BadRequest(format!("unknown order {id}")));
    }
    tokio::time::sleep(Duration::from_millis(20)).await; // pay, update stock, notify
    Ok(Json(
        json!({ "success": true, "order": id, "status": "processed" }),
    ))
}

/// Scenario 2: a scheduled job runs on one server; the others skip it.
#[locked(key = "cron:daily-report", ttl = "10m", try_lock, fallback = report_in_progress)]
async fn cleanup() -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    Json(json!({ "success": true, "message": "Report generated" }))
}

async fn report_in_progress() -> Json<Value> {
    Json(json!({ "success": false, "message": "Report generation already in progress" }))
}

/// Scenario 3: one submission per user and action at a time.
async fn user_operation(
    Path(user_id): Path<u64>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let action = body["action"]
        .as_str()
        .unwrap_or("update-profile")
        .to_owned();
    let locker = locked::global()?;
    let opts = locker
        .options()
        .ttl(Duration::from_secs(5))
        .timeout(Duration::from_secs(2));
    let data = body["data"].clone();
    let saved = locker
        .run(&operation_key(&action, user_id), opts, || async move {
            json!({ "user": user_id, "action": action, "saved": data })
        })
        .await?;
    Ok(Json(json!({ "success": true, "result": saved })))
}

async fn check(Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    let key = q
        .get("key")
        .cloned()
        .unwrap_or_else(|| "my-task".to_owned());
    let locked = locked::global()?.is_locked(&key).await?;
    Ok(Json(json!({ "key": key, "locked": locked })))
}

/// Five concurrent calls on one key: they run one at a time.
async fn concurrent_test() -> Result<Json<Value>, ApiError> {
    let start = Instant::now();
    let calls = (0..5).map(|i| {
        tokio::spawn(async move {
            let locker = locked::global()?;
            locker
                .run("concurrent-test", locker.options(), || async move {
                    let entered = start.elapsed().as_millis();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    json!({ "call": i, "entered_ms": entered })
                })
                .await
        })
    });
    let mut results = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        results.push(
            call.await
                .map_err(|e| ApiError::BadRequest(e.to_string()))??,
        );
    }
    Ok(Json(json!({ "success": true, "results": results })))
}

async fn force_release(Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    let key = q
        .get("key")
        .cloned()
        .ok_or_else(|| ApiError::BadRequest("missing ?key=".into()))?;
    let released = locked::global()?.force_release(&key).await?;
    Ok(Json(json!({ "key": key, "released": released })))
}

fn app() -> Router {
    Router::new()
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
    // The store comes from the environment (LOCK_STORE, REDIS_URL); with neither set it is
    // the memory store, and a warning says so.
    let _ = locked::global()?;
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3333").await?;
    println!(
        "serving the distributed-lock test API on http://127.0.0.1:3333/api/distributed-lock/"
    );
    axum::serve(listener, app()).await?;
    Ok(())
}
