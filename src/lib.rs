#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub use lock_runtime::{
    DATABASE_URL, DEFAULT_PREFIX, DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_TTL, Election,
    LOCK_DATABASE_URL, LOCK_ETCD_ENDPOINTS, LOCK_PREFIX, LOCK_REDIS_URL, LOCK_SQLITE_PATH,
    LOCK_STORE, Leader, LockError, LockGuard, LockInfo, LockOptions, Locker, LockerBuilder,
    MAX_KEY_LEN, MasterView, Observer, REDIS_URL, RwLock, Semaphore, TRACING_TARGET, Term,
    fencing_token, global, handoff, init, operation_key, resource_key,
};

#[doc(inline)]
pub use lock_macros::locked;

#[doc(hidden)]
pub use lock_runtime::__private;
