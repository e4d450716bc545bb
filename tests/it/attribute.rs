//! `#[locked]` as users write it: free fns, methods, generics, trait impls, try mode,
//! fallbacks, errors through `?`, and the lock released on every exit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use locked::{LockError, LockOptions, Locker, locked};
use locked_test_support::eventually;

static LOCKER: LazyLock<Locker> = LazyLock::new(Locker::memory);

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    NotFound(u64),
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

/// Docs and attributes stay on the fn.
#[locked(key = "order:{order_id}", ttl = "30s", timeout = "5s", locker = LOCKER)]
#[must_use = "an order result"]
async fn process_order(order_id: u64) -> Result<String, AppError> {
    assert!(LOCKER.is_locked(&format!("order:{order_id}")).await?);
    if order_id == 0 {
        return Err(AppError::NotFound(order_id));
    }
    let n: u64 = "2".parse().map_err(|_| AppError::NotFound(order_id))?;
    Ok(format!("processed {}", order_id * n))
}

#[tokio::test]
async fn locked_free_fn_holds_formatted_key_and_releases() {
    assert_eq!(process_order(21).await.unwrap(), "processed 42");
    assert!(!LOCKER.is_locked("order:21").await.unwrap());
    assert!(matches!(process_order(0).await, Err(AppError::NotFound(0))));
    assert!(
        !LOCKER.is_locked("order:0").await.unwrap(),
        "early return kept the lock"
    );
}

#[tokio::test]
async fn locked_held_key_times_out_through_error_type() {
    let _held = LOCKER
        .acquire("order:77", LockOptions::default())
        .await
        .unwrap();
    #[locked(key = "order:{id}", timeout = "100ms", retry_interval = "10ms", locker = LOCKER)]
    async fn quick(id: u64) -> Result<u64, AppError> {
        Ok(id)
    }
    match quick(77).await {
        Err(AppError::Lock(e)) => {
            assert!(e.is_timeout());
            assert!(
                e.to_string()
                    .contains("Unable to acquire lock `lock:order:77`"),
                "{e}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

struct Request {
    user_id: u32,
}

#[locked(key = "user:{req.user_id}:{action}", locker = LOCKER)]
async fn field_placeholder(req: &Request, action: &str) -> Result<bool, LockError> {
    LOCKER
        .is_locked(&format!("user:{}:{}", req.user_id, action))
        .await
}

#[tokio::test]
async fn locked_field_placeholders_format_with_display() {
    assert!(
        field_placeholder(&Request { user_id: 5 }, "save")
            .await
            .unwrap()
    );
}

#[locked(key = "name:{name}", locker = LOCKER)]
async fn empty_placeholder(name: &str) -> Result<(), LockError> {
    Ok(())
}

#[tokio::test]
async fn locked_empty_placeholder_is_invalid_key() {
    let err = empty_placeholder("").await.unwrap_err();
    assert!(matches!(err, LockError::InvalidKey { .. }), "{err:?}");
    assert!(empty_placeholder("x").await.is_ok());
}

struct Account {
    id: u64,
    balance: tokio::sync::Mutex<i64>,
}

impl Account {
    #[locked(key = "account:{self.id}", locker = LOCKER)]
    async fn deposit(&self, amount: i64) -> Result<i64, LockError> {
        let mut b = self.balance.lock().await;
        *b += amount;
        Ok(*b)
    }
}

#[tokio::test]
async fn locked_method_with_self_field_key() {
    let acct = Account {
        id: 3,
        balance: tokio::sync::Mutex::new(10),
    };
    assert_eq!(acct.deposit(5).await.unwrap(), 15);
}

trait Job {
    async fn run(&self, n: u32) -> Result<u32, LockError>;
}

struct Nightly;

impl Job for Nightly {
    #[locked(key = "job:nightly:{n}", locker = LOCKER)]
    async fn run(&self, n: u32) -> Result<u32, LockError> {
        Ok(n + 1)
    }
}

#[tokio::test]
async fn locked_trait_impl_method() {
    assert_eq!(Nightly.run(1).await.unwrap(), 2);
}

#[locked(key = "generic:{item}", locker = LOCKER)]
async fn generic<T: std::fmt::Display + Send + Sync>(
    item: T,
    extra: impl Into<u32>,
) -> Result<String, LockError> {
    Ok(format!("{item}-{}", extra.into()))
}

#[tokio::test]
async fn locked_generic_fn() {
    assert_eq!(generic("a", 1u8).await.unwrap(), "a-1");
}

#[locked(key = "spawned:{id}", locker = LOCKER)]
async fn spawnable(id: u32) -> Result<u32, LockError> {
    tokio::task::yield_now().await;
    Ok(id)
}

#[tokio::test]
async fn locked_future_is_send_for_spawn() {
    let handles: Vec<_> = (0..4).map(|i| tokio::spawn(spawnable(i))).collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().unwrap(), i as u32);
    }
}

static FALLBACKS: AtomicUsize = AtomicUsize::new(0);

#[locked(key = "cron:report", try_lock, fallback = report_in_progress, locker = LOCKER)]
async fn daily_report(day: u32) -> String {
    format!("report {day}")
}

async fn report_in_progress(day: u32) -> String {
    FALLBACKS.fetch_add(1, Ordering::SeqCst);
    format!("report {day} already in progress")
}

#[tokio::test]
async fn locked_try_mode_busy_calls_fallback_with_same_arguments() {
    assert_eq!(daily_report(1).await, "report 1");
    let held = LOCKER
        .acquire("cron:report", LockOptions::default())
        .await
        .unwrap();
    assert_eq!(daily_report(2).await, "report 2 already in progress");
    assert_eq!(FALLBACKS.load(Ordering::SeqCst), 1);
    held.release().await.unwrap();
    assert_eq!(daily_report(3).await, "report 3");
}

#[locked(key = "busy-result", mode = "try", locker = LOCKER)]
async fn try_without_fallback() -> Result<(), LockError> {
    Ok(())
}

#[tokio::test]
async fn locked_try_mode_without_fallback_returns_busy() {
    let held = LOCKER
        .acquire("busy-result", LockOptions::default())
        .await
        .unwrap();
    assert!(try_without_fallback().await.unwrap_err().is_busy());
    held.release().await.unwrap();
    assert!(try_without_fallback().await.is_ok());
}

#[locked(key = "wait-fallback", timeout = "50ms", retry_interval = "10ms", fallback = fallback_zero, locker = LOCKER)]
async fn wait_with_fallback(x: u32) -> u32 {
    x
}

async fn fallback_zero(_x: u32) -> u32 {
    0
}

#[tokio::test]
async fn locked_wait_mode_timeout_calls_fallback() {
    let held = LOCKER
        .acquire("wait-fallback", LockOptions::default())
        .await
        .unwrap();
    assert_eq!(wait_with_fallback(9).await, 0);
    held.release().await.unwrap();
    assert_eq!(wait_with_fallback(9).await, 9);
}

#[locked(key = "panics:{id}", locker = LOCKER, logging = false)]
async fn panics(id: u32) -> Result<(), LockError> {
    tokio::task::yield_now().await;
    panic!("body {id} failed");
}

#[tokio::test]
async fn locked_panicking_body_releases() {
    assert!(tokio::spawn(panics(1)).await.unwrap_err().is_panic());
    assert!(
        eventually(Duration::from_secs(5), async || !LOCKER
            .is_locked("panics:1")
            .await
            .unwrap())
        .await
    );
}

#[locked(key = "cancel:{id}", locker = LOCKER)]
async fn slow(id: u32, entered: Arc<tokio::sync::Notify>) -> Result<(), LockError> {
    entered.notify_one();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let _ = id;
    Ok(())
}

#[tokio::test]
async fn locked_cancelled_caller_releases() {
    let entered = Arc::new(tokio::sync::Notify::new());
    tokio::select! {
        _ = slow(1, entered.clone()) => unreachable!(),
        _ = entered.notified() => {}
    }
    assert!(
        eventually(Duration::from_secs(5), async || !LOCKER
            .is_locked("cancel:1")
            .await
            .unwrap())
        .await
    );
}

struct Service {
    locker: Locker,
}

impl Service {
    #[locked(key = "svc:{n}", locker = self.locker)]
    async fn with_own_locker(&self, n: u32) -> Result<bool, LockError> {
        self.locker.is_locked(&format!("svc:{n}")).await
    }
}

#[tokio::test]
async fn locked_locker_expression_selects_store() {
    let svc = Service {
        locker: Locker::builder().prefix("svc-prefix:").memory(),
    };
    assert!(svc.with_own_locker(1).await.unwrap());
    assert!(!LOCKER.is_locked("svc:1").await.unwrap());
}

#[locked(key = "{{literal}}:{id}", locker = LOCKER)]
async fn escaped(id: u32) -> Result<bool, LockError> {
    LOCKER.is_locked(&format!("{{literal}}:{id}")).await
}

#[tokio::test]
async fn locked_escaped_braces_are_literal() {
    assert!(escaped(4).await.unwrap());
}

static EXPORTS_INSIDE: AtomicUsize = AtomicUsize::new(0);
static EXPORTS_MAX: AtomicUsize = AtomicUsize::new(0);

/// `permits = 2`: two calls at once, never three.
#[locked(key = "export:{tenant}", permits = 2, timeout = "30s", locker = LOCKER)]
async fn export(tenant: u32) -> Result<u32, LockError> {
    let now = EXPORTS_INSIDE.fetch_add(1, Ordering::SeqCst) + 1;
    EXPORTS_MAX.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    EXPORTS_INSIDE.fetch_sub(1, Ordering::SeqCst);
    Ok(tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_permits_admits_that_many_calls_at_once() {
    let calls: Vec<_> = (0..6).map(|_| tokio::spawn(export(9))).collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), 9);
    }
    assert_eq!(EXPORTS_MAX.load(Ordering::SeqCst), 2);
    assert_eq!(
        LOCKER.semaphore("export:9", 2).available().await.unwrap(),
        2
    );
}

#[locked(key = "doc:{id}", read, try_lock, locker = LOCKER)]
async fn view_doc(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked(key = "doc:{id}", write, timeout = "100ms", locker = LOCKER)]
async fn edit_doc(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[tokio::test]
async fn locked_read_and_write_share_one_read_write_lock() {
    let reader = LOCKER
        .rw("doc:77")
        .acquire_read(LockOptions::default())
        .await
        .unwrap();
    assert_eq!(view_doc(77).await.unwrap(), 77, "readers share the key");
    assert!(
        edit_doc(77).await.unwrap_err().is_timeout(),
        "the writer waits for the reader"
    );
    reader.release().await.unwrap();
    let writer = LOCKER
        .rw("doc:77")
        .acquire_write(LockOptions::default())
        .await
        .unwrap();
    assert!(
        view_doc(77).await.unwrap_err().is_busy(),
        "no reader beside the writer"
    );
    writer.release().await.unwrap();
    assert_eq!(edit_doc(77).await.unwrap(), 77);
}
