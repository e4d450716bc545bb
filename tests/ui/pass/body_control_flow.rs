// `?`, early `return`, inner attributes, docs and `#[must_use]` behave as in a plain fn.
use locked::{LockError, locked};

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Parse(std::num::ParseIntError),
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

impl From<std::num::ParseIntError> for AppError {
    fn from(e: std::num::ParseIntError) -> Self {
        AppError::Parse(e)
    }
}

/// Parses under a lock.
#[must_use]
#[locked(key = "parse:{text}")]
async fn parse(text: &str) -> Result<u32, AppError> {
    #![allow(clippy::needless_return)]
    if text.is_empty() {
        return Ok(0);
    }
    let n: u32 = text.parse()?;
    Ok(n)
}

#[locked(key = "unit", try_lock, fallback = skip)]
async fn unit_with_fallback() {}

async fn skip() {}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    locked::init(locked::Locker::memory()).unwrap();
    assert_eq!(parse("7").await.unwrap(), 7);
    assert!(matches!(parse("x").await, Err(AppError::Parse(_))));
    unit_with_fallback().await;
    let _ = AppError::Lock(LockError::Busy { key: String::new() });
}
