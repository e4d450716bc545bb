//! Opening the store: the URL checked, the pool made, the tables created on first use, and
//! the errors, which name the host and never the password.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

use super::sql::SCHEMA_SQL;
use crate::error::{BoxError, LockError, StoreError};

/// How long connecting (and taking a connection from the pool) may take.
pub(super) const CONNECT_LIMIT: Duration = Duration::from_secs(2);
/// The pool's size: enough for a busy service's concurrent lock calls.
pub(super) const POOL_SIZE: usize = 16;
/// How long a pooled connection may stay idle before it is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(300);
/// How long a statement waits for another transaction's row lock before the server
/// answers 1205 (the call retries within its own time).
const LOCK_WAIT_S: u32 = 2;

/// The four tables, as `information_schema` names them.
const TABLES: [&str; 4] = [
    "locked_locks",
    "locked_leases",
    "locked_writers",
    "locked_fence",
];

/// What the URL and the builder say: the pool, the host (for errors) and the database.
pub(super) struct Opened {
    pub(super) pool: Pool,
    pub(super) host: String,
    pub(super) database: String,
}

/// Checks the URL and the database name (no I/O); a `Config` error on `mysql url` or
/// `database`.
pub(super) fn open(url: &str, database: Option<&str>) -> Result<Opened, LockError> {
    let redacted = crate::url::RedactedUrl::new(url);
    let opts = Opts::from_url(url.trim()).map_err(|e| {
        LockError::config(
            "mysql url",
            format!("`{redacted}` is not a MySQL URL ({e})"),
            "write `mysql://user:password@host:3306/database`",
        )
    })?;
    let database = match (database, opts.db_name()) {
        (Some(db), _) => db.to_owned(),
        (None, Some(db)) if !db.is_empty() => db.to_owned(),
        (None, _) => {
            return Err(LockError::config(
                "mysql url",
                format!("`{redacted}` names no database for the lock tables"),
                "end the URL with the database, e.g. `mysql://app:password@db:3306/app`, or \
                 name one with `LockerBuilder::database`",
            ));
        }
    };
    if !valid_name(&database) {
        return Err(LockError::config(
            "database",
            format!("`{database}` is not a plain database name"),
            "use letters, digits and `_`, at most 64, e.g. `app`",
        ));
    }
    let host = format!("{}:{}/{database}", opts.ip_or_hostname(), opts.tcp_port());
    let constraints = PoolConstraints::new(0, POOL_SIZE).ok_or_else(|| {
        LockError::config(
            "mysql url",
            "no connection pool can be made",
            "report this as a bug of `locked`, with this message",
        )
    })?;
    let builder = OptsBuilder::from_opts(opts)
        // Every statement names the database: sessions need no default one, and so the
        // database can be created when it is missing.
        .db_name(None::<String>)
        .pool_opts(
            PoolOpts::new()
                .with_constraints(constraints)
                // Idle connections stay (mysql_async closes those above the minimum, 0,
                // after this long idle): a call never waits for a new connection while
                // one it returned is still on its way back to the pool.
                .with_inactive_connection_ttl(IDLE_LIMIT)
                // Sessions keep their settings and prepared statements between calls; a
                // call never leaves a transaction open (each runs to its end, `store::finish`).
                .with_reset_connection(false),
        )
        // Through the TCP address given, never a local socket found on the server (a
        // proxy or a firewall in between means what it says).
        .prefer_socket(false)
        .stmt_cache_size(64)
        .setup(vec![
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_owned(),
            format!("SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_S}"),
        ]);
    Ok(Opened {
        pool: Pool::new(builder),
        host,
        database,
    })
}

/// A database name that needs no escaping.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Creates the database and the tables when missing.
pub(super) async fn create_tables(
    conn: &mut Conn,
    database: &str,
) -> Result<(), mysql_async::Error> {
    let present: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME IN (?, ?, ?, ?)",
            (database, TABLES[0], TABLES[1], TABLES[2], TABLES[3]),
        )
        .await?;
    if present == Some(TABLES.len() as i64) {
        return Ok(());
    }
    let schemata: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (database,),
        )
        .await?;
    if schemata == Some(0) {
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{database}`"))
            .await?;
    }
    let ddl = SCHEMA_SQL.replace("{db}", &format!("`{database}`"));
    for statement in statements(&ddl) {
        conn.query_drop(statement).await?;
    }
    Ok(())
}

/// The statements of a script: split at `;`, comments left out.
fn statements(script: &str) -> Vec<String> {
    let text: String = script
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether a failure is a deadlock (1213) or a lock wait timeout (1205): the statement
/// (or its transaction) was rolled back, and the call may try again.
pub(super) fn retriable(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1213 || s.code == 1205)
}

/// Whether a failure is the connection's (closed, reset, broken), not the statement's.
pub(super) fn broken(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(d) => matches!(
            d,
            mysql_async::DriverError::ConnectionClosed
                | mysql_async::DriverError::PacketOutOfOrder
                | mysql_async::DriverError::UnexpectedPacket { .. }
        ),
        // The server closed an idle session (`wait_timeout`) or is going down.
        mysql_async::Error::Server(s) => matches!(s.code, 1053 | 2006 | 2013 | 4031),
        _ => false,
    }
}

/// What the server or the driver said, and what to do about it.
pub(super) fn cause(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => {
            let fix = match s.code {
                1045 | 1044 | 1698 => "; check the user and password in the URL",
                1290 | 1836 => {
                    "; the server is read-only (`read_only`): point the URL at the primary"
                }
                1049 => "; the database does not exist and could not be created",
                1142 | 1227 => "; the user lacks a privilege on the lock tables",
                _ => "",
            };
            format!("ERROR {} ({}): {}{fix}", s.code, s.state, s.message)
        }
        mysql_async::Error::Io(io) => {
            format!("{io}; check that the MySQL server is running and reachable")
        }
        mysql_async::Error::Other(inner) => inner.to_string(),
        other => {
            let mut msg = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            msg
        }
    }
}

/// A failure of `what` on the server at `host`.
pub(super) fn failed(host: &str, what: &str, cause: &str) -> BoxError {
    StoreError::boxed("MySQL", format!("mysql at {host}: {what}: {cause}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_checks_url_and_database_and_hides_the_password() {
        let shown = |r: Result<Opened, LockError>| r.err().map(|e| e.to_string());
        let err = shown(open("postgres://u:secret@h/db", None)).unwrap();
        assert!(err.contains("not a MySQL URL"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = shown(open("mysql://u:secret@h:3306", None)).unwrap();
        assert!(err.contains("names no database"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = shown(open("mysql://u:secret@h/db", Some("no-dashes"))).unwrap();
        assert!(err.contains("`database`: `no-dashes`"), "{err}");
        let opened = open("mysql://u:secret@h:3307/app", None).unwrap();
        assert_eq!(opened.host, "h:3307/app");
        assert_eq!(
            open("mysql://u:pw@h/app", Some("locks")).unwrap().database,
            "locks"
        );
    }

    #[test]
    fn the_schema_splits_into_its_statements() {
        let all = statements(SCHEMA_SQL);
        assert_eq!(all.len(), 5, "{all:?}");
        assert!(all.iter().all(|s| !s.contains("--")));
    }
}
