// An argument given twice is refused on the second one.
use locked::{locked, LockError};

#[locked(key = "job", ttl = "30s", ttl = "1m")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
