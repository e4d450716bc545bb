//! [`LockerBuilder`]: a [`Locker`]'s prefix, default options and store settings, and the
//! constructor of each store.

use std::fmt;

use crate::core::Core;
use crate::error::LockError;
use crate::keys::DEFAULT_PREFIX;
use crate::locker::Locker;
use crate::options::LockOptions;
use crate::store::AnyStore;
use crate::store::memory::MemoryStore;
use crate::store::redis::{Cluster, RedlockStore, Single, TlsRoots};
use crate::url::RedactedUrl;

/// Builds a [`Locker`] with a key prefix and default options.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use locked::{LockOptions, Locker};
///
/// let locker = Locker::builder()
///     .prefix("billing:")
///     .defaults(LockOptions::default().ttl(Duration::from_secs(10)))
///     .memory();
/// assert_eq!(locker.prefix(), "billing:");
/// assert_eq!(locker.options().ttl_value(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone)]
pub struct LockerBuilder {
    prefix: String,
    defaults: LockOptions,
    tls_roots: TlsRoots,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    schema: String,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    listen_url: Option<ListenUrl>,
}

/// [`LockerBuilder::listen_url`]'s URL, whose `Debug` hides the password.
#[derive(Clone)]
struct ListenUrl(String);

impl fmt::Debug for ListenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains("://") {
            fmt::Debug::fmt(&RedactedUrl::new(&self.0), f)
        } else {
            // `host=... password=...`: nothing of it is shown.
            f.write_str("\"***\"")
        }
    }
}

impl LockerBuilder {
    /// The defaults: prefix `lock:`, default options, the system's TLS roots, schema
    /// `locked`, no listen URL.
    pub(crate) fn new() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            defaults: LockOptions::default(),
            tls_roots: TlsRoots::default(),
            schema: "locked".to_owned(),
            listen_url: None,
        }
    }

    /// The prefix of every stored key (default `lock:`).
    ///
    /// ```
    /// assert_eq!(locked::Locker::builder().prefix("app:").memory().prefix(), "app:");
    /// ```
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The options used where a call (or `#[locked]` argument) does not set one.
    ///
    /// ```
    /// let opts = locked::LockOptions::default().logging(false);
    /// let locker = locked::Locker::builder().defaults(opts).memory();
    /// assert!(!locker.options().logging_value());
    /// ```
    #[must_use]
    pub fn defaults(mut self, defaults: LockOptions) -> Self {
        self.defaults = defaults;
        self
    }

    /// Trust this certificate authority (PEM) for `rediss://` URLs, instead of the
    /// system's roots: for a Redis whose certificate a private CA signed. Needs the `tls`
    /// feature.
    ///
    /// ```
    /// # let ca_pem = b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".to_vec();
    /// let builder = locked::Locker::builder().tls_root_certificate(ca_pem);
    /// # let _ = builder;
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_roots = TlsRoots(Some(pem.into()));
        self
    }

    /// The PostgreSQL schema that holds the lock tables (default `locked`): letters,
    /// digits and `_`. Needs the `postgres` feature.
    ///
    /// ```
    /// let locker = locked::Locker::builder()
    ///     .schema("app_locks")
    ///     .postgres("postgres://app:secret@127.0.0.1:5432/app");
    /// assert!(locker.is_ok());
    /// assert!(locked::Locker::builder().schema("no-dashes").postgres("postgres://h/db").is_err());
    /// ```
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The URL of a direct (unpooled) PostgreSQL connection for the one connection each
    /// `Locker` listens for releases on (default: the store's URL). Needs the `postgres`
    /// feature; `LOCK_DATABASE_LISTEN_URL` sets it from the environment.
    ///
    /// The store's own statements work through PgBouncer in transaction mode, but a
    /// `LISTEN` there stops hearing once its transaction ends: behind PgBouncer in
    /// transaction mode, waiters fall back to polling every `retry_interval` unless a
    /// direct listen URL is given. (The listener sees a pooler, in any pool mode, and sends
    /// it no `LISTEN`, which would stay on a shared server connection and announce releases
    /// to other clients.) Waiting still works without one, only later after a release.
    ///
    /// # Examples
    ///
    /// ```
    /// // Locks through PgBouncer (port 6432), release notifications straight from PostgreSQL.
    /// let locker = locked::Locker::builder()
    ///     .listen_url("postgres://app:secret@db:5432/app")
    ///     .postgres("postgres://app:secret@pgbouncer:6432/app");
    /// assert!(locker.is_ok());
    /// let bad = locked::Locker::builder().listen_url("mysql://db/app").postgres("postgres://db/app");
    /// assert!(bad.unwrap_err().to_string().contains("listen_url"));
    /// let builder = locked::Locker::builder().listen_url("postgres://app:secret@db:5432/app");
    /// assert!(!format!("{builder:?}").contains("secret"));
    /// ```
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(ListenUrl(url.into()));
        self
    }

    /// A locker on PostgreSQL: locks are rows of a lease table in the builder's schema
    /// (created on first use), fencing tokens come from a sequence, waiters are woken by
    /// `LISTEN`/`NOTIFY`. The URL is checked now; the database is reached on first use.
    /// Needs the `postgres` feature.
    ///
    /// # Errors
    /// [`LockError::Config`] when the URL does not parse or the schema name is not plain.
    ///
    /// ```
    /// let locker = locked::Locker::builder().postgres("postgres://app:secret@db:5432/app");
    /// assert!(locker.is_ok());
    /// assert!(!format!("{:?}", locker.unwrap()).contains("secret"));
    /// ```
    #[cfg(feature = "postgres")]
    pub fn postgres(self, url: &str) -> Result<Locker, LockError> {
        use crate::store::postgres::{Postgres, PostgresStore};
        let mut store = PostgresStore::open(url, &self.schema)
            .map_err(|message| LockError::config("postgres url", message))?;
        if let Some(ListenUrl(listen)) = &self.listen_url {
            store
                .listen_on(listen)
                .map_err(|message| LockError::config("listen_url", message))?;
        }
        Ok(self.build(Postgres::new(store)))
    }

    /// A locker on the in-process memory store.
    ///
    /// ```
    /// let locker = locked::Locker::builder().memory();
    /// assert_eq!(locker.prefix(), "lock:");
    /// ```
    pub fn memory(self) -> Locker {
        self.build(MemoryStore::new())
    }

    /// A locker on one Redis server. The URL is checked now; the connection is opened on
    /// first use.
    ///
    /// # Errors
    /// [`LockError::Config`] when the URL does not parse.
    ///
    /// ```
    /// let locker = locked::Locker::builder().prefix("app:").redis("redis://127.0.0.1:6379/");
    /// assert!(locker.is_ok());
    /// assert!(locked::Locker::builder().redis("http://nope").is_err());
    /// ```
    pub fn redis(self, url: &str) -> Result<Locker, LockError> {
        let store = Single::open(url, &self.tls_roots).map_err(|e| url_error(url, &e))?;
        Ok(self.build(store))
    }

    /// A locker on a Redis Cluster, reached through any of its `seeds` (node URLs such
    /// as `redis://10.0.0.1:7000`); the rest of the cluster is discovered from them. The
    /// URLs are checked now; the cluster is reached on first use.
    ///
    /// # Errors
    /// [`LockError::Config`] when no URL is given or one does not parse.
    ///
    /// ```
    /// let seeds = ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"];
    /// let locker = locked::Locker::builder().prefix("app:").redis_cluster(seeds);
    /// assert!(locker.is_ok());
    /// assert!(locked::Locker::builder().redis_cluster(Vec::<String>::new()).is_err());
    /// ```
    pub fn redis_cluster<I>(self, seeds: I) -> Result<Locker, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let seeds = url_list(seeds);
        if seeds.is_empty() {
            return Err(LockError::config(
                "redis cluster urls",
                "is empty; give at least one node, e.g. `redis://127.0.0.1:7000`",
            ));
        }
        for seed in &seeds {
            crate::store::redis::client(seed, &self.tls_roots).map_err(|e| {
                LockError::config(
                    "redis cluster urls",
                    format!("holds {}", url_message(seed, &e)),
                )
            })?;
        }
        let store = Cluster::open(&seeds, &self.tls_roots).map_err(|e| {
            LockError::config("redis cluster urls", format!("are not usable ({e})"))
        })?;
        Ok(self.build(store))
    }

    /// A locker on N independent Redis masters with Redlock: a lock is held while a
    /// majority (N/2 + 1) holds it, so it keeps working with a minority of masters down.
    /// The URLs are checked now; the masters are reached on first use.
    ///
    /// # Errors
    /// [`LockError::Config`] when no URL is given, one does not parse, one is given twice,
    /// or their number is even (an even number tolerates no more failures than one fewer).
    ///
    /// ```
    /// let masters = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"];
    /// let locker = locked::Locker::builder().prefix("app:").redlock(masters);
    /// assert!(locker.is_ok());
    /// assert!(locked::Locker::builder().redlock(["redis://a:1", "redis://b:1"]).is_err());
    /// ```
    pub fn redlock<I>(self, masters: I) -> Result<Locker, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let store = RedlockStore::open(&url_list(masters), &self.tls_roots)
            .map_err(|message| LockError::config("redlock urls", message))?;
        Ok(self.build(store))
    }

    /// The one line of wiring a store needs: any store converts into [`AnyStore`].
    fn build(self, store: impl Into<AnyStore>) -> Locker {
        Locker {
            inner: Core::new(store.into(), self.prefix, self.defaults),
        }
    }
}

/// URLs as given: trimmed, empty ones left out.
fn url_list<I>(urls: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    urls.into_iter()
        .map(|u| u.as_ref().trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

/// A URL the client refused, as a `Config` error.
fn url_error(url: &str, e: &redis::RedisError) -> LockError {
    LockError::config("redis url", format!("is {}", url_message(url, e)))
}

/// What is wrong with a URL, and what to write (credentials redacted).
fn url_message(url: &str, e: &redis::RedisError) -> String {
    let shown = RedactedUrl::new(url);
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return format!(
            "`{shown}`, a TLS URL, but `locked` was built without TLS ({e}); enable its `tls` \
             feature"
        );
    }
    format!("`{shown}`, which is not a Redis URL ({e}); write `redis://host:6379/0`")
}
