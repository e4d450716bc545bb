//! Production connections: a Redis ACL user granted only what the library needs (the
//! README's least-privilege ACL, tested as written), and a wrong password.

use std::time::Duration;

use locked::{LockError, LockOptions, Locker};
use locked_test_support::RedisServer;
use tokio::time::Instant;

/// The ACL from the README's Operations section, for a user `locker`.
const ACL: &[&str] = &[
    "on",
    ">s3cret-pass",
    "~lock:*",
    "~{lock:*",
    "&lock:*",
    "&{lock:*",
    "+set",
    "+get",
    "+del",
    "+exists",
    "+pexpire",
    "+pttl",
    "+incr",
    "+time",
    "+publish",
    "+subscribe",
    "+unsubscribe",
    "+evalsha",
    "+eval",
    "+script|load",
    "+ping",
    "+type",
    "+pexpireat",
    "+zadd",
    "+zrem",
    "+zrange",
    "+zcard",
    "+zcount",
    "+zscore",
    "+zremrangebyscore",
];

/// A call on `locker` fails with `Backend`, in bounded time, naming `host`; the message.
async fn fails_clearly(locker: &Locker, host: &str) -> String {
    let start = Instant::now();
    let err = locker
        .run(
            "unreachable",
            LockOptions::default().timeout(Duration::from_secs(1)),
            || async { unreachable!("ran without its lock") },
        )
        .await
        .unwrap_err();
    let took = start.elapsed();
    let msg = err.to_string();
    assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(msg.contains(host), "the host: {msg}");
    msg
}

fn acl_user(server: &RedisServer) -> String {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("locker")
        .arg(ACL)
        .query(&mut server.client())
        .unwrap();
    format!("redis://locker:s3cret-pass@127.0.0.1:{}/", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_with_least_privilege_can_do_everything() {
    let server = RedisServer::start();
    let url = acl_user(&server);
    let locker = Locker::redis(&url).unwrap();
    let other = Locker::redis(&url).unwrap();
    let fenced = LockOptions::default()
        .fencing(true)
        .ttl(Duration::from_millis(600));
    // Acquire with fencing (pipelined INCR, the seeding script), renew, read, release.
    let token = locker
        .run("order:1", fenced, || async {
            tokio::time::sleep(Duration::from_millis(700)).await; // renewed meanwhile
            locked::fencing_token()
        })
        .await
        .unwrap();
    assert!(token.is_some());
    // Several keys (the acquire script), a guard's extend and remaining.
    let guard = locker
        .acquire_all(&["{acct}:1", "{acct}:2"], LockOptions::default())
        .await
        .unwrap();
    guard.extend(Duration::from_secs(60)).await.unwrap();
    assert!(guard.remaining().await.unwrap() > Duration::from_secs(30));
    // A waiter woken by the release (pub/sub on the release channel).
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            let opts = LockOptions::default()
                .timeout(Duration::from_secs(10))
                .retry_interval(Duration::from_secs(5));
            other
                .run("{acct}:1", opts, || async { Instant::now() })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    guard.release().await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert!(
        got - released < Duration::from_secs(2),
        "woken after {:?}",
        got - released
    );
    // is_locked, force_release.
    let _held = other
        .acquire("stuck", LockOptions::default())
        .await
        .unwrap();
    assert!(locker.is_locked("stuck").await.unwrap());
    assert!(locker.force_release("stuck").await.unwrap());
    // A semaphore and a read/write lock: acquire, count, renew, release, the writer's
    // intent and its withdrawal.
    let exports = locker.semaphore("exports", 2);
    let permit = exports.acquire(LockOptions::default()).await.unwrap();
    assert_eq!(exports.available().await.unwrap(), 1);
    permit.extend(Duration::from_secs(60)).await.unwrap();
    assert!(permit.remaining().await.unwrap() > Duration::from_secs(30));
    assert!(locker.is_locked("exports").await.unwrap());
    permit.release().await.unwrap();
    let doc = locker.rw("doc");
    let reader = doc.acquire_read(LockOptions::default()).await.unwrap();
    let opts = LockOptions::default().timeout(Duration::from_millis(200));
    assert!(
        other
            .rw("doc")
            .write(opts, || async {})
            .await
            .unwrap_err()
            .is_timeout()
    );
    reader.release().await.unwrap();
    doc.write(LockOptions::default(), || async {})
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_password_is_a_clear_backend_error_without_the_password() {
    let server = RedisServer::start();
    acl_user(&server);
    let url = format!(
        "redis://locker:not-the-password-42@127.0.0.1:{}/",
        server.port()
    );
    let locker = Locker::redis(&url).unwrap();
    assert!(!format!("{locker:?}").contains("not-the-password-42"));
    let msg = fails_clearly(&locker, &format!("127.0.0.1:{}", server.port())).await;
    assert!(
        msg.to_lowercase().contains("wrongpass") || msg.to_lowercase().contains("auth"),
        "the cause: {msg}"
    );
    assert!(
        !msg.contains("not-the-password-42"),
        "the password leaked: {msg}"
    );
    println!("wrong password: {msg}");
}

/// A certificate for 127.0.0.1, self-signed: the server's, and the CA a client may trust.
#[cfg(feature = "tls")]
fn certificate() -> (String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    (cert.pem(), signing_key.serialize_pem())
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_url_with_trusted_certificate_locks_and_wakes() {
    let (cert, key) = certificate();
    let (server, tls_port) = RedisServer::start_tls(&cert, &key);
    let url = format!("rediss://127.0.0.1:{tls_port}/");
    let locker = Locker::builder()
        .tls_root_certificate(cert.clone())
        .redis(&url)
        .unwrap();
    let other = Locker::builder()
        .tls_root_certificate(cert)
        .redis(&url)
        .unwrap();
    let held = locker
        .acquire("tls", LockOptions::default().fencing(true))
        .await
        .unwrap();
    assert!(held.fencing_token().is_some());
    // The lock is in the server (seen through its plain port).
    let stored: Option<String> = redis::cmd("GET")
        .arg("lock:tls")
        .query(&mut server.client())
        .unwrap();
    assert!(stored.is_some());
    let waiter = tokio::spawn(async move {
        let opts = LockOptions::default()
            .timeout(Duration::from_secs(10))
            .retry_interval(Duration::from_secs(5));
        other.run("tls", opts, || async { Instant::now() }).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    held.release().await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert!(
        got - released < Duration::from_secs(2),
        "woken over TLS after {:?}",
        got - released
    );
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn rediss_url_with_untrusted_certificate_is_a_clear_backend_error() {
    let (cert, key) = certificate();
    let (_server, tls_port) = RedisServer::start_tls(&cert, &key);
    let (other_ca, _) = certificate();
    let locker = Locker::builder()
        .tls_root_certificate(other_ca)
        .redis(&format!("rediss://127.0.0.1:{tls_port}/"))
        .unwrap();
    let msg = fails_clearly(&locker, &format!("127.0.0.1:{tls_port}")).await;
    assert!(
        msg.to_lowercase().contains("certificate"),
        "the cause: {msg}"
    );
    println!("untrusted certificate: {msg}");
}
