// A leader campaigns until it leads: try mode makes no sense with it.
use locked::{locked, LockError};

#[locked(key = "scheduler", leader, try_lock)]
async fn schedule() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
