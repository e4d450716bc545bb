//! The HTTP example (`examples/http_api.rs`) as the original test API behaves, served by the
//! built example binary on a free port and driven over real HTTP with a real client, on
//! the memory store and on Redis.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use locked_test_support::{RedisServer, eventually, free_port};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// The built example, `examples/http_api` beside the test binaries' `deps/`: the test
/// script builds it first (`cargo build --example http_api --all-features`), with the
/// features these tests run with.
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join("http_api"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --example http_api` (and the \
         features you test with, e.g. `--all-features`), as ./scripts/test does",
        bin.display()
    );
    bin
}

/// The example server, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(redis: Option<&RedisServer>) -> Self {
        let bin = example_binary();
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.env("PORT", port.to_string())
            .env_remove("LOCK_STORE")
            .env_remove("LOCK_REDIS_URL")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(redis) = redis {
            cmd.env("REDIS_URL", redis.url());
        }
        let server = Self {
            child: cmd.spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}/api/distributed-lock"),
        };
        let client = Client::new();
        let url = server.url("/basic");
        let up = eventually(Duration::from_secs(20), async || {
            client.get(&url).send().await.is_ok()
        })
        .await;
        assert!(up, "the example did not start serving on port {port}");
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: not a JSON body ({e}): {text:?}"));
    (status, body)
}

/// Every route and status code, over HTTP, on the store the example was given.
async fn every_route_behaves_as_the_original(server: &Server, redis: Option<&RedisServer>) {
    let http = Client::new();

    let (status, body) = json_of(http.get(server.url("/basic")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // An order is processed once; the same order again is refused.
    let order = server.url("/order/ORD-123");
    let (status, body) = json_of(http.post(&order).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "processed");
    let (status, body) = json_of(http.post(&order).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("order already processed")
    );
    // On Redis, the order table's key expires (a day), never left forever.
    if let Some(redis) = redis {
        let ttl: i64 = redis::cmd("TTL")
            .arg("processed:ORD-123")
            .query(&mut redis.client())
            .unwrap();
        assert!(
            (1..=24 * 60 * 60).contains(&ttl),
            "TTL processed:ORD-123 = {ttl}"
        );
    }

    // Try mode: two runs at once, one does the work, the other is told it is in progress.
    let cleanup = || http.post(server.url("/cleanup")).send();
    let (a, b) = tokio::join!(cleanup(), cleanup());
    let (a, b) = (json_of(a.unwrap()).await, json_of(b.unwrap()).await);
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    let messages = [a.1["message"].to_string(), b.1["message"].to_string()];
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.contains("already in progress"))
            .count(),
        1,
        "{messages:?}"
    );

    // 8 identical submissions at once: one is saved, seven are refused as duplicates.
    let submit = json!({ "action": "update-profile", "data": { "name": "John" } });
    let sends = (0..8).map(|_| {
        http.post(server.url("/user/123/operation"))
            .json(&submit)
            .send()
    });
    let responses = futures_util::future::join_all(sends).await;
    let mut codes = Vec::new();
    for response in responses {
        let (status, body) = json_of(response.unwrap()).await;
        if status == StatusCode::LOCKED {
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("please do not submit twice")
            );
        }
        codes.push(status);
    }
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::OK).count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::LOCKED).count(),
        7,
        "{codes:?}"
    );

    // Check, and force-release (of a lock another process holds, on Redis).
    let (status, body) = json_of(
        http.get(server.url("/check?key=my-task"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "key": "my-task", "locked": false }));
    let stuck = match redis {
        Some(redis) => Some(
            redis
                .locker()
                .acquire("stuck-task", locked::LockOptions::default())
                .await
                .unwrap(),
        ),
        None => None,
    };
    let (status, body) = json_of(
        http.get(server.url("/check?key=stuck-task"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["locked"], stuck.is_some());
    let (status, body) = json_of(
        http.delete(server.url("/force-release?key=stuck-task"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "key": "stuck-task", "released": stuck.is_some() })
    );
    drop(stuck);

    // Concurrent locked calls were serialised.
    let (status, body) = json_of(
        http.get(server.url("/concurrent-test"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["serialised"], true, "{body}");
    assert_eq!(body["max_concurrent"], 1);
    assert_eq!(body["completed"], body["calls"]);

    // Bad input: 400 with a JSON message, never plain text or a 500.
    let bad = [
        http.get(server.url("/check")).send().await.unwrap(),
        http.delete(server.url("/force-release"))
            .send()
            .await
            .unwrap(),
        http.post(server.url("/user/123/operation"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
        http.post(server.url("/user/123/operation"))
            .json(&json!(["not", "an", "object"]))
            .send()
            .await
            .unwrap(),
        http.post(server.url("/user/abc/operation"))
            .json(&submit)
            .send()
            .await
            .unwrap(),
    ];
    for response in bad {
        let url = response.url().to_string();
        let (status, body) = json_of(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert!(body["message"].is_string(), "{url}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_on_the_memory_store() {
    let server = Server::start(None).await;
    every_route_behaves_as_the_original(&server, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_on_redis() {
    let redis = RedisServer::start();
    let server = Server::start(Some(&redis)).await;
    every_route_behaves_as_the_original(&server, Some(&redis)).await;
}

/// Two instances on one Redis, the same order posted to both at once: one processes it,
/// the other says it already was (the order table lives in Redis, not in either process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_process_an_order_once() {
    let redis = RedisServer::start();
    let (a, b) = tokio::join!(Server::start(Some(&redis)), Server::start(Some(&redis)));
    let http = Client::new();
    for order in ["ORD-77", "ORD-78", "ORD-79"] {
        let path = format!("/order/{order}");
        let (first, second) = tokio::join!(
            http.post(a.url(&path)).send(),
            http.post(b.url(&path)).send()
        );
        let answers = [
            json_of(first.unwrap()).await,
            json_of(second.unwrap()).await,
        ];
        let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        let refused = answers
            .iter()
            .filter(|(s, body)| {
                *s == StatusCode::BAD_REQUEST
                    && body["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("order already processed"))
            })
            .count();
        assert_eq!((ok, refused), (1, 1), "{order}: {answers:?}");
        // Afterwards, either instance refuses it.
        for server in [&a, &b] {
            let (status, body) = json_of(http.post(server.url(&path)).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{order}: {body}");
        }
    }
}

/// The value of the series `name{labels...}` in Prometheus text, 0 when absent.
#[cfg(feature = "metrics")]
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// With the `metrics` feature, `/metrics` counts what the calls did, labelled by key
/// template, never by rendered key.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_after_calls() {
    let server = Server::start(None).await;
    let http = Client::new();
    for order in ["ORD-1", "ORD-2", "ORD-1"] {
        http.post(server.url(&format!("/order/{order}")))
            .send()
            .await
            .unwrap();
    }
    let submit = json!({ "action": "export", "data": { "id": 7 } });
    let sends = (0..8).map(|_| {
        http.post(server.url("/user/9/operation"))
            .json(&submit)
            .send()
    });
    futures_util::future::join_all(sends).await;
    let text = http
        .get(server.base.replace("/api/distributed-lock", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let acquire = "locked_acquire_seconds_count";
    let order = ("key", "order:{id}");
    let user = ("key", "user-operation");
    assert_eq!(
        series(&text, acquire, &[order, ("outcome", "acquired")]),
        3.0,
        "{text}"
    );
    assert_eq!(
        series(&text, acquire, &[user, ("outcome", "acquired")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        series(&text, acquire, &[user, ("outcome", "busy")]),
        7.0,
        "{text}"
    );
    assert_eq!(
        series(&text, "locked_hold_seconds_count", &[order]),
        3.0,
        "{text}"
    );
    assert_eq!(series(&text, "locked_held", &[order]), 0.0, "{text}");
    assert_eq!(series(&text, "locked_waiting", &[user]), 0.0, "{text}");
    assert!(
        !text.contains("ORD-1"),
        "a rendered key leaked into a label: {text}"
    );
}
