// A placeholder's value must implement `Display`: the error lands on the key literal.
use locked::{locked, LockError};

struct OrderId(u64);

#[locked(key = "order:{id}")]
async fn process(id: OrderId) -> Result<u64, LockError> {
    Ok(id.0)
}

fn main() {}
