// The error type must accept a `LockError`: the error is on the return type.
use locked::locked;

#[derive(Debug)]
struct AppError;

#[locked(key = "job")]
async fn job() -> Result<u32, AppError> {
    Ok(1)
}

fn main() {}
