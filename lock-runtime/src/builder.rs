//! [`LockerBuilder`]: a [`Locker`]'s prefix, default options and store settings, and the
//! constructor of each store.

use std::fmt;

use crate::core::Core;
use crate::error::LockError;
use crate::keys::DEFAULT_PREFIX;
use crate::locker::Locker;
use crate::options::LockOptions;
use crate::store::memory::MemoryStore;
use crate::store::redis;
use crate::store::{AnyStore, Settings};

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
#[derive(Clone)]
pub struct LockerBuilder {
    prefix: String,
    defaults: LockOptions,
    /// What the stores' open code needs (TLS roots, schema, listen URL, database).
    settings: Settings,
}

impl fmt::Debug for LockerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Settings {
            tls_roots,
            schema,
            listen_url,
            database,
        } = &self.settings;
        f.debug_struct("LockerBuilder")
            .field("prefix", &self.prefix)
            .field("defaults", &self.defaults)
            .field("tls_roots", tls_roots)
            .field("schema", schema)
            .field("listen_url", listen_url)
            .field("database", database)
            .finish()
    }
}

impl LockerBuilder {
    /// The defaults: prefix `lock:`, default options, the system's TLS roots, schema
    /// `locked`, no listen URL.
    pub(crate) fn new() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            defaults: LockOptions::default(),
            settings: Settings::default(),
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

    /// Trust this certificate authority (PEM) for `rediss://` URLs and `https://` etcd
    /// endpoints, instead of the system's roots: for a Redis or an etcd whose certificates
    /// a private CA signed. Needs the `tls` feature. (From the environment, etcd's CA can
    /// also be a file that `LOCK_ETCD_CA` names; this one wins.)
    ///
    /// ```
    /// # let ca_pem = b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".to_vec();
    /// let builder = locked::Locker::builder().tls_root_certificate(ca_pem);
    /// # let _ = builder;
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.tls_roots = redis::TlsRoots(Some(pem.into()));
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
        self.settings.schema = schema.into();
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
        self.settings.listen_url = Some(crate::store::settings::ListenUrl(url.into()));
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
        let store = crate::store::postgres::open(url, &self.settings)?;
        Ok(self.build(store))
    }

    /// A locker on a SQLite file, shared by the processes of one host: locks are rows of
    /// the file's lease tables (created with the file on first use, in WAL mode), fencing
    /// tokens come from a counter in the file, waiters of this `Locker` are woken on
    /// release and waiters in other processes poll. `path` is a file path or a `sqlite://`
    /// URL; its directory must exist. Nothing is opened yet. Needs the `sqlite` feature.
    ///
    /// # Errors
    /// [`LockError::Config`] when the path is empty.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// let dir = std::env::temp_dir().join(format!("locked-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("locks.db");
    /// let locker = locked::Locker::builder().sqlite(path.to_str().unwrap())?;
    /// let guard = locker.acquire("report", locker.options()).await?;
    /// assert!(locker.is_locked("report").await?);
    /// guard.release().await?;
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sqlite")]
    pub fn sqlite(self, path: &str) -> Result<Locker, LockError> {
        let store = crate::store::sqlite::open(path)?;
        Ok(self.build(store))
    }

    /// The MySQL/MariaDB database that holds the lock tables (default: the URL's
    /// database): letters, digits and `_`. It is created on first use when missing (which
    /// needs the `CREATE` privilege). Needs the `mysql` feature.
    ///
    /// ```
    /// let locker = locked::Locker::builder()
    ///     .database("app_locks")
    ///     .mysql("mysql://app:secret@127.0.0.1:3306/app");
    /// assert!(locker.is_ok());
    /// assert!(locked::Locker::builder().database("no-dashes").mysql("mysql://h/db").is_err());
    /// ```
    #[cfg(feature = "mysql")]
    #[must_use]
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.settings.database = Some(database.into());
        self
    }

    /// A locker on MySQL or MariaDB: locks are rows of a lease table (InnoDB) in the
    /// builder's database, else the URL's, created on first use when missing; every time
    /// is the server's clock; fencing tokens come from a counter row; waiters of this
    /// `Locker` are woken on release, waiters elsewhere poll every `retry_interval`. The
    /// URL is checked now; the server is reached on first use. Needs the `mysql` feature.
    ///
    /// # Errors
    /// [`LockError::Config`] when the URL does not parse, names no database and the
    /// builder none either, or the database name is not plain.
    ///
    /// ```
    /// let locker = locked::Locker::builder().mysql("mysql://app:secret@db:3306/app");
    /// assert!(locker.is_ok());
    /// assert!(!format!("{:?}", locker.unwrap()).contains("secret"));
    /// assert!(locked::Locker::builder().mysql("mysql://app:secret@db:3306").is_err());
    /// ```
    #[cfg(feature = "mysql")]
    pub fn mysql(self, url: &str) -> Result<Locker, LockError> {
        let store = crate::store::mysql::open(url, &self.settings)?;
        Ok(self.build(store))
    }

    /// A locker on an etcd cluster at `endpoints` (`http://host:2379` each, or all
    /// `https://host:2379` with the `tls` feature, checked against
    /// [`tls_root_certificate`](Self::tls_root_certificate) or else the system's roots): a
    /// hold is an etcd lease of its ttl rounded up to whole seconds, renewed by keep-alive;
    /// fencing tokens are the holder key's create revision; a release wakes waiters of
    /// every `Locker` through a watch. The endpoints are checked now; the cluster is
    /// reached on first use. Needs the `etcd` feature.
    ///
    /// # Errors
    /// [`LockError::Config`] when the list is empty, an endpoint is not `http://host:port`
    /// or `https://host:port` (it is named, without its password), the list mixes the two,
    /// an endpoint is `https://` in a build without `tls`, or the CA given is not PEM.
    ///
    /// ```
    /// let locker = locked::Locker::builder().etcd(&["http://10.0.0.1:2379", "http://10.0.0.2:2379"]);
    /// assert!(locker.is_ok());
    /// assert!(locked::Locker::builder().etcd(&["10.0.0.1:2379"]).is_err());
    /// ```
    #[cfg(feature = "etcd")]
    pub fn etcd<S: AsRef<str>>(self, endpoints: &[S]) -> Result<Locker, LockError> {
        let store = crate::store::etcd::open(endpoints, &self.settings)?;
        Ok(self.build(store))
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
        let store = redis::open_single(url, &self.settings)?;
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
        let store = redis::open_cluster(seeds, &self.settings)?;
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
        let store = redis::open_redlock(masters, &self.settings)?;
        Ok(self.build(store))
    }

    /// The store settings every store's open code reads (`Locker::from_env_with` passes
    /// them to the registry's entry).
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The one line of wiring a store needs: any store converts into [`AnyStore`].
    pub(crate) fn build(self, store: impl Into<AnyStore>) -> Locker {
        Locker {
            inner: Core::new(store.into(), self.prefix, self.defaults),
        }
    }
}

/// The constructors: a builder, or a store with the defaults.
impl Locker {
    /// A builder for a prefix and default options.
    ///
    /// ```
    /// let locker = locked::Locker::builder().prefix("jobs:").memory();
    /// assert_eq!(locker.prefix(), "jobs:");
    /// ```
    pub fn builder() -> LockerBuilder {
        LockerBuilder::new()
    }

    /// A locker on the in-process memory store: locks exclude callers in this process only.
    ///
    /// ```
    /// let locker = locked::Locker::memory();
    /// assert_eq!(locker.prefix(), "lock:");
    /// ```
    pub fn memory() -> Self {
        Self::builder().memory()
    }

    /// A locker on one Redis server, e.g. `redis://127.0.0.1:6379/0`.
    ///
    /// # Errors
    /// [`LockError::Config`] when the URL does not parse. Nothing is connected yet.
    ///
    /// ```
    /// let locker = locked::Locker::redis("redis://127.0.0.1:6379/0").unwrap();
    /// assert_eq!(locker.prefix(), "lock:");
    /// ```
    pub fn redis(url: &str) -> Result<Self, LockError> {
        Self::builder().redis(url)
    }

    /// A locker on PostgreSQL, in the schema `locked` (see [`LockerBuilder::postgres`]).
    /// Needs the `postgres` feature.
    ///
    /// # Errors
    /// [`LockError::Config`] when the URL does not parse. Nothing is connected yet.
    ///
    /// ```
    /// let locker = locked::Locker::postgres("postgres://app:secret@127.0.0.1:5432/app").unwrap();
    /// assert_eq!(locker.prefix(), "lock:");
    /// ```
    #[cfg(feature = "postgres")]
    pub fn postgres(url: &str) -> Result<Self, LockError> {
        Self::builder().postgres(url)
    }

    /// A locker on a SQLite file shared by the processes of one host (see
    /// [`LockerBuilder::sqlite`]). Needs the `sqlite` feature.
    ///
    /// # Errors
    /// [`LockError::Config`] when the path is empty. Nothing is opened yet.
    ///
    /// ```
    /// let locker = locked::Locker::sqlite("/var/lib/app/locks.db").unwrap();
    /// assert_eq!(locker.store_name(), "sqlite");
    /// ```
    #[cfg(feature = "sqlite")]
    pub fn sqlite(path: &str) -> Result<Self, LockError> {
        Self::builder().sqlite(path)
    }

    /// A locker on MySQL or MariaDB, its tables in the URL's database (see
    /// [`LockerBuilder::mysql`]). Needs the `mysql` feature.
    ///
    /// # Errors
    /// [`LockError::Config`] when the URL does not parse or names no database.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// // no_run: needs a MySQL or MariaDB server.
    /// let locker = locked::Locker::mysql("mysql://app:secret@127.0.0.1:3306/app")?;
    /// assert_eq!(locker.store_name(), "mysql");
    /// let done = locker.run("nightly-report", locker.options(), || async { 42 }).await?;
    /// assert_eq!(done, 42);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "mysql")]
    pub fn mysql(url: &str) -> Result<Self, LockError> {
        Self::builder().mysql(url)
    }

    /// A locker on an etcd cluster (see [`LockerBuilder::etcd`]). Needs the `etcd` feature.
    ///
    /// # Errors
    /// [`LockError::Config`] when an endpoint is not `http://host:port` (or
    /// `https://host:port`, with the `tls` feature).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
    /// // no_run: needs an etcd cluster.
    /// let locker = locked::Locker::etcd(&["http://127.0.0.1:2379", "http://127.0.0.1:22379"])?;
    /// assert_eq!(locker.store_name(), "etcd");
    /// let done = locker.run("nightly-report", locker.options(), || async { 42 }).await?;
    /// assert_eq!(done, 42);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "etcd")]
    pub fn etcd<S: AsRef<str>>(endpoints: &[S]) -> Result<Self, LockError> {
        Self::builder().etcd(endpoints)
    }

    /// A locker on N independent Redis masters with Redlock (`&[&str]`, `&[String]`, or
    /// any iterable of `AsRef<str>`).
    ///
    /// A lock is granted when a majority of masters took it within its validity (`ttl`
    /// minus the time the requests took, minus a clock-drift allowance of 1% of `ttl` +
    /// 2 ms), and renewal keeps it on a majority. No fencing tokens (they cannot strictly
    /// increase across independent masters): asking for one is a `Config` error at the
    /// call. See the README's Safety section for what Redlock does and does not promise.
    ///
    /// # Errors
    /// [`LockError::Config`] when no URL is given, one does not parse, one is given twice,
    /// or their number is even. Nothing is connected yet.
    ///
    /// ```
    /// let locker = locked::Locker::redlock(&["redis://10.0.0.1:6379", "redis://10.0.0.2:6379",
    ///     "redis://10.0.0.3:6379"]).unwrap();
    /// assert_eq!(locker.prefix(), "lock:");
    /// ```
    pub fn redlock<I>(masters: I) -> Result<Self, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::builder().redlock(masters)
    }

    /// A locker on a Redis Cluster, reached through any of its `seeds`.
    ///
    /// Same attribute, API and storage format as on one server. Several keys locked
    /// together must share a hash slot (give them a common `{tag}`); releases wake waiters
    /// through sharded pub/sub.
    ///
    /// # Errors
    /// [`LockError::Config`] when no URL is given or one does not parse. Nothing is
    /// connected yet.
    ///
    /// ```
    /// let locker = locked::Locker::redis_cluster(["redis://127.0.0.1:7000"]).unwrap();
    /// assert_eq!(locker.prefix(), "lock:");
    /// ```
    pub fn redis_cluster<I>(seeds: I) -> Result<Self, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::builder().redis_cluster(seeds)
    }
}
