// A zero duration is refused on its literal.
use locked::{locked, LockError};

#[locked(key = "job", timeout = "0s")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
