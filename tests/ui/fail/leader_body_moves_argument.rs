// Each term runs a leader's body anew, borrowing the arguments: a body that consumes one
// cannot run twice. Take it by reference, or clone it inside the body.
use locked::{locked, LockError};

#[locked(key = "consumer", leader)]
async fn consume(queue: Vec<String>) -> Result<usize, LockError> {
    let owned = queue;
    Ok(owned.len())
}

fn main() {}
