//! [`LockInfo`]: what an operator sees of one lock, as the store has it now.

use std::time::Duration;

use crate::token::OWNER_MARK;

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
    /// listing, useless to release the lock with; then, for a holder that published an
    /// identity (a leader), `.` and that identity (see [`LockInfo::owner`]).
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
    /// The holder's token on this master, shown as [`LockInfo::holder`] is.
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

/// The shown part of a token: its first 8 characters, then the identity it carries, if
/// any (`3f9a0c1e.host-1:4242`). The rest of the random part, which proves ownership, is
/// never shown.
pub(crate) fn token_prefix(token: &str) -> String {
    let mut shown: String = token.chars().take(8).collect();
    if let Some(at) = token.find(OWNER_MARK) {
        shown.push_str(&token[at..]);
    }
    shown
}

impl LockInfo {
    /// The identity the holder published with its lock, if it did: a leader's name
    /// ([`Election::identity`](crate::Election::identity)), by default its host name and
    /// process id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let locker = locked::Locker::memory();
    /// let _plain = locker.acquire("report", locker.options()).await?;
    /// assert_eq!(locker.inspect("report").await?.owner(), None);
    /// # Ok(()) }
    /// ```
    pub fn owner(&self) -> Option<&str> {
        let holder = self.holder.as_deref()?;
        let at = holder.find(OWNER_MARK)?;
        Some(&holder[at + OWNER_MARK.len_utf8()..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_prefix_shows_eight_characters_and_the_owner() {
        let random = "0123456789abcdef0123456789abcdef";
        assert_eq!(token_prefix(random), "01234567");
        assert_eq!(
            token_prefix(&format!("{random}.host-1:42")),
            "01234567.host-1:42"
        );
        let mut info = LockInfo::free("k");
        info.holder = Some(token_prefix(&format!("{random}.a.b")));
        assert_eq!(info.owner(), Some("a.b"));
    }
}
