// Without `key` there is nothing to lock: the error shows how to write one.
use locked::{locked, LockError};

#[locked(ttl = "30s")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
