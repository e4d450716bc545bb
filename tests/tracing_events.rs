//! The `tracing` events a lock call emits, and `logging = false` silencing them.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locked::{LockOptions, Locker};

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs `f` on a current-thread runtime with a DEBUG subscriber; returns the log.
fn logged(f: impl AsyncFnOnce(Locker)) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f(Locker::memory()));
    });
    captured.text()
}

#[test]
fn run_emits_acquired_and_released_with_key_and_site() {
    let log = logged(async |locker| {
        locker
            .run("order:1", LockOptions::default(), || async {})
            .await
            .unwrap();
    });
    assert!(log.contains("acquired"), "{log}");
    assert!(log.contains("released"), "{log}");
    assert!(log.contains("lock:order:1"), "{log}");
    assert!(log.contains("site=\"Locker::run\""), "{log}");
    assert!(log.contains("held_ms="), "{log}");
    assert!(log.contains("locked"), "target missing: {log}");
}

#[test]
fn contention_emits_busy_waiting_and_timeout() {
    let log = logged(async |locker| {
        let _held = locker.acquire("job", LockOptions::default()).await.unwrap();
        assert!(
            locker
                .try_acquire("job", LockOptions::default())
                .await
                .unwrap()
                .is_none()
        );
        let opts = LockOptions::default().timeout(Duration::from_millis(50));
        assert!(locker.acquire("job", opts).await.unwrap_err().is_timeout());
    });
    for event in ["busy", "waiting", "timeout"] {
        assert!(log.contains(event), "no `{event}` in {log}");
    }
}

#[test]
fn logging_false_silences_per_call_events() {
    let log = logged(async |locker| {
        let quiet = LockOptions::default().logging(false);
        locker.run("quiet", quiet, || async {}).await.unwrap();
    });
    assert!(
        !log.contains("acquired") && !log.contains("released"),
        "{log}"
    );
}

#[test]
fn force_release_warns() {
    let log = logged(async |locker| {
        let _held = locker
            .acquire("stuck", LockOptions::default())
            .await
            .unwrap();
        locker.force_release("stuck").await.unwrap();
    });
    assert!(
        log.contains("WARN") && log.contains("force_release"),
        "{log}"
    );
}

#[test]
fn leadership_emits_gained_ended_and_lost_with_identity_and_term() {
    let log = logged(async |locker| {
        let election = locker.election("scheduler").identity("worker-9");
        election.lead(|_| async {}).await.unwrap();
        // A lost term: the key is taken away while the body runs.
        let short = election.options(LockOptions::default().ttl(Duration::from_millis(90)));
        let err = short
            .lead(|_| async {
                locker.force_release("scheduler").await.unwrap();
                std::future::pending::<()>().await
            })
            .await
            .unwrap_err();
        assert!(err.is_lost(), "{err}");
    });
    for event in ["leadership_gained", "leadership_ended", "leadership_lost"] {
        assert!(log.contains(event), "no `{event}` in {log}");
    }
    assert!(log.contains("identity=\"worker-9\""), "{log}");
    assert!(log.contains("event=\"stepped_down\""), "{log}");
    assert!(log.contains("term="), "{log}");
}

/// With the `metrics` feature: a term counts in `locked_leader` while it lasts, and each
/// change of leadership in `locked_leadership_total`.
#[cfg(feature = "metrics")]
#[test]
fn leadership_is_measured() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let during = metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let locker = Locker::memory();
            let opts = locker.options().label("scheduler");
            let election = locker.election("scheduler").options(opts);
            let during = election.lead(|_| async { handle.render() }).await.unwrap();
            let other = election.clone();
            let leading =
                tokio::spawn(async move { other.lead(|_| std::future::pending::<()>()).await });
            while !locker.is_locked("scheduler").await.unwrap() {
                tokio::task::yield_now().await;
            }
            assert!(election.resign().await);
            assert!(leading.await.unwrap().unwrap_err().is_resigned());
            during
        })
    });
    let after = handle.render();
    assert!(
        during.contains("locked_leader{key=\"scheduler\"} 1"),
        "{during}"
    );
    assert!(
        after.contains("locked_leader{key=\"scheduler\"} 0"),
        "{after}"
    );
    for event in ["gained\"} 2", "stepped_down\"} 1", "resigned\"} 1"] {
        assert!(after.contains(event), "no `{event}` in {after}");
    }
}

/// Nothing the MySQL store logs shows the URL's password: the locker's `Debug`, a forced
/// release's warning, a lost release, a server that is down.
#[cfg(feature = "mysql")]
#[test]
fn mysql_events_never_show_the_password() {
    use locked_test_support::{MYSQL_PASSWORD, free_port, shared_mysql};
    let url = shared_mysql().url();
    let down = format!("mysql://app:{MYSQL_PASSWORD}@127.0.0.1:{}/app", free_port());
    let log = logged(async |_| {
        let locker = Locker::mysql(&url).unwrap();
        tracing::info!(locker = ?locker, "the locker");
        let guard = locker
            .acquire("order:1", LockOptions::default())
            .await
            .unwrap();
        assert!(locker.force_release("order:1").await.unwrap());
        assert!(guard.release().await.unwrap_err().is_lost());
        let down = Locker::mysql(&down).unwrap();
        let opts = LockOptions::default().timeout(Duration::from_millis(300));
        let err = down.acquire("order:2", opts).await.unwrap_err();
        tracing::warn!(error = %err, debug = ?err, "the failure");
    });
    assert!(log.contains("force_release"), "{log}");
    assert!(log.contains("mysql(127.0.0.1:"), "{log}");
    assert!(log.contains("Connection refused"), "{log}");
    assert!(!log.contains(MYSQL_PASSWORD), "{log}");
}
