//! The store type and its `Store` impl.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{OnceCell, oneshot};
use tokio_postgres::types::Type;

use super::batch::{Queue, batches};
use super::listener::Listener;
use super::sql::Statements;
use crate::error::BoxError;
use crate::info::{LockInfo, token_prefix};
use crate::store::{
    Attempt, Caps, Kind, Lease, Release, Replicas, Request, Store, WakeTarget, shared_key,
};

/// The PostgreSQL store.
pub(crate) struct PostgresStore {
    pub(super) pool: Pool,
    /// Where the `LISTEN` connection goes: the store's URL, or a direct one
    /// ([`PostgresStore::listen_on`]) when the pool reaches PostgreSQL through PgBouncer.
    pub(super) listen: tokio_postgres::Config,
    /// `host:port/db`, for errors and `Debug`: no user, no password.
    pub(super) host: String,
    /// The schema's name, and the same quoted for SQL.
    pub(super) schema: String,
    pub(super) quoted: String,
    /// The channel releases are announced on.
    pub(super) channel: String,
    /// Set once the schema exists: whether the store's URL goes through a pooler (see
    /// [`Conn`]).
    ///
    /// [`Conn`]: super::conn::Conn
    pub(super) ready: OnceCell<bool>,
    pub(super) sql: Statements,
    pub(super) listener: Listener,
    /// The group commit's queue ([`super::batch`]).
    pub(super) queue: Mutex<Queue>,
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

    fn product(&self) -> &'static str {
        "PostgreSQL"
    }

    fn caps(&self) -> Caps {
        Caps {
            fencing: true,
            replica_sync: false,
            announces_releases: true,
        }
    }

    fn bounds_calls_within(&self, _limit: Duration) -> bool {
        // A statement on a hung server waits for ever: the engine bounds every call.
        false
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        if batches(req) {
            return self.0.take_batched(req).await;
        }
        self.0.acquire_detached(req).await
    }

    async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        self.0.give_batched(lease).await
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
                    (shared_key(lease.keys)?, Type::TEXT),
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
                &[(shared_key(lease.keys)?, Type::TEXT), (&member, Type::TEXT)],
            )
            .await
            .map_err(fail)?;
        Ok(row.and_then(|r| ms(r.get(0))))
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

pub(super) fn fence(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(super) fn ms(value: Option<i64>) -> Option<Duration> {
    value
        .and_then(|v| u64::try_from(v).ok())
        .map(Duration::from_millis)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_becomes_like() {
        assert_eq!(like("lock:order:*"), "lock:order:%");
        assert_eq!(like("a?b_c%"), "a_b\\_c\\%");
    }
}
