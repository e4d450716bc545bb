// `crate = "..."` for a renamed facade, `keys = [...]`, and every option at once.
use locked as renamed_locks;
use renamed_locks::{LockError, Locker};
use std::sync::LazyLock;

static LOCKER: LazyLock<Locker> = LazyLock::new(Locker::memory);

#[renamed_locks::locked(
    keys = ["account:{from}", "account:{to}"],
    ttl = "2s",
    timeout = "1s",
    retry_interval = "10ms",
    max_hold = "1m",
    renew = true,
    logging = false,
    fencing,
    locker = LOCKER,
    crate = "renamed_locks"
)]
async fn transfer(from: u32, to: u32) -> Result<Option<u64>, LockError> {
    assert!(LOCKER.is_locked(&format!("account:{from}")).await?);
    assert!(LOCKER.is_locked(&format!("account:{to}")).await?);
    Ok(renamed_locks::fencing_token())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert!(transfer(1, 2).await.unwrap().is_some());
    assert!(!LOCKER.is_locked("account:1").await.unwrap());
}
