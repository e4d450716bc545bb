// Keys are formatted with `Display` only: a format spec is refused on the literal.
use locked::{locked, LockError};

#[locked(key = "order:{id:?}")]
async fn process(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
