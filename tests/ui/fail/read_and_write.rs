// A call holds one side of a read/write lock: `read` and `write` together are refused.
use locked::{locked, LockError};

#[locked(key = "doc:{id}", read, write)]
async fn edit(id: u64) -> Result<(), LockError> {
    let _ = id;
    Ok(())
}

fn main() {}
