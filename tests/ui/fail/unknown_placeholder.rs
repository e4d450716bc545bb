// A placeholder must name a parameter: the error is on the key literal, with a suggestion.
use locked::{locked, LockError};

#[locked(key = "order:{ordr_id}")]
async fn process(order_id: u64) -> Result<u64, LockError> {
    Ok(order_id)
}

fn main() {}
