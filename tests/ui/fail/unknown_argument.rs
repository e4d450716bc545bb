// A misspelt argument is refused on its name, with the closest match and the full list.
use locked::{locked, LockError};

#[locked(key = "job", tll = "30s")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
