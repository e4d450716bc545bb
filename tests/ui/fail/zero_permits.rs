// A semaphore of no permits would admit no one: refused on the count.
use locked::{locked, LockError};

#[locked(key = "export:{tenant}", permits = 0)]
async fn export(tenant: u32) -> Result<(), LockError> {
    let _ = tenant;
    Ok(())
}

fn main() {}
