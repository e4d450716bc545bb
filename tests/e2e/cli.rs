//! The `locked` command-line tool, run as a built binary against real servers: `--json`
//! parsed back, the release prompt answered on a pseudo-terminal (`script`), `wait`
//! returning when another process releases, and the documented exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use locked::{LockOptions, Locker};
use locked_test_support::{RedisServer, eventually, redlock_locker, shared_cluster};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_locked");

fn locked(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("LOCK_STORE")
        .env_remove("LOCK_REDIS_URL")
        .env_remove("REDIS_URL")
        .env_remove("LOCK_PREFIX")
        .env_remove("LOCK_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_inspect_print_json_that_parses_back() {
    let server = RedisServer::start();
    let url = server.url();
    let locker = server.locker();
    let fenced = LockOptions::default().fencing(true);
    let _a = locker.acquire("order:1", fenced).await.unwrap();
    let _b = locker.acquire("order:2", fenced).await.unwrap();
    let _c = locker.acquire("cron:daily", fenced).await.unwrap();

    let list = json(&locked(&["--url", &url, "list", "order:*", "--json"]));
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["lock:order:1", "lock:order:2"]);
    for item in list.as_array().unwrap() {
        assert_eq!(item["held"], true);
        assert!(item["ttl_ms"].as_u64().unwrap() <= 30_000);
        assert_eq!(item["holder"].as_str().unwrap().len(), 8);
        assert!(item["fence"].as_u64().is_some());
    }
    let table = locked(&["--url", &url, "list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("lock:cron:daily") && text.contains("WAITERS"),
        "{text}"
    );

    let info = json(&locked(&["--url", &url, "inspect", "order:1", "--json"]));
    assert_eq!(info["key"], "lock:order:1");
    assert_eq!(info["held"], true);
    let free = json(&locked(&["--url", &url, "inspect", "order:9", "--json"]));
    assert_eq!(free["held"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_list_scans_every_master() {
    let cluster = shared_cluster();
    let locker = cluster.locker("clitest:");
    let mut guards = Vec::new();
    for i in 0..12 {
        guards.push(
            locker
                .acquire(&format!("job:{i}"), LockOptions::default())
                .await
                .unwrap(),
        );
    }
    let seeds = cluster.urls().join(",");
    let list = json(&locked(&[
        "--store", "cluster", "--url", &seeds, "--prefix", "clitest:", "list", "--json",
    ]));
    assert_eq!(list.as_array().unwrap().len(), 12, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_inspect_shows_each_master_and_the_quorum() {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let locker = redlock_locker(&masters);
    let _held = locker
        .acquire("report", LockOptions::default())
        .await
        .unwrap();
    let urls: Vec<String> = masters.iter().map(RedisServer::url).collect();
    let urls = urls.join(",");
    let info = eventually(Duration::from_secs(5), async || {
        let info = json(&locked(&[
            "--store", "redlock", "--url", &urls, "inspect", "report", "--json",
        ]));
        info["masters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["held"] == true)
    })
    .await;
    assert!(info, "every master holds the lock");
    let info = json(&locked(&[
        "--store", "redlock", "--url", &urls, "inspect", "report", "--json",
    ]));
    assert_eq!(info["held"], true);
    assert_eq!(info["masters"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_asks_on_a_terminal_and_refuses_without_one() {
    let server = RedisServer::start();
    let url = server.url();
    let locker = server.locker();
    let _held = locker
        .acquire("stuck", LockOptions::default())
        .await
        .unwrap();

    // No terminal, no --yes: refused (exit 4), the lock stays.
    let out = locked(&["--url", &url, "release", "stuck"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(locker.is_locked("stuck").await.unwrap());

    // On a pseudo-terminal: "n" declines (exit 4), "y" releases.
    for (answer, code, held) in [("n", 4, true), ("y", 0, false)] {
        let command = format!("{BIN} --url {url} release stuck");
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_remove("REDIS_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("`script` (util-linux) runs the tool on a pseudo-terminal");
        // Answer once the prompt is on the terminal.
        let mut stdout = child.stdout.take().unwrap();
        let mut shown = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !String::from_utf8_lossy(&shown).contains("[y/N]") {
            let text = String::from_utf8_lossy(&shown).into_owned();
            assert!(Instant::now() < deadline, "no prompt: {text}");
            let mut byte = [0u8; 1];
            match std::io::Read::read(&mut stdout, &mut byte) {
                Ok(1) => shown.push(byte[0]),
                _ => panic!("the tool ended before it asked: {text}"),
            }
        }
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        std::io::Read::read_to_end(&mut stdout, &mut shown).unwrap();
        drop(stdin);
        let status = child.wait().unwrap();
        let shown = String::from_utf8_lossy(&shown).into_owned();
        assert_eq!(status.code(), Some(code), "answer {answer}: {shown}");
        assert!(shown.contains("release lock:stuck"), "the prompt: {shown}");
        assert_eq!(
            locker.is_locked("stuck").await.unwrap(),
            held,
            "answer {answer}"
        );
    }

    // --yes: no question.
    let _again = locker
        .acquire("stuck", LockOptions::default())
        .await
        .unwrap();
    let out = locked(&["--url", &url, "release", "stuck", "--yes"]);
    assert!(out.status.success());
    assert!(!locker.is_locked("stuck").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_when_another_process_releases_and_times_out_with_code_3() {
    let server = RedisServer::start();
    let url = server.url();
    let locker = server.locker();
    let held = locker
        .acquire("busy", LockOptions::default())
        .await
        .unwrap();

    let out = locked(&["--url", &url, "wait", "busy", "--timeout", "300ms"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let waiting = {
        let url = url.clone();
        std::thread::spawn(move || {
            let out = locked(&["--url", &url, "wait", "busy", "--timeout", "20s"]);
            (out, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let released = Instant::now();
    held.release().await.unwrap();
    let (out, ended) = waiting.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ended - released < Duration::from_secs(2),
        "returned {:?} after",
        ended - released
    );
}

#[test]
fn env_says_which_store_the_environment_selects() {
    let memory = json(&locked(&["env", "--json"]));
    assert_eq!(memory["memory"], true);
    let redis = json(&locked(&["--url", "redis://127.0.0.1:1/", "env", "--json"]));
    assert_eq!(redis["memory"], false);
    assert!(
        redis["locker"]
            .as_str()
            .unwrap()
            .contains("redis(redis://127.0.0.1:1/)")
    );
    let bad = locked(&["--store", "zookeeper", "env"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("LOCK_STORE"));
    let _ = Locker::memory();
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_lists_inspects_and_releases() {
    let server = locked_test_support::shared_postgres();
    // The CLI uses the default schema, `locked`.
    let locker = Locker::postgres(&server.url()).unwrap();
    let _a = locker
        .acquire("order:1", LockOptions::default().fencing(true))
        .await
        .unwrap();
    let url = server.url();
    let base = ["--store", "postgres", "--url", url.as_str()];
    let list = json(&locked(
        &[&base[..], &["list", "order:*", "--json"]].concat(),
    ));
    assert_eq!(list[0]["key"], "lock:order:1");
    assert!(list[0]["fence"].as_u64().is_some());
    let out = locked(&[&base[..], &["release", "order:1", "--yes"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!locker.is_locked("order:1").await.unwrap());
    let env = locked(&[&base[..], &["env"]].concat());
    let shown = String::from_utf8_lossy(&env.stdout);
    assert!(
        shown.contains("postgres(") && !shown.contains("secret-pw"),
        "{shown}"
    );
}

/// The CLI reaches the MySQL store through the registry: `--store mysql --url ...`, the
/// lock tables in the URL's database.
#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store_lists_inspects_and_releases() {
    let server = locked_test_support::shared_mysql();
    let url = server.url();
    let locker = Locker::mysql(&url).unwrap();
    let _a = locker
        .acquire("order:1", LockOptions::default().fencing(true))
        .await
        .unwrap();
    let base = ["--store", "mysql", "--url", url.as_str()];
    let list = json(&locked(
        &[&base[..], &["list", "order:*", "--json"]].concat(),
    ));
    assert_eq!(list[0]["key"], "lock:order:1");
    assert!(list[0]["fence"].as_u64().is_some());
    let out = locked(&[&base[..], &["release", "order:1", "--yes"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!locker.is_locked("order:1").await.unwrap());
    let env = locked(&[&base[..], &["env"]].concat());
    let shown = String::from_utf8_lossy(&env.stdout);
    assert!(
        shown.contains("mysql(") && !shown.contains(locked_test_support::MYSQL_PASSWORD),
        "{shown}"
    );
}
