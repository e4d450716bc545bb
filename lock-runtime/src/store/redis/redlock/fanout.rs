//! One request sent to every Redlock master at once, each bounded by [`MASTER_LIMIT`]:
//! the answers gathered until enough came back, the requests still out left to finish in
//! the background, and the lease those requests own.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::{MASTER_LIMIT, RedlockStore};
use crate::error::BoxError;
use crate::store::Replicas;
use crate::store::redis::batch::Batch;
use crate::store::redis::conn::NodeConn;
use crate::store::redis::error::NodeError;
use crate::store::{Kind, Lease};

/// One master's connection, with the group commit of that master's single-key takes and
/// releases (see `batch.rs`): a connection like any other, whose `batch` the lock's hot
/// calls go through.
#[derive(Clone)]
pub(super) struct MasterConn {
    pub(super) conn: ConnectionManager,
    pub(super) batch: Arc<Batch<ConnectionManager>>,
}

impl ConnectionLike for MasterConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.conn.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.conn.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

impl NodeConn for MasterConn {
    async fn wait_replicas(&mut self, key: &str, r: Replicas) -> redis::RedisResult<i64> {
        self.conn.wait_replicas(key, r).await
    }
}

/// What one master answered.
pub(super) type Answers<T> = Vec<Result<T, BoxError>>;
/// Keys owned by the requests that may outlive the call (see `on_masters`).
type ArcKeys = Arc<[String]>;

/// A lease owned by the per-master requests, which may outlive the call.
#[derive(Clone)]
pub(super) struct ArcLease {
    pub(super) keys: ArcKeys,
    pub(super) token: Arc<str>,
    pub(super) kind: Kind,
}

impl ArcLease {
    pub(super) fn new(lease: Lease<'_>) -> Self {
        Self {
            keys: lease.keys.into(),
            token: lease.token.into(),
            kind: lease.kind,
        }
    }

    pub(super) fn lease(&self) -> Lease<'_> {
        Lease {
            keys: &self.keys,
            token: &self.token,
            kind: self.kind,
        }
    }
}

impl RedlockStore {
    /// Sends `op` to every master at once, each bounded by [`MASTER_LIMIT`], and gathers
    /// the answers until `enough` holds. The rest keep running in the background, so a
    /// lock still lands on every master that answers (it survives as many failures as it
    /// can) while the caller goes on as soon as a quorum has answered.
    pub(super) async fn on_masters<T, F, Fut>(
        &self,
        op: F,
        enough: impl Fn(&Answers<T>) -> bool,
    ) -> Answers<T>
    where
        T: Send + 'static,
        F: Fn(MasterConn) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'static,
    {
        let (answers, rest) = self.gather(op, enough).await;
        if let (false, Ok(runtime)) = (rest.is_empty(), tokio::runtime::Handle::try_current()) {
            let mut rest = rest;
            runtime.spawn(async move { while rest.next().await.is_some() {} });
        }
        answers
    }

    /// Sends `op` to every master, gathers answers until `enough` holds; the requests
    /// still out come back with them.
    pub(super) async fn gather<T, F, Fut>(
        &self,
        op: F,
        enough: impl Fn(&Answers<T>) -> bool,
    ) -> (
        Answers<T>,
        FuturesUnordered<impl Future<Output = Result<T, BoxError>> + Send + 'static>,
    )
    where
        T: Send + 'static,
        F: Fn(MasterConn) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'static,
    {
        let mut pending: FuturesUnordered<_> = self
            .masters
            .iter()
            .zip(&self.batches)
            .map(|(master, batch)| {
                let (master, batch, op) = (master.clone(), batch.clone(), op.clone());
                async move {
                    // Connection errors name the master already; the op's are wrapped here.
                    let call = async {
                        let conn = master.conn().await?;
                        op(MasterConn { conn, batch })
                            .await
                            .map_err(|e| Box::new(NodeError::new(master.url(), e)) as BoxError)
                    };
                    // Connected, the client bounds every command by MASTER_LIMIT itself,
                    // which saves a timer per master per call.
                    if master.bounds_calls_within(MASTER_LIMIT) {
                        return call.await;
                    }
                    match tokio::time::timeout(MASTER_LIMIT, call).await {
                        Ok(answer) => answer,
                        Err(_) => Err(Box::new(NodeError::new(
                            master.url(),
                            format!("no answer within {MASTER_LIMIT:?}"),
                        )) as BoxError),
                    }
                }
            })
            .collect();
        let mut answers = Vec::with_capacity(self.masters.len());
        while let Some(answer) = pending.next().await {
            answers.push(answer);
            if enough(&answers) {
                break;
            }
        }
        (answers, pending)
    }
}
