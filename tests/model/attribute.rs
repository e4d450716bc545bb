//! `#[locked]` as the model's fourth entry point: on the process's global locker, with
//! the arguments fixed at compile time (ttl 2 s, timeout 1 s).

use std::future::Future;

use locked::{LockError, locked};

use crate::history::Class;

#[locked(key = "{key}", ttl = "2s", timeout = "1s", retry_interval = "50ms")]
async fn lock<F: Future<Output = ()> + Send>(key: &str, body: F) -> Result<(), LockError> {
    body.await;
    Ok(())
}

#[locked(key = "{key}", try_lock, ttl = "2s", retry_interval = "50ms")]
async fn try_lock<F: Future<Output = ()> + Send>(key: &str, body: F) -> Result<(), LockError> {
    body.await;
    Ok(())
}

#[locked(
    key = "{key}",
    read,
    ttl = "2s",
    timeout = "1s",
    retry_interval = "50ms"
)]
async fn read<F: Future<Output = ()> + Send>(key: &str, body: F) -> Result<(), LockError> {
    body.await;
    Ok(())
}

#[locked(
    key = "{key}",
    write,
    ttl = "2s",
    timeout = "1s",
    retry_interval = "50ms"
)]
async fn write<F: Future<Output = ()> + Send>(key: &str, body: F) -> Result<(), LockError> {
    body.await;
    Ok(())
}

/// Calls the annotated fn for `class`; `Ok(false)` when try mode found the key busy.
pub async fn call<F, Fut>(
    class: Class,
    key: &str,
    try_mode: bool,
    body: F,
) -> Result<bool, LockError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()> + Send,
{
    let out = match (class, try_mode) {
        (Class::Lock, false) => lock(key, body()).await,
        (Class::Lock, true) => try_lock(key, body()).await,
        (Class::Read, _) => read(key, body()).await,
        _ => write(key, body()).await,
    };
    match out {
        Ok(()) => Ok(true),
        Err(e) if e.is_busy() => Ok(false),
        Err(e) => Err(e),
    }
}
