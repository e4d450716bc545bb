// The future stays `Send` (so it can be spawned) and `#[tracing::instrument]` composes,
// above or below `#[locked]`.
use locked::{LockError, locked};

#[tracing::instrument]
#[locked(key = "above:{id}")]
async fn instrumented_above(id: u32) -> Result<u32, LockError> {
    Ok(id)
}

#[locked(key = "below:{id}")]
#[tracing::instrument]
async fn instrumented_below(id: u32) -> Result<u32, LockError> {
    Ok(id)
}

#[tokio::main]
async fn main() {
    locked::init(locked::Locker::memory()).unwrap();
    assert_eq!(tokio::spawn(instrumented_above(1)).await.unwrap().unwrap(), 1);
    assert_eq!(tokio::spawn(instrumented_below(2)).await.unwrap().unwrap(), 2);
}
