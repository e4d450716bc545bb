// One instance leads a key: leadership is not a semaphore or a read lock.
use locked::{locked, LockError};

#[locked(key = "scheduler", permits = 2, leader)]
async fn schedule() -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "reports", leader, read)]
async fn report() -> Result<(), LockError> {
    Ok(())
}

#[locked(keys = ["a", "b"], leader)]
async fn both() -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "relay", leader, renew = false)]
async fn relay() -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "fenced", leader, fencing)]
async fn fenced() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
