//! [`Locker::from_env`]: the store chosen by `LOCK_STORE`, `REDIS_URL` and `LOCK_PREFIX`,
//! through the store registry (`store/registry.rs`): no store is named here.

use std::sync::Once;

use crate::error::LockError;
use crate::locker::Locker;
use crate::store::registry::{self, Entry, Lookup};

/// The store: `memory`, `redis`, `cluster`, `redlock`, `postgres`, `sqlite`, `mysql` or
/// `etcd`.
///
/// ```
/// let locker = locked::Locker::from_env_with(|v| (v == locked::LOCK_STORE).then(|| "memory".into()));
/// assert!(locker.is_ok());
/// ```
pub const LOCK_STORE: &str = crate::store::registry::LOCK_STORE;
/// The database URL for `LOCK_STORE=postgres` or `LOCK_STORE=mysql`; wins over
/// [`DATABASE_URL`].
///
/// ```
/// assert_eq!(locked::LOCK_DATABASE_URL, "LOCK_DATABASE_URL");
/// ```
pub const LOCK_DATABASE_URL: &str = crate::store::postgres::LOCK_DATABASE_URL;
/// The database URL for `LOCK_STORE=postgres` or `LOCK_STORE=mysql`, as most services
/// already set it.
///
/// ```
/// assert_eq!(locked::DATABASE_URL, "DATABASE_URL");
/// ```
pub const DATABASE_URL: &str = crate::store::postgres::DATABASE_URL;
/// The SQLite file for `LOCK_STORE=sqlite`: a path, or a `sqlite://` URL. Set alone, it
/// implies the SQLite store.
///
/// ```
/// assert_eq!(locked::LOCK_SQLITE_PATH, "LOCK_SQLITE_PATH");
/// ```
pub const LOCK_SQLITE_PATH: &str = crate::store::sqlite::LOCK_SQLITE_PATH;
/// The etcd endpoints for `LOCK_STORE=etcd`, comma-separated, e.g.
/// `http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379`.
///
/// ```
/// assert_eq!(locked::LOCK_ETCD_ENDPOINTS, "LOCK_ETCD_ENDPOINTS");
/// ```
pub const LOCK_ETCD_ENDPOINTS: &str = crate::store::etcd::LOCK_ETCD_ENDPOINTS;
/// The Redis URL, read before [`REDIS_URL`].
///
/// ```
/// let url = |v: &str| (v == locked::LOCK_REDIS_URL).then(|| "redis://127.0.0.1:6379/".into());
/// assert!(locked::Locker::from_env_with(url).is_ok());
/// ```
pub const LOCK_REDIS_URL: &str = crate::store::redis::LOCK_REDIS_URL;
/// The Redis URL.
///
/// ```
/// let url = |v: &str| (v == locked::REDIS_URL).then(|| "not a url".into());
/// assert!(locked::Locker::from_env_with(url).unwrap_err().to_string().contains("REDIS_URL"));
/// ```
pub const REDIS_URL: &str = crate::store::redis::REDIS_URL;
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
    /// - `LOCK_STORE`: `memory`, `redis`, `cluster`, `redlock`, `postgres` (with the
    ///   `postgres` feature), `sqlite` (with the `sqlite` feature), `mysql` (with the
    ///   `mysql` feature) or `etcd` (with the `etcd` feature). Unset: `redis` when a Redis URL is set, else `sqlite` when
    ///   `LOCK_SQLITE_PATH` is, else `memory`.
    /// - `LOCK_REDIS_URL`, else `REDIS_URL`: the server, e.g. `redis://127.0.0.1:6379/0`;
    ///   for `cluster`, comma-separated seed nodes, e.g.
    ///   `redis://10.0.0.1:7000,redis://10.0.0.2:7000`; for `redlock`, the comma-separated
    ///   masters.
    /// - `LOCK_DATABASE_URL`, else `DATABASE_URL`: the PostgreSQL URL for `postgres`, e.g.
    ///   `postgres://app:password@127.0.0.1:5432/app`; `LOCK_DATABASE_LISTEN_URL`: a direct
    ///   one for its release notifications behind PgBouncer (see
    ///   `LockerBuilder::listen_url`); the MySQL/MariaDB URL for `mysql`, e.g.
    ///   `mysql://app:password@127.0.0.1:3306/app` (the lock tables go in its database,
    ///   or the builder's `database`).
    /// - `LOCK_SQLITE_PATH`: the SQLite file for `sqlite`, a path (its directory must
    ///   exist) or a `sqlite://` URL, e.g. `/var/lib/app/locks.db`.
    /// - `LOCK_ETCD_ENDPOINTS`: the etcd endpoints for `etcd`, comma-separated, e.g.
    ///   `http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379` (`https://`
    ///   with the `tls` feature); `LOCK_ETCD_CA`: the path of the PEM file of the CA that
    ///   `https://` members' certificates are checked against (default: the system's
    ///   roots; the builder's `tls_root_certificate` wins); `LOCK_ETCD_CERT` and
    ///   `LOCK_ETCD_KEY`: the PEM files of a client certificate and its key, for members
    ///   that ask for one.
    /// - `LOCK_PREFIX`: the key prefix, default `lock:`.
    ///
    /// With neither `LOCK_STORE` nor a URL set, the store is memory and a warning says once
    /// that locks are then not shared between processes. Empty values count as unset.
    ///
    /// # Errors
    /// [`LockError::Config`] naming the variable: an unknown `LOCK_STORE` (the message
    /// lists the valid ones), a store without its URL, a URL that does not parse, a store
    /// whose cargo feature is off.
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
    /// let err = Locker::from_env_with(|n| (n == "LOCK_STORE").then(|| "zookeeper".to_owned()))
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("LOCK_STORE"));
    /// ```
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LockError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut builder = Locker::builder();
        if let Some(prefix) = lookup(LOCK_PREFIX) {
            builder = builder.prefix(prefix);
        }
        let entry = match get(LOCK_STORE).map(|s| s.trim().to_ascii_lowercase()) {
            Some(name) => registry::find(&name).ok_or_else(|| {
                LockError::config(
                    LOCK_STORE,
                    format!("`{name}` is not a store"),
                    format!("set it to {}", registry::names()),
                )
            })?,
            None => {
                let (entry, fallback) = registry::implied(&get).ok_or_else(|| {
                    LockError::config(
                        LOCK_STORE,
                        "it is unset, and no store's URL is set",
                        format!("set it to {}", registry::names()),
                    )
                })?;
                if fallback {
                    static WARNED: Once = Once::new();
                    WARNED.call_once(crate::telemetry::memory_store_fallback);
                }
                entry
            }
        };
        let store = entry
            .open(builder.settings(), &get)
            .map_err(|e| hint_scheme(entry, &get, e))?;
        Ok(builder.build(store))
    }
}

/// A `Config` error about a URL that another store takes (`postgres://` in `REDIS_URL`)
/// says which `LOCK_STORE` that URL is for.
fn hint_scheme(entry: &Entry, get: Lookup<'_>, e: LockError) -> LockError {
    let LockError::Config { setting, message } = e else {
        return e;
    };
    let other = entry
        .url(get)
        .filter(|(var, url)| *var == setting && !entry.takes_url(url))
        .and_then(|(_, url)| registry::by_scheme(&url));
    match other {
        Some(other) if other.name != entry.name => LockError::Config {
            message: format!(
                "{message}; or, for the `{}` store, set LOCK_STORE={}",
                other.name, other.name
            ),
            setting,
        },
        _ => LockError::Config { setting, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "postgres")]
    use crate::store::postgres::LOCK_DATABASE_LISTEN_URL;

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
        let err = Locker::from_env_with(env(&[(LOCK_STORE, "zookeeper")])).unwrap_err();
        assert!(matches!(&err, LockError::Config { setting, .. } if setting == LOCK_STORE));
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "invalid lock configuration: `LOCK_STORE`: `zookeeper` is not a store; set it to "
            ),
            "{msg}"
        );
    }

    #[test]
    fn from_env_unknown_store_lists_every_registered_store() {
        let msg = Locker::from_env_with(env(&[(LOCK_STORE, "zookeeper")]))
            .unwrap_err()
            .to_string();
        for entry in registry::stores() {
            assert!(msg.contains(&format!("`{}`", entry.name)), "{msg}");
        }
    }

    #[test]
    fn from_env_store_name_is_the_one_lock_store_names() {
        let three = "redis://127.0.0.1:1,redis://127.0.0.1:2,redis://127.0.0.1:3";
        for (store, url, name) in [
            ("memory", three, "memory"),
            (" Redis ", "redis://127.0.0.1:1/", "redis"),
            ("cluster", three, "cluster"),
            ("REDLOCK", three, "redlock"),
        ] {
            let vars = move |n: &str| match n {
                LOCK_STORE => Some(store.to_owned()),
                REDIS_URL => Some(url.to_owned()),
                _ => None,
            };
            assert_eq!(Locker::from_env_with(vars).unwrap().store_name(), name);
        }
        assert_eq!(
            Locker::from_env_with(env(&[])).unwrap().store_name(),
            "memory"
        );
    }

    #[test]
    fn from_env_a_url_of_another_store_says_which_store_it_is_for() {
        let err =
            Locker::from_env_with(env(&[(REDIS_URL, "postgres://app:pw@db/app")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("REDIS_URL"), "{msg}");
        assert!(msg.contains("LOCK_STORE=postgres"), "{msg}");
        assert!(!msg.contains(":pw@"), "{msg}");
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn from_env_postgres_without_its_feature_says_which_feature_to_enable() {
        let err = Locker::from_env_with(env(&[
            (LOCK_STORE, "postgres"),
            (DATABASE_URL, "postgres://app:pw@db/app"),
        ]))
        .unwrap_err();
        assert!(matches!(&err, LockError::Config { setting, .. } if setting == LOCK_STORE));
        assert!(err.to_string().contains("`postgres` feature"), "{err}");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn from_env_postgres_without_url_names_its_variables() {
        let err = Locker::from_env_with(env(&[(LOCK_STORE, "postgres")])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(DATABASE_URL) && msg.contains(LOCK_DATABASE_URL),
            "{msg}"
        );
        let ok = Locker::from_env_with(env(&[
            (LOCK_STORE, "postgres"),
            (DATABASE_URL, "postgresql://app:pw@db/app"),
        ]));
        assert_eq!(ok.unwrap().store_name(), "postgres");
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn from_env_mysql_takes_its_url_from_either_variable_and_hides_the_password() {
        let err = Locker::from_env_with(env(&[(LOCK_STORE, "mysql")])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(DATABASE_URL) && msg.contains("mysql://"),
            "{msg}"
        );
        let by_either = [
            env(&[
                (LOCK_STORE, "mysql"),
                (DATABASE_URL, "mysql://app:secret-pw@db:3306/app"),
            ]),
            env(&[
                (LOCK_STORE, "mysql"),
                (LOCK_DATABASE_URL, "mysql://app:secret-pw@db:3306/app"),
            ]),
        ];
        for vars in by_either {
            let locker = Locker::from_env_with(vars).unwrap();
            assert_eq!(locker.store_name(), "mysql");
            assert!(!format!("{locker:?}").contains("secret-pw"), "{locker:?}");
        }
        let err = Locker::from_env_with(env(&[
            (LOCK_STORE, "mysql"),
            (DATABASE_URL, "mysql://app:secret-pw@db:3306"),
        ]))
        .unwrap_err();
        assert!(matches!(&err, LockError::Config { setting, .. } if setting == DATABASE_URL));
        assert!(!err.to_string().contains("secret-pw"), "{err}");
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn from_env_etcd_takes_its_endpoints_and_names_a_bad_one() {
        let err = Locker::from_env_with(env(&[(LOCK_STORE, "etcd")])).unwrap_err();
        assert!(err.to_string().contains(LOCK_ETCD_ENDPOINTS), "{err}");
        let locker = Locker::from_env_with(env(&[
            (LOCK_STORE, "etcd"),
            (
                LOCK_ETCD_ENDPOINTS,
                "http://a:2379, http://u:secret-pw@b:2379",
            ),
        ]))
        .unwrap();
        assert_eq!(locker.store_name(), "etcd");
        assert!(!format!("{locker:?}").contains("secret-pw"), "{locker:?}");
        let err = Locker::from_env_with(env(&[
            (LOCK_STORE, "etcd"),
            (LOCK_ETCD_ENDPOINTS, "http://a:2379,b:2379"),
        ]))
        .unwrap_err();
        assert!(
            matches!(&err, LockError::Config { setting, .. } if setting == LOCK_ETCD_ENDPOINTS),
            "{err:?}"
        );
        assert!(err.to_string().contains("`b:2379`"), "{err}");
    }

    #[cfg(not(feature = "etcd"))]
    #[test]
    fn from_env_etcd_without_its_feature_says_which_feature_to_enable() {
        let err = Locker::from_env_with(env(&[
            (LOCK_STORE, "etcd"),
            (LOCK_ETCD_ENDPOINTS, "http://a:2379"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("`etcd` feature"), "{err}");
    }

    #[cfg(not(feature = "mysql"))]
    #[test]
    fn from_env_mysql_without_its_feature_says_which_feature_to_enable() {
        let err = Locker::from_env_with(env(&[
            (LOCK_STORE, "mysql"),
            (DATABASE_URL, "mysql://app:pw@db/app"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("`mysql` feature"), "{err}");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn from_env_sqlite_takes_a_path_or_a_url_and_is_implied_by_its_path() {
        let err = Locker::from_env_with(env(&[(LOCK_STORE, "sqlite")])).unwrap_err();
        assert!(err.to_string().contains(LOCK_SQLITE_PATH), "{err}");
        let cases: [&'static [(&str, &str)]; 4] = [
            &[
                (LOCK_STORE, "sqlite"),
                (LOCK_SQLITE_PATH, "/var/lib/app/locks.db"),
            ],
            &[
                (LOCK_STORE, "sqlite"),
                (LOCK_SQLITE_PATH, "sqlite:///var/lib/app/locks.db"),
            ],
            // Implied by its path alone.
            &[(LOCK_SQLITE_PATH, "/var/lib/app/locks.db")],
            &[(LOCK_SQLITE_PATH, "sqlite:///var/lib/app/locks.db")],
        ];
        for vars in cases {
            let locker = Locker::from_env_with(env(vars)).unwrap();
            assert_eq!(locker.store_name(), "sqlite", "{vars:?}");
        }
        let empty = Locker::from_env_with(env(&[
            (LOCK_STORE, "sqlite"),
            (LOCK_SQLITE_PATH, "sqlite://"),
        ]))
        .unwrap_err();
        let msg = empty.to_string();
        assert!(
            msg.contains(LOCK_SQLITE_PATH) && msg.contains("empty"),
            "{msg}"
        );
    }

    #[cfg(not(feature = "sqlite"))]
    #[test]
    fn from_env_sqlite_without_its_feature_says_which_feature_to_enable() {
        let err = Locker::from_env_with(env(&[
            (LOCK_STORE, "sqlite"),
            (LOCK_SQLITE_PATH, "/tmp/locks.db"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("`sqlite` feature"), "{err}");
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
