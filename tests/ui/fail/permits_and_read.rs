// A key is a semaphore or a read/write lock, not both.
use locked::{locked, LockError};

#[locked(key = "doc:{id}", permits = 3, read)]
async fn view(id: u64) -> Result<(), LockError> {
    let _ = id;
    Ok(())
}

fn main() {}
