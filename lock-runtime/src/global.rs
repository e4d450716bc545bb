//! The global locker used by `#[locked]` (the original's static `LockService`).

use std::sync::OnceLock;

use crate::error::LockError;
use crate::locker::Locker;

static GLOBAL: OnceLock<Locker> = OnceLock::new();

/// Sets the global locker, once, before the first `#[locked]` call.
///
/// # Errors
/// [`LockError::Config`] when the global locker was already set (by `init` or by a first
/// use of [`global`]); the first one stays.
///
/// # Examples
///
/// ```
/// locked::init(locked::Locker::memory()).unwrap();
/// assert!(locked::init(locked::Locker::memory()).is_err());
/// ```
pub fn init(locker: Locker) -> Result<(), LockError> {
    GLOBAL.set(locker).map_err(|_| {
        LockError::config(
            "locked::init",
            "the global locker was already set, by an earlier `init` or a first use of it",
            "call `init` once, at start-up, before the first locked call",
        )
    })
}

/// The global locker: the one given to [`init`], or else one built from the environment
/// ([`Locker::from_env`]) on first use.
///
/// # Errors
/// [`LockError::Config`] when the environment is invalid (the next call tries again).
///
/// # Examples
///
/// ```
/// locked::init(locked::Locker::builder().prefix("app:").memory()).unwrap();
/// assert_eq!(locked::global().unwrap().prefix(), "app:");
/// ```
pub fn global() -> Result<&'static Locker, LockError> {
    if let Some(locker) = GLOBAL.get() {
        return Ok(locker);
    }
    let locker = Locker::from_env()?;
    Ok(GLOBAL.get_or_init(|| locker))
}
