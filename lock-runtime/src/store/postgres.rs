//! `PostgresStore`: locks in a lease table of the service's own PostgreSQL database.
//!
//! ## Why a lease table, not advisory locks
//! Session advisory locks (`pg_advisory_lock`) live on one pooled connection: a cancelled
//! future returns that connection to the pool still holding the lock, PgBouncer in
//! transaction mode breaks them, and they give no fencing token. Here a lock is a row
//! (`key`, `token`, `fence`, `expires_at`) that any connection can take, renew or delete
//! by comparing tokens, that lapses by itself, and whose fence comes from a sequence.
//!
//! ## Behavior
//! - The schema (default `locked`) is created on first use when missing: tables `locks`,
//!   `leases` (semaphore permits, read/write leases), `writers` (waiting writers), the
//!   sequence `fence` and the function `acquire_lease`. `schema.sql` is the same DDL, for
//!   those who run migrations themselves.
//! - Every time is the database server's (`clock_timestamp()`), never the client's.
//! - Acquire is one statement (`INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE expired`);
//!   several keys are one transaction, all or none. Release and extend compare tokens.
//! - An acquisition dropped while its statement runs finishes in a task of its own, which
//!   deletes the row it took: a cancelled caller leaves no row behind.
//! - Releases are announced with `NOTIFY` on one channel per schema (the key as payload);
//!   each `Locker` listens on one connection of its own, opened on first wait (to the
//!   listen URL when one is given). Polling stays the fallback, and a reconnect wakes
//!   every waiter.
//! - Works through PgBouncer in transaction mode. A pooler is recognised on the first
//!   connection: the backend pid announced at startup (`BackendKeyData`) is not the pid of
//!   the backend running its statements, since a pooler answers with a cancel key of its
//!   own. Behind one, every statement is sent unnamed with its parameter types
//!   (`query_typed`: parse, bind and execute in one round trip), so no prepared statement
//!   outlives its transaction; on a direct connection statements stay prepared once per
//!   connection (planned once). The schema is created in one transaction either way.
//! - A `LISTEN` through a pooler would stop hearing once its transaction ends, and stay on
//!   a shared server connection, announcing releases to other clients: the listener that
//!   finds a pooler sends none, and waiters poll every `retry_interval`, unless it has a
//!   direct URL (`listen_url`).
//! - The URL's password never appears in errors, logs or `Debug`.

use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt;
use tokio::sync::{OnceCell, oneshot};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::{Attempt, Caps, Kind, Lease, Release, Replicas, Request, Store, WakeTarget};
use crate::error::{BoxError, StoreError};
use crate::info::{LockInfo, token_prefix};

/// How long connecting (and taking a connection from the pool) may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(2);
/// The pause before the listener connects again.
const LISTEN_RETRY: Duration = Duration::from_millis(500);
/// The pool's size: enough for a busy service's concurrent lock calls.
const POOL_SIZE: usize = 16;

/// The schema's DDL, `{schema}` standing for the schema's quoted name.
const SCHEMA_SQL: &str = include_str!("postgres/schema.sql");

/// The PostgreSQL store.
pub(crate) struct PostgresStore {
    pool: Pool,
    /// Where the `LISTEN` connection goes: the store's URL, or a direct one
    /// ([`PostgresStore::listen_on`]) when the pool reaches PostgreSQL through PgBouncer.
    listen: tokio_postgres::Config,
    /// `host:port/db`, for errors and `Debug`: no user, no password.
    host: String,
    /// The schema's name, and the same quoted for SQL.
    schema: String,
    quoted: String,
    /// The channel releases are announced on.
    channel: String,
    /// Set once the schema exists: whether the store's URL goes through a pooler (see
    /// [`Conn`]).
    ready: OnceCell<bool>,
    sql: Statements,
    listener: Listener,
}

/// The statements, with the schema written in.
struct Statements {
    acquire_one: String,
    /// `acquire_one` for a queued waiter: refused, it marks the lock `contended` (so that
    /// its release is announced) and says how long the holder has left.
    acquire_waiting: String,
    /// After a queued waiter's refused multi-key try: mark the others' locks contended.
    contend: String,
    acquire_many: String,
    release: String,
    /// After a release that deleted less than every key: are the others someone else's?
    foreign: String,
    extend: String,
    remaining: String,
    lease_acquire: String,
    lease_release: String,
    lease_extend: String,
    lease_remaining: String,
    holders: String,
    force_release: String,
    inspect: String,
    scan: String,
}

impl Statements {
    fn new(s: &str) -> Self {
        let live = "expires_at > clock_timestamp()";
        // Whether an acquire may take the row it conflicts with: expired, or ours already.
        let take = "(l.expires_at <= clock_timestamp() OR l.token = excluded.token)";
        let ms = "* interval '1 millisecond'";
        Self {
            acquire_one: format!(
                "INSERT INTO {s}.locks AS l (key, token, fence, expires_at) \
                 SELECT $1, $2, nextval('{s}.fence'), clock_timestamp() + $3::bigint {ms} \
                 WHERE NOT EXISTS (SELECT 1 FROM {s}.leases WHERE key = $1 AND {live}) \
                 ON CONFLICT (key) DO UPDATE SET token = excluded.token, \
                 fence = excluded.fence, expires_at = excluded.expires_at \
                 WHERE l.expires_at <= clock_timestamp() OR l.token = excluded.token \
                 RETURNING fence"
            ),
            acquire_waiting: format!(
                "WITH taken AS (INSERT INTO {s}.locks AS l (key, token, fence, expires_at) \
                 SELECT $1, $2, nextval('{s}.fence'), clock_timestamp() + $3::bigint {ms} \
                 WHERE NOT EXISTS (SELECT 1 FROM {s}.leases WHERE key = $1 AND {live}) \
                 ON CONFLICT (key) DO UPDATE SET \
                 token = CASE WHEN {take} THEN excluded.token ELSE l.token END, \
                 fence = CASE WHEN {take} THEN excluded.fence ELSE l.fence END, \
                 expires_at = CASE WHEN {take} THEN excluded.expires_at ELSE l.expires_at END, \
                 contended = NOT ({take}) \
                 RETURNING token = $2 AS ours, fence, greatest(0, \
                 (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint) AS left_ms) \
                 SELECT coalesce(t.ours, false), t.fence, t.left_ms, \
                 EXISTS (SELECT 1 FROM {s}.leases WHERE key = $1 AND {live}) \
                 FROM (SELECT 1) AS one LEFT JOIN taken AS t ON true"
            ),
            acquire_many: format!(
                "INSERT INTO {s}.locks AS l (key, token, fence, expires_at) \
                 SELECT k, $2, nextval('{s}.fence'), clock_timestamp() + $3::bigint {ms} \
                 FROM unnest($1::text[]) AS k \
                 WHERE NOT EXISTS (SELECT 1 FROM {s}.leases WHERE key = k AND {live}) \
                 ON CONFLICT (key) DO UPDATE SET token = excluded.token, \
                 fence = excluded.fence, expires_at = excluded.expires_at \
                 WHERE l.expires_at <= clock_timestamp() OR l.token = excluded.token \
                 RETURNING fence"
            ),
            contend: format!(
                "UPDATE {s}.locks SET contended = true WHERE key = ANY($1::text[]) \
                 AND token <> $2 AND {live}"
            ),
            // `NOTIFY` serialises committing transactions on a global lock: a release is
            // announced only when a waiter marked the lock contended.
            release: format!(
                "WITH d AS (DELETE FROM {s}.locks WHERE key = ANY($1::text[]) AND token = $2 \
                 RETURNING key, {live} AS live, contended) \
                 SELECT live, CASE WHEN live AND contended THEN pg_notify($3, key)::text END \
                 FROM d"
            ),
            foreign: format!(
                "SELECT count(*) FROM {s}.locks WHERE key = ANY($1::text[]) AND token <> $2 \
                 AND {live}"
            ),
            extend: format!(
                "UPDATE {s}.locks SET expires_at = clock_timestamp() + $3::bigint {ms} \
                 WHERE key = ANY($1::text[]) AND token = $2 AND {live} \
                 AND (SELECT count(*) FROM {s}.locks WHERE key = ANY($1::text[]) \
                 AND token = $2 AND {live}) = cardinality($1::text[])"
            ),
            remaining: format!(
                "SELECT count(*), \
                 min((extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint) \
                 FROM {s}.locks WHERE key = ANY($1::text[]) AND token = $2 AND {live}"
            ),
            lease_acquire: format!("SELECT {s}.acquire_lease($1, $2, $3, $4, $5)"),
            lease_release: format!(
                "WITH d AS (DELETE FROM {s}.leases WHERE key = $1 AND lease = $2 \
                 RETURNING {live} AS live), \
                 w AS (DELETE FROM {s}.writers WHERE key = $1 AND lease = $2 AND $4 \
                 RETURNING 1) \
                 SELECT (SELECT count(*) FROM d WHERE live), (SELECT count(*) FROM w), \
                 pg_notify($3, $1)::text"
            ),
            lease_extend: format!(
                "UPDATE {s}.leases SET expires_at = clock_timestamp() + $3::bigint {ms} \
                 WHERE key = $1 AND lease = $2 AND {live}"
            ),
            lease_remaining: format!(
                "SELECT (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint \
                 FROM {s}.leases WHERE key = $1 AND lease = $2 AND {live}"
            ),
            holders: format!(
                "SELECT (SELECT count(*) FROM {s}.locks WHERE key = $1 AND {live}) \
                 + (SELECT count(*) FROM {s}.leases WHERE key = $1 AND {live})"
            ),
            force_release: format!(
                "WITH a AS (DELETE FROM {s}.locks WHERE key = $1 RETURNING {live} AS live), \
                 b AS (DELETE FROM {s}.leases WHERE key = $1 RETURNING {live} AS live) \
                 SELECT (SELECT count(*) FROM a WHERE live) \
                 + (SELECT count(*) FROM b WHERE live), pg_notify($2, $1)::text"
            ),
            inspect: format!(
                "SELECT token, fence, \
                 (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint, \
                 (SELECT count(*) FROM pg_stat_activity WHERE query = $2) \
                 FROM {s}.locks WHERE key = $1 AND {live} \
                 UNION ALL SELECT NULL, NULL, \
                 (extract(epoch FROM max(expires_at) - clock_timestamp()) * 1000)::bigint, \
                 (SELECT count(*) FROM pg_stat_activity WHERE query = $2) \
                 FROM {s}.leases WHERE key = $1 AND {live} HAVING count(*) > 0"
            ),
            scan: format!(
                "SELECT key FROM {s}.locks WHERE key LIKE $1 AND {live} \
                 UNION SELECT key FROM {s}.leases WHERE key LIKE $1 AND {live} ORDER BY 1"
            ),
        }
    }
}

/// A PostgreSQL error with what the server said, not only "db error".
fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            msg
        }
    }
}

impl PostgresStore {
    /// Checks the URL and the schema name (no I/O).
    pub(crate) fn open(url: &str, schema: &str) -> Result<Self, String> {
        let redacted = crate::url::RedactedUrl::new(url);
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            format!(
                "holds `{redacted}`, which is not a PostgreSQL URL ({e}); write \
                 `postgres://user:password@host:5432/database`"
            )
        })?;
        if !valid_schema(schema) {
            return Err(format!(
                "gives the schema `{schema}`; use a plain name of letters, digits and `_` \
                 (at most 48), e.g. `locked`"
            ));
        }
        config.connect_timeout(CONNECT_LIMIT);
        config.application_name("locked");
        let host = describe(&config);
        let listen = config.clone();
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(crate::core::CALL_LIMIT))
            .create_timeout(Some(CONNECT_LIMIT))
            .recycle_timeout(Some(CONNECT_LIMIT))
            .build()
            .map_err(|e| format!("cannot make a connection pool for `{redacted}`: {e}"))?;
        let quoted = format!("\"{schema}\"");
        Ok(Self {
            pool,
            listen,
            host,
            sql: Statements::new(&quoted),
            channel: format!("{schema}.released"),
            schema: schema.to_owned(),
            quoted,
            ready: OnceCell::new(),
            listener: Listener::default(),
        })
    }

    /// A pooled connection, with the schema created (and the pooler looked for) on first
    /// use.
    async fn client(&self) -> Result<Conn, BoxError> {
        let client = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        let pooled = *self
            .ready
            .get_or_try_init(|| self.first_use(&client))
            .await?;
        Ok(Conn {
            client,
            named: !pooled,
        })
    }

    /// Creates the schema when missing; whether the URL goes through a pooler.
    async fn first_use(&self, client: &deadpool_postgres::Object) -> Result<bool, BoxError> {
        let ddl = SCHEMA_SQL.replace("{schema}", &self.quoted);
        // One at a time across processes: concurrent `CREATE ... IF NOT EXISTS` of one
        // table can still collide. One simple query, one transaction: fine through a
        // transaction-mode pooler.
        let sql = format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('locked schema ' || {})); \
             {ddl} COMMIT;",
            literal(&self.schema)
        );
        if let Err(e) = client.batch_execute(&sql).await {
            // The failed block (a read-only standby, missing rights) would leave this
            // pooled connection in an aborted transaction.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(self.error(&format!("creating the schema `{}`", self.schema), &e));
        }
        behind_pooler(client)
            .await
            .map_err(|e| self.error("connect", &e))
    }

    /// The `LISTEN` connection goes to `url` instead of the store's URL: a direct
    /// connection, when the store's goes through a transaction-mode pooler (PgBouncer),
    /// where a `LISTEN` stops hearing once its transaction ends.
    pub(crate) fn listen_on(&mut self, url: &str) -> Result<(), String> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            format!(
                "holds `{}`, which is not a PostgreSQL URL ({e}); write \
                 `postgres://user:password@host:5432/database` (a direct connection, not \
                 through PgBouncer)",
                crate::url::RedactedUrl::new(url)
            )
        })?;
        config.connect_timeout(CONNECT_LIMIT);
        config.application_name("locked");
        self.listen = config;
        Ok(())
    }

    /// The statement a `Locker` listens with.
    fn listen_sql(&self) -> String {
        format!("LISTEN \"{}\"", self.channel)
    }

    fn error(&self, what: &str, e: &tokio_postgres::Error) -> BoxError {
        StoreError::boxed(
            "PostgreSQL",
            format!("postgres at {}: {what}: {}", self.host, pg_error(e)),
        )
    }

    fn pool_error(&self, e: deadpool_postgres::PoolError) -> BoxError {
        let cause = match &e {
            deadpool_postgres::PoolError::Backend(e) => pg_error(e),
            other => other.to_string(),
        };
        StoreError::boxed("PostgreSQL", format!("postgres at {}: {cause}", self.host))
    }

    /// Takes every key for the token, or none (`Lock` kind).
    async fn acquire_lock(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        let mut client = self.client().await?;
        let ttl = i64::try_from(req.ttl_ms).unwrap_or(i64::MAX);
        let fail = |e: tokio_postgres::Error| self.error("acquire", &e);
        if let ([key], true) = (req.keys, req.waiting) {
            let rows = client
                .query_typed(
                    &self.sql.acquire_waiting,
                    &[
                        (key, Type::TEXT),
                        (&req.token, Type::TEXT),
                        (&ttl, Type::INT8),
                    ],
                )
                .await
                .map_err(fail)?;
            return Ok(match rows.first() {
                Some(row) if row.get::<_, bool>(0) => Attempt::Acquired {
                    fence: req.fencing.then(|| fence(row.get(1))),
                },
                // Leases of a semaphore or read/write lock hold the key: a lock never joins.
                Some(row) if row.get::<_, bool>(3) => Attempt::Conflict {
                    held_as: "shared".to_owned(),
                },
                row => Attempt::Held {
                    remaining: row.and_then(|r| ms(r.get(2))),
                },
            });
        }
        if let [key] = req.keys {
            let rows = client
                .query_typed(
                    &self.sql.acquire_one,
                    &[
                        (key, Type::TEXT),
                        (&req.token, Type::TEXT),
                        (&ttl, Type::INT8),
                    ],
                )
                .await
                .map_err(fail)?;
            return Ok(match rows.first() {
                Some(row) => Attempt::Acquired {
                    fence: req.fencing.then(|| fence(row.get(0))),
                },
                None => Attempt::Held { remaining: None },
            });
        }
        // One transaction, all keys or none: fine through a transaction-mode pooler,
        // which keeps one server connection from `BEGIN` to `COMMIT`.
        let params: [Param<'_>; 3] = [
            (&req.keys, Type::TEXT_ARRAY),
            (&req.token, Type::TEXT),
            (&ttl, Type::INT8),
        ];
        let many = client
            .prepare(&self.sql.acquire_many, &params)
            .await
            .map_err(fail)?;
        let tx = client.client.transaction().await.map_err(fail)?;
        let rows = match &many {
            Some(many) => tx.query(many, &values(&params)).await,
            None => tx.query_typed(&self.sql.acquire_many, &params).await,
        }
        .map_err(fail)?;
        if rows.len() < req.keys.len() {
            tx.rollback().await.map_err(fail)?;
            if req.waiting {
                client
                    .execute_typed(
                        &self.sql.contend,
                        &[(&req.keys, Type::TEXT_ARRAY), (&req.token, Type::TEXT)],
                    )
                    .await
                    .map_err(fail)?;
            }
            return Ok(Attempt::Held { remaining: None });
        }
        tx.commit().await.map_err(fail)?;
        let top = rows.iter().map(|r| r.get::<_, i64>(0)).max().unwrap_or(0);
        Ok(Attempt::Acquired {
            fence: req.fencing.then(|| fence(top)),
        })
    }

    /// Takes a semaphore permit or read/write lease (`acquire_lease` in the schema).
    async fn acquire_lease(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        let [key] = req.keys else {
            return Err("a semaphore or read/write lease is on exactly one key".into());
        };
        let client = self.client().await?;
        let member = req.kind.member(req.token);
        let ttl = i64::try_from(req.ttl_ms).unwrap_or(i64::MAX);
        let limit = i32::try_from(req.kind.limit()).unwrap_or(i32::MAX);
        let intent = i64::try_from(req.intent_ms).unwrap_or(i64::MAX);
        let row = client
            .query_typed_one(
                &self.sql.lease_acquire,
                &[
                    (key, Type::TEXT),
                    (&member, Type::TEXT),
                    (&ttl, Type::INT8),
                    (&limit, Type::INT4),
                    (&intent, Type::INT8),
                ],
            )
            .await
            .map_err(|e| self.error("acquire", &e))?;
        let outcome: String = row.get(0);
        Ok(match outcome.split_once(':') {
            None => Attempt::Acquired { fence: None },
            Some(("held", left)) => Attempt::Held {
                remaining: ms(left.parse().ok()),
            },
            Some((_, held_as)) => Attempt::Conflict {
                held_as: held_as.to_owned(),
            },
        })
    }

    /// An acquisition on a task of its own: if the caller goes away before the answer,
    /// the task deletes what it took, after the statement (so never before it lands).
    async fn acquire_detached(self: &Arc<Self>, req: &Request<'_>) -> Result<Attempt, BoxError> {
        let (keys, token) = (req.keys.to_vec(), req.token.to_owned());
        let req = Owned {
            keys,
            token,
            ttl_ms: req.ttl_ms,
            fencing: req.fencing,
            waiting: req.waiting,
            kind: req.kind,
            intent_ms: req.intent_ms,
        };
        let store = self.clone();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let request = req.request();
            let outcome = if req.kind == Kind::Lock {
                store.acquire_lock(&request).await
            } else {
                store.acquire_lease(&request).await
            };
            // A try that outlives its caller withdraws what it took, and a waiting
            // writer's intent it registered: the caller's own withdrawal may have run
            // before this statement did (issue 16: readers stayed refused for the
            // intent's whole life).
            let taken = matches!(outcome, Ok(Attempt::Acquired { .. }))
                || (req.intent_ms > 0 && outcome.is_ok());
            if tx.send(outcome).is_err() && taken {
                let lease = Lease {
                    keys: &req.keys,
                    token: &req.token,
                    kind: req.kind,
                };
                let _ = store.release(lease).await;
            }
        });
        rx.await.map_err(|_| {
            StoreError::boxed(
                "PostgreSQL",
                format!("postgres at {}: the acquire task ended", self.host),
            )
        })?
    }
}

/// A request's fields, owned, for the detached acquisition.
struct Owned {
    keys: Vec<String>,
    token: String,
    ttl_ms: u64,
    fencing: bool,
    waiting: bool,
    kind: Kind,
    intent_ms: u64,
}

impl Owned {
    fn request(&self) -> Request<'_> {
        Request {
            keys: &self.keys,
            token: &self.token,
            ttl_ms: self.ttl_ms,
            fencing: self.fencing,
            waiting: self.waiting,
            replicas: None,
            kind: self.kind,
            intent_ms: self.intent_ms,
        }
    }
}

fn fence(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn ms(value: Option<i64>) -> Option<Duration> {
    value
        .and_then(|v| u64::try_from(v).ok())
        .map(Duration::from_millis)
}

/// A schema name that needs no escaping: letters, digits and `_`, not starting with a
/// digit, short enough for its channel name (identifiers are at most 63 bytes).
fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// A string literal for SQL (single quotes doubled).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `host:port/db` of a config, without credentials.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
            tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
        })
        .collect();
    format!(
        "{}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("postgres")
    )
}

/// A glob (`*`, `?`) as a `LIKE` pattern.
fn like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The store behind an `Arc`, so that an acquisition can outlive its caller.
pub(crate) struct Postgres(Arc<PostgresStore>);

impl Postgres {
    pub(crate) fn new(store: PostgresStore) -> Self {
        Self(Arc::new(store))
    }
}

impl Store for Postgres {
    fn describe(&self) -> String {
        format!("postgres({}, schema {})", self.0.host, self.0.schema)
    }

    fn caps(&self) -> Caps {
        Caps {
            fencing: true,
            multi_key_same_slot: false,
            sharded_wakeups: false,
            replica_sync: false,
            announces_releases: true,
        }
    }

    fn bounds_calls_within(&self, _limit: Duration) -> bool {
        // A statement on a hung server waits for ever: the engine bounds every call.
        false
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        self.0.acquire_detached(req).await
    }

    async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        self.0.release(lease).await
    }

    async fn extend(
        &self,
        lease: Lease<'_>,
        ttl_ms: u64,
        _replicas: Option<Replicas>,
    ) -> Result<bool, BoxError> {
        let s = &self.0;
        let client = s.client().await?;
        let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
        let fail = |e: tokio_postgres::Error| s.error("extend", &e);
        if lease.kind == Kind::Lock {
            let n = client
                .execute_typed(
                    &s.sql.extend,
                    &[
                        (&lease.keys, Type::TEXT_ARRAY),
                        (&lease.token, Type::TEXT),
                        (&ttl, Type::INT8),
                    ],
                )
                .await
                .map_err(fail)?;
            return Ok(n as usize == lease.keys.len());
        }
        let member = lease.kind.member(lease.token);
        let n = client
            .execute_typed(
                &s.sql.lease_extend,
                &[
                    (one(lease.keys)?, Type::TEXT),
                    (&member, Type::TEXT),
                    (&ttl, Type::INT8),
                ],
            )
            .await
            .map_err(fail)?;
        Ok(n == 1)
    }

    async fn remaining(&self, lease: Lease<'_>) -> Result<Option<Duration>, BoxError> {
        let s = &self.0;
        let client = s.client().await?;
        let fail = |e: tokio_postgres::Error| s.error("remaining", &e);
        if lease.kind == Kind::Lock {
            let row = client
                .query_typed_one(
                    &s.sql.remaining,
                    &[(&lease.keys, Type::TEXT_ARRAY), (&lease.token, Type::TEXT)],
                )
                .await
                .map_err(fail)?;
            let owned: i64 = row.get(0);
            return Ok(if owned as usize == lease.keys.len() {
                ms(row.get(1))
            } else {
                None
            });
        }
        let member = lease.kind.member(lease.token);
        let row = client
            .query_typed_opt(
                &s.sql.lease_remaining,
                &[(one(lease.keys)?, Type::TEXT), (&member, Type::TEXT)],
            )
            .await
            .map_err(fail)?;
        Ok(row.and_then(|r| ms(r.get(0))))
    }

    async fn exists(&self, key: &str) -> Result<bool, BoxError> {
        Ok(self.holders(key).await? > 0)
    }

    async fn holders(&self, key: &str) -> Result<u64, BoxError> {
        let s = &self.0;
        let client = s.client().await?;
        let row = client
            .query_typed_one(&s.sql.holders, &[(&key, Type::TEXT)])
            .await
            .map_err(|e| s.error("count", &e))?;
        Ok(fence(row.get(0)))
    }

    async fn force_release(&self, key: &str) -> Result<bool, BoxError> {
        let s = &self.0;
        let client = s.client().await?;
        let row = client
            .query_typed_one(
                &s.sql.force_release,
                &[(&key, Type::TEXT), (&s.channel, Type::TEXT)],
            )
            .await
            .map_err(|e| s.error("force release", &e))?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    async fn inspect(&self, key: &str) -> Result<LockInfo, BoxError> {
        let s = &self.0;
        let client = s.client().await?;
        let rows = client
            .query_typed(
                &s.sql.inspect,
                &[(&key, Type::TEXT), (&s.listen_sql(), Type::TEXT)],
            )
            .await
            .map_err(|e| s.error("inspect", &e))?;
        Ok(match rows.first() {
            Some(row) => LockInfo {
                held: true,
                holder: row.get::<_, Option<String>>(0).as_deref().map(token_prefix),
                fence: row.get::<_, Option<i64>>(1).map(fence),
                remaining: ms(row.get(2)),
                // The `Locker`s listening for releases: idle sessions whose last
                // statement was this schema's `LISTEN` (of this database role, or any
                // with `pg_read_all_stats`).
                waiters: fence(row.get(3)),
                ..LockInfo::free(key)
            },
            None => LockInfo::free(key),
        })
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, BoxError> {
        let s = &self.0;
        let client = s.client().await?;
        let rows = client
            .query_typed(&s.sql.scan, &[(&like(pattern), Type::TEXT)])
            .await
            .map_err(|e| s.error("scan", &e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn attach(&self, target: Weak<dyn WakeTarget>) {
        self.0.listener.attach(target);
    }

    fn watch(&self, _key: &str) -> Option<oneshot::Receiver<()>> {
        self.0.listener.start(&self.0)
    }

    fn unwatch(&self, _key: &str) {}
}

impl PostgresStore {
    async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| self.error("release", &e);
        if lease.kind == Kind::Lock {
            let rows = client
                .query_typed(
                    &self.sql.release,
                    &[
                        (&lease.keys, Type::TEXT_ARRAY),
                        (&lease.token, Type::TEXT),
                        (&self.channel, Type::TEXT),
                    ],
                )
                .await
                .map_err(fail)?;
            let live = rows.iter().filter(|r| r.get::<_, bool>(0)).count();
            if live == lease.keys.len() {
                return Ok(Release::Released);
            }
            let row = client
                .query_typed_one(
                    &self.sql.foreign,
                    &[(&lease.keys, Type::TEXT_ARRAY), (&lease.token, Type::TEXT)],
                )
                .await
                .map_err(fail)?;
            return Ok(if row.get::<_, i64>(0) > 0 {
                Release::Foreign
            } else {
                Release::Gone
            });
        }
        let member = lease.kind.member(lease.token);
        let withdraw = matches!(lease.kind, Kind::Read | Kind::Write);
        let row = client
            .query_typed_one(
                &self.sql.lease_release,
                &[
                    (one(lease.keys)?, Type::TEXT),
                    (&member, Type::TEXT),
                    (&self.channel, Type::TEXT),
                    (&withdraw, Type::BOOL),
                ],
            )
            .await
            .map_err(fail)?;
        Ok(if row.get::<_, i64>(0) == 1 {
            Release::Released
        } else {
            Release::Gone
        })
    }
}

/// A statement's parameter: its value and its type.
type Param<'a> = (&'a (dyn ToSql + Sync), Type);

fn values<'a>(params: &[Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|(v, _)| *v).collect()
}

/// A pooled connection, and how statements go on it.
///
/// On a direct connection a statement is prepared once per connection (the pool keeps
/// them): a call is one round trip (bind, execute), planned once. Behind a pooler
/// (PgBouncer, found by [`behind_pooler`]) a prepared statement would be gone in the next
/// transaction's server connection, so each statement goes unnamed with its parameter
/// types (`query_typed`: parse, bind, execute in one round trip), leaving nothing behind.
struct Conn {
    client: deadpool_postgres::Object,
    /// Prepared statements: a direct connection.
    named: bool,
}

impl Conn {
    /// `sql` prepared on this connection, or `None` behind a pooler.
    async fn prepare(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<tokio_postgres::Statement>, tokio_postgres::Error> {
        if !self.named {
            return Ok(None);
        }
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        self.client
            .prepare_typed_cached(sql, &types)
            .await
            .map(Some)
    }

    async fn query_typed(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        match self.prepare(sql, params).await? {
            Some(st) => self.client.query(&st, &values(params)).await,
            None => self.client.query_typed(sql, params).await,
        }
    }

    async fn query_typed_one(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Row, tokio_postgres::Error> {
        match self.prepare(sql, params).await? {
            Some(st) => self.client.query_one(&st, &values(params)).await,
            None => self.client.query_typed_one(sql, params).await,
        }
    }

    async fn query_typed_opt(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        match self.prepare(sql, params).await? {
            Some(st) => self.client.query_opt(&st, &values(params)).await,
            None => self.client.query_typed_opt(sql, params).await,
        }
    }

    async fn execute_typed(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64, tokio_postgres::Error> {
        match self.prepare(sql, params).await? {
            Some(st) => self.client.execute(&st, &values(params)).await,
            None => self.client.execute_typed(sql, params).await,
        }
    }
}

/// The one key of a shared lease.
fn one(keys: &[String]) -> Result<&String, BoxError> {
    match keys {
        [key] => Ok(key),
        _ => Err("a semaphore or read/write lease is on exactly one key".into()),
    }
}

/// The `LISTEN` connection of one `Locker`: started on the first wait, kept while the
/// `Locker` lives, reconnected (waking every waiter) when it drops.
#[derive(Default)]
struct Listener {
    state: Arc<Mutex<ListenState>>,
    /// Dropped with the store: ends the task.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

#[derive(Default)]
struct ListenState {
    target: Option<Weak<dyn WakeTarget>>,
    started: bool,
    listening: bool,
    /// The listening connection failed or was lost (an unreachable listen URL, a server
    /// restart): waiters poll meanwhile instead of waiting for it.
    down: bool,
    /// Waiters to tell once `LISTEN` is in place (or once it failed).
    pending: Vec<oneshot::Sender<()>>,
}

fn lock(state: &Mutex<ListenState>) -> std::sync::MutexGuard<'_, ListenState> {
    // Every critical section is a few field writes.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Listener {
    fn attach(&self, target: Weak<dyn WakeTarget>) {
        lock(&self.state).target = Some(target);
    }

    /// Starts the task on first use; a receiver that resolves once `LISTEN` is in place,
    /// or `None` when it is already.
    fn start(&self, store: &PostgresStore) -> Option<oneshot::Receiver<()>> {
        let mut state = lock(&self.state);
        if state.listening || state.down {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        state.pending.push(tx);
        if !state.started {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return Some(rx);
            };
            state.started = true;
            let (stop, stopped) = oneshot::channel();
            *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop);
            let listen = store.listen_sql();
            runtime.spawn(listen_loop(
                store.listen.clone(),
                listen,
                self.state.clone(),
                stopped,
            ));
        }
        Some(rx)
    }
}

/// Listens until the store is dropped: connect, `LISTEN`, turn each notification into a
/// wake-up of its key; on a lost connection, wake everyone (releases may have been
/// missed) and connect again.
async fn listen_loop(
    config: tokio_postgres::Config,
    listen: String,
    state: Arc<Mutex<ListenState>>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let session = listen_once(&config, &listen, &state);
        let ended = tokio::select! {
            _ = &mut stopped => return,
            ended = session => ended,
        };
        let target = {
            let mut s = lock(&state);
            s.listening = false;
            // Until `LISTEN` is back (never, behind a pooler), `start` answers `None`.
            s.down = true;
            // Those waiting for `LISTEN` go on polling rather than wait out their deadline.
            for waiter in s.pending.drain(..) {
                let _ = waiter.send(());
            }
            s.target.clone()
        };
        if let Session::Pooled = ended {
            tracing::info!(
                "locked: the PostgreSQL listening connection goes through a pooler \
                 (PgBouncer), where LISTEN hears nothing: waiters poll every retry_interval; \
                 give `listen_url` (LOCK_DATABASE_LISTEN_URL) a direct URL for prompt wake-ups"
            );
            return;
        }
        match target.and_then(|t| t.upgrade()) {
            Some(t) => t.wake_all(),
            None => return,
        }
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(LISTEN_RETRY) => {}
        }
    }
}

/// How a listening connection ended.
enum Session {
    /// It failed, or was lost: connect again.
    Lost,
    /// It goes through a pooler: no `LISTEN` (see [`behind_pooler`]).
    Pooled,
}

/// One listening connection, until it fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    listen: &str,
    state: &Mutex<ListenState>,
) -> Session {
    let Ok((client, mut connection)) = config.connect(NoTls).await else {
        return Session::Lost;
    };
    let (tx, mut keys) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(n.payload().to_owned());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    let work = async {
        match behind_pooler(&client).await {
            Ok(false) => {}
            Ok(true) => return Session::Pooled,
            Err(_) => return Session::Lost,
        }
        if client.batch_execute(listen).await.is_err() {
            return Session::Lost;
        }
        let target = {
            let mut s = lock(state);
            s.listening = true;
            s.down = false;
            for waiter in s.pending.drain(..) {
                let _ = waiter.send(());
            }
            s.target.clone()
        };
        // A (re)connect may have missed releases: every waiter tries again.
        if let Some(t) = target.as_ref().and_then(Weak::upgrade) {
            t.wake_all();
        }
        while let Some(key) = keys.recv().await {
            match target.as_ref().and_then(Weak::upgrade) {
                Some(t) => t.wake(&key),
                None => return Session::Lost,
            }
        }
        Session::Lost
    };
    tokio::select! {
        () = driver => Session::Lost,
        ended = work => ended,
    }
}

/// Whether `client` reaches PostgreSQL through a pooler (PgBouncer, in any pool mode):
/// the backend pid announced at startup (`BackendKeyData`) is not that of the backend
/// running its statements, since a pooler answers the startup with a cancel key of its
/// own. There a `LISTEN` lands on a shared server connection: in transaction mode it hears
/// nothing once its transaction ends, and it sends the releases announced afterwards to
/// whichever client that server connection serves next.
///
/// When the announced pid cannot be read, the answer is yes: unnamed statements and
/// polling work everywhere, prepared statements and `LISTEN` only on a direct connection.
async fn behind_pooler(client: &tokio_postgres::Client) -> Result<bool, tokio_postgres::Error> {
    let Some(announced) = announced_pid(client).await else {
        return Ok(true);
    };
    let row = client
        .query_typed_one("SELECT pg_backend_pid()", &[])
        .await?;
    Ok(row
        .try_get::<_, i32>(0)
        .map_or(true, |pid| pid != announced))
}

/// The backend pid `client`'s connection announced, read back from the cancel request the
/// driver would send for it: written into memory here, never sent anywhere.
async fn announced_pid(client: &tokio_postgres::Client) -> Option<i32> {
    let mut capture = Capture::default();
    client
        .cancel_token()
        .cancel_query_raw(&mut capture, NoTls)
        .await
        .ok()?;
    // CancelRequest: Int32 length 16, Int32 code 80877102, Int32 pid, Int32 secret key.
    match capture.0.as_slice() {
        [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, a, b, c, d, _, _, _, _] => {
            Some(i32::from_be_bytes([*a, *b, *c, *d]))
        }
        _ => None,
    }
}

/// An in-memory stream that keeps what is written to it and reads as closed (so a TLS
/// request, under `sslmode=require`, fails at once instead of waiting for an answer).
#[derive(Default)]
struct Capture(Vec<u8>);

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let kept = &mut self.get_mut().0;
        if kept.len() < 64 {
            kept.extend_from_slice(buf);
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncRead for Capture {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_checks_url_and_schema_and_hides_the_password() {
        let err = PostgresStore::open("mysql://u:secret@h/db", "locked")
            .err()
            .unwrap_or_default();
        assert!(err.contains("not a PostgreSQL URL"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = PostgresStore::open("postgres://u:secret@h/db", "no-dashes")
            .err()
            .unwrap_or_default();
        assert!(err.contains("schema"), "{err}");
        let store = PostgresStore::open("postgres://u:secret@h:6543/app", "locked").unwrap();
        assert_eq!(store.host, "h:6543/app");
        assert!(!Postgres::new(store).describe().contains("secret"));
    }

    #[test]
    fn glob_becomes_like() {
        assert_eq!(like("lock:order:*"), "lock:order:%");
        assert_eq!(like("a?b_c%"), "a_b\\_c\\%");
    }
}
