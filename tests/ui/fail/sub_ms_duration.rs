// Redis counts in milliseconds: a duration that is not whole milliseconds is refused.
use locked::{locked, LockError};

#[locked(key = "job", ttl = "1500us")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
