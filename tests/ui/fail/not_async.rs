// `#[locked]` needs an async fn: the error is on the `fn` token and says to write `async fn`.
use locked::{locked, LockError};

#[locked(key = "job")]
fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
