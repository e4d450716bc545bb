// The annotated fn still returns a future that must be used.
#![deny(unused_must_use)]
use locked::{locked, LockError};

#[locked(key = "job")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {
    job();
}
