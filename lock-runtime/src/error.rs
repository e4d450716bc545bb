//! [`LockError`]: every way taking, holding or configuring a lock can fail.

use std::time::Duration;

/// A boxed error source, so that backend types stay out of the public API.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a lock could not be taken, kept, or configured.
///
/// Every message names the key (or the setting) at fault and says what to do. Only
/// [`LockError::Timeout`] contains the phrase `Unable to acquire lock`, which callers of the
/// original `LockService` match on.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use locked::{LockOptions, Locker};
///
/// let locker = Locker::memory();
/// let _held = locker.acquire("report", LockOptions::default()).await.unwrap();
///
/// let opts = LockOptions::default().timeout(Duration::from_millis(20));
/// let err = locker.run("report", opts, || async {}).await.unwrap_err();
/// assert!(err.is_timeout());
/// assert!(err.to_string().contains("Unable to acquire lock"));
/// assert!(err.to_string().contains("lock:report"));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock was held by someone else for the whole `timeout`.
    #[error(
        "Unable to acquire lock `{key}` within {waited:?}: another holder kept it; \
         raise `timeout`, shorten the holder's work, or use try mode"
    )]
    Timeout {
        /// The full key, prefix included.
        key: String,
        /// How long this call waited.
        waited: Duration,
    },
    /// Try mode: the lock was held, so the call returned at once.
    #[error("lock `{key}` is busy: another holder has it; try again later or wait with `run`")]
    Busy {
        /// The full key, prefix included.
        key: String,
    },
    /// The lock expired or passed to another holder while the body ran.
    #[error(
        "lock `{key}` was lost while held ({reason}); the body was stopped: \
         raise `ttl` or keep renewal on"
    )]
    Lost {
        /// The full key, prefix included.
        key: String,
        /// What was observed: expired, taken over, or the store unreachable.
        reason: String,
    },
    /// The store failed or could not be reached; no body ran without its lock.
    #[error(
        "lock `{key}`: the lock store failed ({source}); check that {store} is reachable",
        store = reached(.source)
    )]
    Backend {
        /// The full key, prefix included.
        key: String,
        /// The store's own error.
        #[source]
        source: BoxError,
    },
    /// The configuration is invalid: a bad environment variable, URL or option.
    ///
    /// Shown as "invalid lock configuration: `{setting}`: {message}", e.g.
    /// ``invalid lock configuration: `LOCK_STORE`: `mysql` is not a store; set it to
    /// `memory`, `redis`, `cluster`, `redlock` or `postgres` ``.
    #[error("invalid lock configuration: `{setting}`: {message}")]
    Config {
        /// The setting at fault, e.g. `LOCK_STORE`.
        setting: String,
        /// What is wrong (naming the bad value, where there is one), then what to do: two
        /// sentences of their own, joined by `; `, that do not lean on the setting's name.
        message: String,
    },
    /// The key cannot be used: empty, too long, or made from empty placeholders.
    #[error("invalid lock key `{key}`: {reason}")]
    InvalidKey {
        /// The key as given (truncated when very long).
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// This instance stepped down from leading the key ([`Election::resign`]): the body was
    /// stopped and the key released.
    ///
    /// [`Election::resign`]: crate::Election::resign
    #[error(
        "leadership of `{key}` was resigned (Election::resign): the body was stopped and the \
         key released; campaign again with `lead` if this instance should lead again"
    )]
    Resigned {
        /// The full key, prefix included.
        key: String,
    },
    /// The task asked for a key it already holds, which would wait out its own timeout.
    #[error(
        "lock `{key}` is already held by this task: a nested acquisition would wait for itself; \
         take the lock once, or lock several keys together with `keys = [...]`"
    )]
    Nested {
        /// The full key, prefix included.
        key: String,
    },
}

impl LockError {
    /// True for [`LockError::Timeout`].
    ///
    /// ```
    /// let err = locked::LockError::Busy { key: "lock:a".into() };
    /// assert!(!err.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// True for [`LockError::Resigned`].
    ///
    /// ```
    /// let err = locked::LockError::Resigned { key: "lock:scheduler".into() };
    /// assert!(err.is_resigned());
    /// ```
    pub fn is_resigned(&self) -> bool {
        matches!(self, Self::Resigned { .. })
    }

    /// True for [`LockError::Busy`].
    ///
    /// ```
    /// let err = locked::LockError::Busy { key: "lock:a".into() };
    /// assert!(err.is_busy());
    /// ```
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy { .. })
    }

    /// True for [`LockError::Lost`].
    ///
    /// ```
    /// let err = locked::LockError::Lost { key: "lock:a".into(), reason: "expired".into() };
    /// assert!(err.is_lost());
    /// ```
    pub fn is_lost(&self) -> bool {
        matches!(self, Self::Lost { .. })
    }

    /// True for [`LockError::Backend`].
    ///
    /// ```
    /// let err = locked::LockError::Busy { key: "lock:a".into() };
    /// assert!(!err.is_backend());
    /// ```
    pub fn is_backend(&self) -> bool {
        matches!(self, Self::Backend { .. })
    }

    /// The key the error is about, when it is about one.
    ///
    /// ```
    /// let err = locked::LockError::Busy { key: "lock:a".into() };
    /// assert_eq!(err.key(), Some("lock:a"));
    /// ```
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Timeout { key, .. }
            | Self::Busy { key }
            | Self::Lost { key, .. }
            | Self::Backend { key, .. }
            | Self::InvalidKey { key, .. }
            | Self::Nested { key }
            | Self::Resigned { key } => Some(key),
            Self::Config { .. } => None,
        }
    }

    /// A configuration error: retrying cannot help.
    pub(crate) fn is_config(&self) -> bool {
        matches!(self, Self::Config { .. })
    }

    /// The store's own error of a [`LockError::Backend`], as text.
    pub(crate) fn backend_cause(&self) -> Option<String> {
        match self {
            Self::Backend { source, .. } => Some(source.to_string()),
            _ => None,
        }
    }

    pub(crate) fn backend(key: &str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            key: key.to_owned(),
            source: source.into(),
        }
    }

    /// A [`LockError::Config`] about `setting`: `problem` says what is wrong (naming the
    /// bad value, where there is one) and `fix` what to do; see [`Invalid`].
    pub(crate) fn config(
        setting: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Invalid::new(problem, fix).at(setting)
    }
}

/// What is wrong with a setting and what to do about it: the message of a
/// [`LockError::Config`], built from its parts so that every message has both and neither
/// depends on how the setting's name is worded.
///
/// - `problem`: a sentence of its own that names the bad value where there is one:
///   "`mysql` is not a store", "the list of masters is empty".
/// - `fix`: an instruction: "set it to `memory` or `redis`", "give at least 1".
///
/// The message reads "{problem}; {fix}"; [`LockError::Config`] shows it after the setting
/// and a colon. Code that finds the fault before it knows which setting it came from (a
/// URL's parser) returns an `Invalid` and its caller names the setting with [`Invalid::at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    problem: String,
    fix: String,
}

impl Invalid {
    pub(crate) fn new(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        let (problem, fix) = (problem.into(), fix.into());
        debug_assert!(
            !problem.is_empty() && !fix.is_empty(),
            "a Config message says what is wrong and what to do: {problem:?}; {fix:?}"
        );
        Self { problem, fix }
    }

    /// The [`LockError::Config`] of this fault in `setting`.
    pub(crate) fn at(self, setting: &str) -> LockError {
        LockError::Config {
            setting: setting.to_owned(),
            message: self.to_string(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.problem, self.fix)
    }
}

/// A store's error that says which store it came from, so that [`LockError::Backend`]'s
/// advice names that store ("check that PostgreSQL is reachable"), not another.
#[derive(Debug)]
pub(crate) struct StoreError {
    /// The store, as a reader knows it: `PostgreSQL`, `Redis`.
    store: &'static str,
    /// The store's message, naming its host.
    message: String,
    /// The error it wraps, whose message is `message` (its own source is this one's).
    source: Option<BoxError>,
}

impl StoreError {
    /// A store's own failure, in its words.
    #[allow(
        dead_code,
        reason = "used by the stores behind features (PostgreSQL, SQLite)"
    )]
    pub(crate) fn boxed(store: &'static str, message: impl Into<String>) -> BoxError {
        Box::new(Self {
            store,
            message: message.into(),
            source: None,
        })
    }

    /// `source`, marked as `store`'s (every store call's error passes through here).
    pub(crate) fn wrap(store: &'static str, source: BoxError) -> BoxError {
        if source.downcast_ref::<StoreError>().is_some() {
            return source;
        }
        Box::new(Self {
            store,
            message: source.to_string(),
            source: Some(source),
        })
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(s) => s.source(),
            None => None,
        }
    }
}

/// The store a [`LockError::Backend`] tells to check: the one its [`StoreError`] names,
/// anywhere in the chain of sources, else "the store" (the message itself names it).
fn reached(source: &BoxError) -> &'static str {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(e) = next {
        if let Some(store) = e.downcast_ref::<StoreError>() {
            return store.store;
        }
        next = e.source();
    }
    "the store"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_name_the_store_they_came_from() {
        let pg = LockError::backend(
            "lock:a",
            StoreError::boxed("PostgreSQL", "postgres at h:5432/db: refused"),
        );
        let msg = pg.to_string();
        assert!(msg.contains("check that PostgreSQL is reachable"), "{msg}");
        assert!(msg.contains("postgres at h:5432/db: refused"), "{msg}");
        assert!(!msg.contains("Redis"), "{msg}");
        let other = LockError::backend("lock:a", "redis at h:6379: refused");
        let msg = other.to_string();
        assert!(msg.contains("check that the store is reachable"), "{msg}");
    }

    #[test]
    fn config_messages_are_the_setting_then_the_problem_then_the_fix() {
        let err = LockError::config("LOCK_STORE", "`mysql` is not a store", "set it to `redis`");
        assert_eq!(
            err.to_string(),
            "invalid lock configuration: `LOCK_STORE`: `mysql` is not a store; set it to `redis`"
        );
        let LockError::Config { setting, message } = err else {
            unreachable!()
        };
        assert_eq!(setting, "LOCK_STORE");
        assert_eq!(message, "`mysql` is not a store; set it to `redis`");
        let moved = Invalid::new("`x` is not a URL", "write `redis://h:6379`").at("REDIS_URL");
        assert!(matches!(&moved, LockError::Config { setting, .. } if setting == "REDIS_URL"));
    }
}
