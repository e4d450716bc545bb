// Each of `keys` is checked like `key`.
use locked::{locked, LockError};

#[locked(keys = ["account:{from}", "account:{too}"])]
async fn transfer(from: u64, to: u64) -> Result<(), LockError> {
    let _ = (from, to);
    Ok(())
}

fn main() {}
