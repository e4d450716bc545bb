// Without a fallback, a lock failure must leave through `Result<T, E: From<LockError>>`:
// the error is on the return type.
use locked::locked;

#[locked(key = "job")]
async fn job() -> u32 {
    1
}

fn main() {}
