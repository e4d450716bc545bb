//! [`LockInfo`]: what an operator sees of one lock, as the store has it now.

use std::time::Duration;

/// One lock as the store has it now: who holds it (a short prefix of the owner's token, never
/// the token itself), for how long, its fence counter, and who waits for it.
///
/// Read with [`Locker::inspect`](crate::Locker::inspect) or
/// [`Locker::list`](crate::Locker::list); the `locked` command-line tool shows the same.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// let locker = locked::Locker::memory();
/// let _held = locker.acquire("report", locker.options()).await?;
/// let info = locker.inspect("report").await?;
/// assert!(info.held);
/// assert_eq!(info.key, "lock:report");
/// assert!(info.remaining.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The key as stored, prefix included.
    pub key: String,
    /// Whether it is held now (on Redlock: by a quorum of masters).
    pub held: bool,
    /// The time left before it expires, from the store's clock (`PTTL`).
    pub remaining: Option<Duration>,
    /// The first 8 characters of the holder's token: enough to tell holders apart in a
    /// listing, useless to release the lock with.
    pub holder: Option<String>,
    /// The fence counter's value, when the key was ever taken with fencing.
    pub fence: Option<u64>,
    /// Connections listening for its release (one per `Locker` with waiters on Redis).
    pub waiters: u64,
    /// On Redlock, each master's view, in the configured order; empty on other stores.
    pub masters: Vec<MasterView>,
}

/// One Redlock master's view of a lock.
///
/// ```
/// let view = locked::MasterView::default();
/// assert!(!view.held);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MasterView {
    /// The master's URL, without credentials.
    pub url: String,
    /// Whether this master holds the key.
    pub held: bool,
    /// The time left on this master.
    pub remaining: Option<Duration>,
    /// The first 8 characters of the holder's token on this master.
    pub holder: Option<String>,
    /// Why this master could not be asked, if it could not.
    pub error: Option<String>,
}

impl LockInfo {
    /// A free key.
    pub(crate) fn free(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            held: false,
            remaining: None,
            holder: None,
            fence: None,
            waiters: 0,
            masters: Vec::new(),
        }
    }
}

/// The shown part of a token.
pub(crate) fn token_prefix(token: &str) -> String {
    token.chars().take(8).collect()
}
