//! Opening the store, its first connection (the schema created, a pooler looked for),
//! and its errors.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Hook, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use super::conn::Conn;
use super::listener::Listener;
use super::sql::{SCHEMA_SQL, Statements};
use super::store::PostgresStore;
use crate::error::{BoxError, Invalid, LockError, StoreError};

/// How long connecting (and taking a connection from the pool) may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(2);
/// The pool's size: enough for a busy service's concurrent lock calls.
const POOL_SIZE: usize = 16;

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
    /// Checks the URL and the schema name (no I/O): a `Config` error on `postgres url` or
    /// `schema`.
    pub(crate) fn open(url: &str, schema: &str) -> Result<Self, LockError> {
        let redacted = crate::url::RedactedUrl::new(url);
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            LockError::config(
                "postgres url",
                format!("`{redacted}` is not a PostgreSQL URL ({e})"),
                "write `postgres://user:password@host:5432/database`",
            )
        })?;
        if !valid_schema(schema) {
            return Err(LockError::config(
                "schema",
                format!("`{schema}` is not a plain schema name"),
                "use letters, digits and `_`, at most 48, not starting with a digit, e.g. \
                 `locked`",
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
            .wait_timeout(Some(crate::time::CALL_LIMIT))
            .create_timeout(Some(CONNECT_LIMIT))
            .recycle_timeout(Some(CONNECT_LIMIT))
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    generic_plans(client).await;
                    Ok(())
                })
            }))
            .build()
            .map_err(|e| {
                LockError::config(
                    "postgres url",
                    format!("no connection pool can be made for `{redacted}` ({e})"),
                    "report this as a bug of `locked`, with this message",
                )
            })?;
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
            queue: Mutex::default(),
        })
    }

    /// A pooled connection, with the schema created (and the pooler looked for) on first
    /// use.
    pub(super) async fn client(&self) -> Result<Conn, BoxError> {
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
    pub(crate) fn listen_on(&mut self, url: &str) -> Result<(), Invalid> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            Invalid::new(
                format!(
                    "`{}` is not a PostgreSQL URL ({e})",
                    crate::url::RedactedUrl::new(url)
                ),
                "write `postgres://user:password@host:5432/database`, a direct connection, \
                 not through PgBouncer",
            )
        })?;
        config.connect_timeout(CONNECT_LIMIT);
        config.application_name("locked");
        self.listen = config;
        Ok(())
    }

    /// The statement a `Locker` listens with.
    pub(super) fn listen_sql(&self) -> String {
        format!("LISTEN \"{}\"", self.channel)
    }

    pub(super) fn error(&self, what: &str, e: &tokio_postgres::Error) -> BoxError {
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

/// Whether `client` reaches PostgreSQL through a pooler (PgBouncer, in any pool mode):
/// the backend pid announced at startup (`BackendKeyData`) is not that of the backend
/// running its statements, since a pooler answers the startup with a cancel key of its
/// own. There a `LISTEN` lands on a shared server connection: in transaction mode it hears
/// nothing once its transaction ends, and it sends the releases announced afterwards to
/// whichever client that server connection serves next.
///
/// When the announced pid cannot be read, the answer is yes: unnamed statements and
/// polling work everywhere, prepared statements and `LISTEN` only on a direct connection.
/// On a direct connection, every statement's plan is made once, for any parameters
/// (`plan_cache_mode = force_generic_plan`, PostgreSQL 12 and later).
///
/// By default PostgreSQL plans a prepared statement again on every execution as long as
/// its plan for the parameters given looks cheaper than the generic one, which it always
/// did for the store's statements (a key array of one element, say, against the generic
/// plan's guess of ten): planning was about a third of a lock cycle's time on the server
/// (W1 p50 293 -> 206 us, `cargo bench --bench postgres --features postgres -- --bench
/// --w1-only lib`). Every statement the store sends looks rows up by their primary key,
/// for which the generic plan is the plan. Behind a pooler statements go unnamed (planned
/// each time anyway) and a `SET` would outlive the transaction on a server connection
/// other clients share, so nothing is set there. An older server's refusal changes nothing.
async fn generic_plans(client: &tokio_postgres::Client) {
    if let Ok(false) = behind_pooler(client).await {
        let _ = client
            .batch_execute("SET plan_cache_mode = force_generic_plan")
            .await;
    }
}

pub(super) async fn behind_pooler(
    client: &tokio_postgres::Client,
) -> Result<bool, tokio_postgres::Error> {
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
    use crate::store::Store;
    use crate::store::postgres::Postgres;

    #[test]
    fn open_checks_url_and_schema_and_hides_the_password() {
        let shown = |r: Result<PostgresStore, LockError>| r.err().map(|e| e.to_string());
        let err = shown(PostgresStore::open("mysql://u:secret@h/db", "locked")).unwrap();
        assert!(err.contains("`postgres url`: `mysql://"), "{err}");
        assert!(err.contains("not a PostgreSQL URL"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = shown(PostgresStore::open("postgres://u:secret@h/db", "no-dashes")).unwrap();
        assert!(
            err.contains("`schema`: `no-dashes` is not a plain schema name"),
            "{err}"
        );
        let store = PostgresStore::open("postgres://u:secret@h:6543/app", "locked").unwrap();
        assert_eq!(store.host, "h:6543/app");
        assert!(!Postgres::new(store).describe().contains("secret"));
    }
}
