// A duration that does not parse is refused on its literal, with the forms that work.
use locked::{locked, LockError};

#[locked(key = "job", ttl = "30x")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
