//! [`Locker::from_env`]: the store chosen by `LOCK_STORE`, `REDIS_URL` and `LOCK_PREFIX`.

use std::sync::Once;

use crate::error::LockError;
use crate::locker::Locker;

/// The store: `redis`, `cluster`, `redlock`, `postgres` or `memory`.
///
/// ```
/// let locker = locked::Locker::from_env_with(|v| (v == locked::LOCK_STORE).then(|| "memory".into()));
/// assert!(locker.is_ok());
/// ```
pub const LOCK_STORE: &str = "LOCK_STORE";
/// The PostgreSQL URL for `LOCK_STORE=postgres`; wins over [`DATABASE_URL`].
///
/// ```
/// assert_eq!(locked::LOCK_DATABASE_URL, "LOCK_DATABASE_URL");
/// ```
pub const LOCK_DATABASE_URL: &str = "LOCK_DATABASE_URL";
/// The PostgreSQL URL for `LOCK_STORE=postgres`, as most services already set it.
///
/// ```
/// assert_eq!(locked::DATABASE_URL, "DATABASE_URL");
/// ```
pub const DATABASE_URL: &str = "DATABASE_URL";
/// The Redis URL, read before [`REDIS_URL`].
///
/// ```
/// let url = |v: &str| (v == locked::LOCK_REDIS_URL).then(|| "redis://127.0.0.1:6379/".into());
/// assert!(locked::Locker::from_env_with(url).is_ok());
/// ```
pub const LOCK_REDIS_URL: &str = "LOCK_REDIS_URL";
/// The Redis URL.
///
/// ```
/// let url = |v: &str| (v == locked::REDIS_URL).then(|| "not a url".into());
/// assert!(locked::Locker::from_env_with(url).unwrap_err().to_string().contains("REDIS_URL"));
/// ```
pub const REDIS_URL: &str = "REDIS_URL";
/// The key prefix (default `lock:`).
///
/// ```
/// let prefix = |v: &str| (v == locked::LOCK_PREFIX).then(|| "jobs:".into());
/// assert_eq!(locked::Locker::from_env_with(prefix).unwrap().prefix(), "jobs:");
/// ```
pub const LOCK_PREFIX: &str = "LOCK_PREFIX";

impl Locker {
    /// A locker configured from the process environment.
    ///
    /// - `LOCK_STORE`: `redis`, `cluster`, `redlock` or `memory`. Unset: `redis` when a URL
    ///   is set, else `memory`.
    /// - `LOCK_REDIS_URL`, else `REDIS_URL`: the server, e.g. `redis://127.0.0.1:6379/0`;
    ///   for `cluster`, comma-separated seed nodes, e.g.
    ///   `redis://10.0.0.1:7000,redis://10.0.0.2:7000`; for `redlock`, the comma-separated
    ///   masters.
    /// - `LOCK_PREFIX`: the key prefix, default `lock:`.
    ///
    /// With neither `LOCK_STORE` nor a URL set, the store is memory and a warning says once
    /// that locks are then not shared between processes. Empty values count as unset.
    ///
    /// # Errors
    /// [`LockError::Config`] naming the variable: an unknown `LOCK_STORE`, `redis` or
    /// `cluster` without a URL, a URL that does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// // Reads the real environment; see `from_env_with` to pass the variables in.
    /// let locker = locked::Locker::from_env();
    /// # let _ = locker;
    /// ```
    pub fn from_env() -> Result<Self, LockError> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// [`Locker::from_env`] over a lookup function instead of the process environment.
    ///
    /// # Errors
    /// As [`Locker::from_env`].
    ///
    /// # Examples
    ///
    /// ```
    /// use locked::Locker;
    ///
    /// let vars = |name: &str| match name {
    ///     "LOCK_STORE" => Some("memory".to_owned()),
    ///     "LOCK_PREFIX" => Some("app:".to_owned()),
    ///     _ => None,
    /// };
    /// let locker = Locker::from_env_with(vars).unwrap();
    /// assert_eq!(locker.prefix(), "app:");
    ///
    /// let err = Locker::from_env_with(|n| (n == "LOCK_STORE").then(|| "mysql".to_owned()))
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("LOCK_STORE"));
    /// ```
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LockError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let url = get(LOCK_REDIS_URL)
            .map(|u| (LOCK_REDIS_URL, u))
            .or_else(|| get(REDIS_URL).map(|u| (REDIS_URL, u)));
        let mut builder = Locker::builder();
        if let Some(prefix) = lookup(LOCK_PREFIX) {
            builder = builder.prefix(prefix);
        }
        let store = get(LOCK_STORE).map(|s| s.trim().to_ascii_lowercase());
        let named = |var: &'static str| {
            move |e| match e {
                LockError::Config { message, .. } => LockError::config(var, message),
                other => other,
            }
        };
        if store.as_deref() == Some("postgres") {
            return postgres_from_env(builder, &get);
        }
        match (store.as_deref(), url) {
            (Some("memory"), _) => Ok(builder.memory()),
            (Some("redis") | None, Some((var, url))) => builder.redis(&url).map_err(named(var)),
            (Some("cluster"), Some((var, urls))) => {
                builder.redis_cluster(urls.split(',')).map_err(named(var))
            }
            (Some("redlock"), Some((var, urls))) => {
                builder.redlock(urls.split(',')).map_err(named(var))
            }
            (Some(store @ ("redis" | "cluster" | "redlock")), None) => Err(LockError::config(
                LOCK_STORE,
                format!(
                    "is `{store}` but no URL is set; set REDIS_URL (or LOCK_REDIS_URL) to e.g. \
                     `redis://127.0.0.1:6379/0` (comma-separated nodes for `cluster` and \
                     `redlock`)"
                ),
            )),
            (Some(other), _) => Err(LockError::config(
                LOCK_STORE,
                format!(
                    "is `{other}`; expected `redis`, `cluster`, `redlock`, `postgres` or `memory`"
                ),
            )),
            (None, None) => {
                static WARNED: Once = Once::new();
                WARNED.call_once(crate::telemetry::memory_store_fallback);
                Ok(builder.memory())
            }
        }
    }
}

/// A direct (unpooled) PostgreSQL URL for the connection a `Locker` listens for releases
/// on, when `LOCK_DATABASE_URL` goes through PgBouncer in transaction mode (see
/// `LockerBuilder::listen_url`).
const LOCK_DATABASE_LISTEN_URL: &str = "LOCK_DATABASE_LISTEN_URL";

/// `LOCK_STORE=postgres`: the URL from `LOCK_DATABASE_URL`, else `DATABASE_URL`; the
/// listening connection's from `LOCK_DATABASE_LISTEN_URL`, else the same.
fn postgres_from_env(
    builder: crate::LockerBuilder,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Locker, LockError> {
    let Some((var, url)) = get(LOCK_DATABASE_URL)
        .map(|u| (LOCK_DATABASE_URL, u))
        .or_else(|| get(DATABASE_URL).map(|u| (DATABASE_URL, u)))
    else {
        return Err(LockError::config(
            LOCK_STORE,
            "is `postgres` but no URL is set; set DATABASE_URL (or LOCK_DATABASE_URL) to e.g. \
             `postgres://app:password@127.0.0.1:5432/app`",
        ));
    };
    let listen = get(LOCK_DATABASE_LISTEN_URL);
    #[cfg(feature = "postgres")]
    {
        let builder = match listen {
            Some(listen) => builder.listen_url(listen),
            None => builder,
        };
        builder.postgres(&url).map_err(|e| match e {
            LockError::Config { setting, message } if setting == "listen_url" => {
                LockError::config(LOCK_DATABASE_LISTEN_URL, message)
            }
            LockError::Config { message, .. } => LockError::config(var, message),
            other => other,
        })
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = (builder, url, listen);
        Err(LockError::config(
            LOCK_STORE,
            format!(
                "is `postgres` (with {var} set), but this build has no PostgreSQL store; \
                 enable the `postgres` feature of `locked`"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn from_env_nothing_set_is_memory() {
        let locker = Locker::from_env_with(env(&[])).unwrap();
        let shown = format!("{locker:?}");
        assert!(shown.contains("memory"), "{shown}");
        assert!(
            shown.contains("fencing: true"),
            "what the store can do: {shown}"
        );
        assert_eq!(locker.prefix(), "lock:");
    }

    #[test]
    fn from_env_url_alone_is_redis() {
        let locker = Locker::from_env_with(env(&[(REDIS_URL, "redis://127.0.0.1:1/")])).unwrap();
        assert!(format!("{locker:?}").contains("redis(redis://127.0.0.1:1/)"));
    }

    #[test]
    fn from_env_lock_redis_url_wins_over_redis_url() {
        let locker = Locker::from_env_with(env(&[
            (REDIS_URL, "redis://127.0.0.1:1/"),
            (LOCK_REDIS_URL, "redis://127.0.0.1:2/"),
        ]))
        .unwrap();
        assert!(format!("{locker:?}").contains("127.0.0.1:2"));
    }

    #[test]
    fn from_env_unknown_store_names_variable() {
        let err = Locker::from_env_with(env(&[(LOCK_STORE, "mysql")])).unwrap_err();
        assert!(matches!(&err, LockError::Config { setting, .. } if setting == LOCK_STORE));
        assert!(err.to_string().contains("mysql"));
    }

    #[test]
    fn from_env_redis_without_url_names_variable() {
        let err = Locker::from_env_with(env(&[(LOCK_STORE, "redis")])).unwrap_err();
        assert!(err.to_string().contains("REDIS_URL"), "{err}");
    }

    #[test]
    fn from_env_bad_url_names_variable_and_hides_password() {
        let err = Locker::from_env_with(env(&[(REDIS_URL, "http://u:hunter2@x")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("REDIS_URL"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn from_env_cluster_takes_comma_separated_seeds() {
        let locker = Locker::from_env_with(env(&[
            (LOCK_STORE, "cluster"),
            (REDIS_URL, "redis://127.0.0.1:7000, redis://127.0.0.1:7001"),
        ]))
        .unwrap();
        let shown = format!("{locker:?}");
        assert!(shown.contains("redis-cluster("), "{shown}");
        assert!(shown.contains("127.0.0.1:7001"), "{shown}");
    }

    #[test]
    fn from_env_cluster_bad_seed_names_variable_and_hides_password() {
        let err = Locker::from_env_with(env(&[
            (LOCK_STORE, "cluster"),
            (LOCK_REDIS_URL, "redis://a:7000,http://u:hunter2@x"),
        ]))
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("LOCK_REDIS_URL"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn from_env_redlock_takes_comma_separated_masters() {
        let locker = Locker::from_env_with(env(&[
            (LOCK_STORE, "redlock"),
            (
                REDIS_URL,
                "redis://127.0.0.1:1,redis://127.0.0.1:2,redis://127.0.0.1:3",
            ),
        ]))
        .unwrap();
        assert!(format!("{locker:?}").contains("redlock("), "{locker:?}");
        let even = Locker::from_env_with(env(&[
            (LOCK_STORE, "redlock"),
            (REDIS_URL, "redis://127.0.0.1:1,redis://127.0.0.1:2"),
        ]))
        .unwrap_err();
        assert!(even.to_string().contains("REDIS_URL"), "{even}");
        assert!(even.to_string().contains("odd"), "{even}");
    }

    #[test]
    fn from_env_prefix_is_used() {
        let locker = Locker::from_env_with(env(&[(LOCK_PREFIX, "svc:")])).unwrap();
        assert_eq!(locker.prefix(), "svc:");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn from_env_listen_url_is_read_and_a_bad_one_names_its_variable() {
        let ok = Locker::from_env_with(env(&[
            (LOCK_STORE, "postgres"),
            (LOCK_DATABASE_URL, "postgres://app:pw@pgbouncer:6432/app"),
            (LOCK_DATABASE_LISTEN_URL, "postgres://app:pw@db:5432/app"),
        ]));
        assert!(ok.is_ok());
        let err = Locker::from_env_with(env(&[
            (LOCK_STORE, "postgres"),
            (LOCK_DATABASE_URL, "postgres://app:pw@pgbouncer:6432/app"),
            (LOCK_DATABASE_LISTEN_URL, "mysql://app:secret@db/app"),
        ]))
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(LOCK_DATABASE_LISTEN_URL), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
    }
}
