//! The global locker: `init` once per process, then `#[locked]` without `locker = ...`.
//! One test only, because the global cannot be reset within a process.

use locked::{LockError, Locker, locked};
use locked_test_support::RedisServer;

#[locked(key = "my-task")]
async fn my_task(server: &RedisServer) -> Result<i64, LockError> {
    let mut c = server.client();
    Ok(redis::cmd("EXISTS")
        .arg("lock:my-task")
        .query(&mut c)
        .unwrap())
}

#[tokio::test]
async fn init_sets_global_locker_used_by_attribute() {
    let server = RedisServer::start();
    locked::init(Locker::redis(&server.url()).unwrap()).unwrap();
    let err = locked::init(Locker::memory()).unwrap_err();
    assert!(matches!(err, LockError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("once"), "{err}");
    assert_eq!(
        my_task(&server).await.unwrap(),
        1,
        "the lock was not in the global Redis"
    );
    assert!(
        !locked::global()
            .unwrap()
            .is_locked("my-task")
            .await
            .unwrap()
    );
}
