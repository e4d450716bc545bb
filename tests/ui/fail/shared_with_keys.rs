// A semaphore or read/write lock is on one key; `keys = [...]` is for exclusive locks.
use locked::{locked, LockError};

#[locked(keys = ["doc:{a}", "doc:{b}"], write)]
async fn merge(a: u64, b: u64) -> Result<(), LockError> {
    let _ = (a, b);
    Ok(())
}

fn main() {}
