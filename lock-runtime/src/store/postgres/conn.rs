//! A pooled connection, and how statements go on it: prepared, or unnamed behind a pooler.

use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

/// A statement's parameter: its value and its type.
pub(super) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

pub(super) fn values<'a>(params: &[Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|(v, _)| *v).collect()
}

/// A pooled connection, and how statements go on it.
///
/// On a direct connection a statement is prepared once per connection (the pool keeps
/// them): a call is one round trip (bind, execute), planned once. Behind a pooler
/// (PgBouncer, found by [`behind_pooler`]) a prepared statement would be gone in the next
/// transaction's server connection, so each statement goes unnamed with its parameter
/// types (`query_typed`: parse, bind, execute in one round trip), leaving nothing behind.
///
/// [`behind_pooler`]: super::setup::behind_pooler
pub(super) struct Conn {
    pub(super) client: deadpool_postgres::Object,
    /// Prepared statements: a direct connection.
    pub(super) named: bool,
}

impl Conn {
    /// `sql` prepared on this connection, or `None` behind a pooler.
    pub(super) async fn prepare(
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

    pub(super) async fn query_typed(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        match self.prepare(sql, params).await? {
            Some(st) => self.client.query(&st, &values(params)).await,
            None => self.client.query_typed(sql, params).await,
        }
    }

    pub(super) async fn query_typed_one(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Row, tokio_postgres::Error> {
        match self.prepare(sql, params).await? {
            Some(st) => self.client.query_one(&st, &values(params)).await,
            None => self.client.query_typed_one(sql, params).await,
        }
    }

    pub(super) async fn query_typed_opt(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        match self.prepare(sql, params).await? {
            Some(st) => self.client.query_opt(&st, &values(params)).await,
            None => self.client.query_typed_opt(sql, params).await,
        }
    }

    pub(super) async fn execute_typed(
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
