// `permits = N`, `read` and `write`, with the other arguments they combine with.
use locked::{locked, LockError, Locker};
use std::sync::LazyLock;

static LOCKER: LazyLock<Locker> = LazyLock::new(Locker::memory);

#[locked(key = "export:{tenant}", permits = 2, ttl = "5s", locker = LOCKER)]
async fn export(tenant: u32) -> Result<u32, LockError> {
    Ok(tenant)
}

#[locked(key = "doc:{id}", read, try_lock, locker = LOCKER)]
async fn view(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked(key = "doc:{id}", write, timeout = "1s", locker = LOCKER)]
async fn edit(id: u64) -> Result<u64, LockError> {
    Ok(id + 1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(export(7).await.unwrap(), 7);
    assert_eq!(view(1).await.unwrap(), 1);
    assert_eq!(edit(1).await.unwrap(), 2);
}
