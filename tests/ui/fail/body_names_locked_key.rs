// The expansion's own variables are hygienic: the body cannot name them.
use locked::{locked, LockError};

#[locked(key = "job:{n}")]
async fn job(n: u32) -> Result<String, LockError> {
    Ok(__locked_key)
}

fn main() {}
