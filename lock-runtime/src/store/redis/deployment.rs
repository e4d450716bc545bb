//! A Redis deployment (one server, or a cluster) and the adapter that makes it a
//! [`Store`]: every call is one node-layer primitive on the node of its keys.

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::oneshot;

use super::batch::{Batch, Op};
use super::conn::NodeConn;
use super::error::NodeError;
use super::feed::{Feed, Source};
use super::protocol::Node;
use crate::error::BoxError;
use crate::info::LockInfo;
use crate::store::{Attempt, Caps, Kind, Lease, Release, Replicas, Request, Store, WakeTarget};

/// A Redis deployment whose every key lives on one node it can reach: one server, or
/// the cluster shard that owns the key. [`Deployed`] turns it into a [`Store`].
pub(crate) trait Deployment: Send + Sync + 'static {
    /// The connection that reaches the node of a key.
    type Conn: NodeConn + Clone + Sync + 'static;
    /// Where the wake-up feed's connection comes from.
    type Source: Source;
    /// How its nodes announce releases and whether commands may be re-sent.
    const NODE: Node;
    /// What an operator checks when it fails (see [`Store::product`]).
    const PRODUCT: &'static str;

    /// What it is, for logs and `Debug`.
    fn describe(&self) -> String;
    /// Whom errors name: the URL(s), without credentials.
    fn host(&self) -> String;
    fn caps(&self) -> Caps;
    fn bounds_calls_within(&self, limit: Duration) -> bool;
    fn check_keys(&self, keys: &[String]) -> Result<(), String>;
    /// The connection, opened on first use.
    fn conn(&self) -> impl Future<Output = Result<Self::Conn, BoxError>> + Send;
    fn feed(&self) -> &Feed<Self::Source>;

    /// The lock keys matching `pattern` on every node that holds keys.
    fn scan(&self, pattern: &str) -> impl Future<Output = Result<Vec<String>, BoxError>> + Send;

    /// The group commit of single-key takes and releases, where it has one (one server).
    fn batch(&self) -> Option<&Batch<Self::Conn>> {
        None
    }
}

/// A [`Store`] on a Redis [`Deployment`]: every call is one node-layer primitive on the
/// node of its keys, its error naming the deployment.
pub(crate) struct Deployed<D>(pub(crate) D);

impl<D: Deployment> Deployed<D> {
    fn wrap(&self, e: BoxError) -> BoxError {
        Box::new(NodeError::new(self.0.host(), e))
    }
}

impl<D: Deployment> Store for Deployed<D> {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn product(&self) -> &'static str {
        D::PRODUCT
    }

    fn caps(&self) -> Caps {
        self.0.caps()
    }

    fn validity(&self, ttl: Duration) -> Duration {
        // One node's clock counts the ttl from when it got the command, which is after
        // the engine sent it: counting from the send time is on the safe side.
        ttl
    }

    fn bounds_calls_within(&self, limit: Duration) -> bool {
        self.0.bounds_calls_within(limit)
    }

    fn check_keys(&self, keys: &[String]) -> Result<(), String> {
        self.0.check_keys(keys)
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        let mut conn = self.0.conn().await?;
        if let (Some(batch), Kind::Lock, [key], false, None) = (
            self.0.batch(),
            req.kind,
            req.keys,
            req.waiting,
            req.replicas,
        ) {
            let (token, ttl_ms, fencing) = (req.token, req.ttl_ms, req.fencing);
            let op = Op::Take {
                key,
                token,
                ttl_ms,
                fencing,
            };
            return match batch.run(conn, op).await {
                Ok(0) => Ok(Attempt::Held { remaining: None }),
                Ok(n) if n < 0 => Err(self.wrap(format!("a take answered {n}").into())),
                Ok(n) => Ok(Attempt::Acquired {
                    fence: fencing.then(|| u64::try_from(n).unwrap_or(0)),
                }),
                Err(e) => Err(self.wrap(e.into())),
            };
        }
        D::NODE
            .try_acquire(&mut conn, req)
            .await
            .map_err(|e| self.wrap(e))
    }

    async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        let mut conn = self.0.conn().await?;
        if let (Some(batch), Kind::Lock, [key]) = (self.0.batch(), lease.kind, lease.keys) {
            let token = lease.token;
            return match batch.run(conn, Op::Give { key, token }).await {
                Ok(1) => Ok(Release::Released),
                Ok(0) => Ok(Release::Foreign),
                Ok(_) => Ok(Release::Gone),
                Err(e) => Err(self.wrap(e.into())),
            };
        }
        D::NODE
            .release(&mut conn, lease)
            .await
            .map_err(|e| self.wrap(e))
    }

    async fn extend(
        &self,
        lease: Lease<'_>,
        ttl_ms: u64,
        replicas: Option<Replicas>,
    ) -> Result<bool, BoxError> {
        let mut conn = self.0.conn().await?;
        D::NODE
            .extend(&mut conn, lease, ttl_ms, replicas)
            .await
            .map_err(|e| self.wrap(e))
    }

    async fn remaining(&self, lease: Lease<'_>) -> Result<Option<Duration>, BoxError> {
        let mut conn = self.0.conn().await?;
        D::NODE
            .remaining(&mut conn, lease)
            .await
            .map_err(|e| self.wrap(e))
    }

    async fn holders(&self, key: &str) -> Result<u64, BoxError> {
        let mut conn = self.0.conn().await?;
        D::NODE
            .holders(&mut conn, key)
            .await
            .map_err(|e| self.wrap(e))
    }

    async fn exists(&self, key: &str) -> Result<bool, BoxError> {
        let mut conn = self.0.conn().await?;
        D::NODE
            .exists(&mut conn, key)
            .await
            .map_err(|e| self.wrap(e))
    }

    async fn force_release(&self, key: &str) -> Result<bool, BoxError> {
        let mut conn = self.0.conn().await?;
        D::NODE
            .force_release(&mut conn, key)
            .await
            .map_err(|e| self.wrap(e))
    }

    async fn inspect(&self, key: &str) -> Result<LockInfo, BoxError> {
        let mut conn = self.0.conn().await?;
        D::NODE
            .inspect(&mut conn, key)
            .await
            .map_err(|e| self.wrap(e))
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, BoxError> {
        self.0.scan(pattern).await.map_err(|e| self.wrap(e))
    }

    fn attach(&self, target: Weak<dyn WakeTarget>) {
        self.0.feed().attach(target);
    }

    fn watch(&self, key: &str) -> Option<oneshot::Receiver<()>> {
        self.0.feed().watch(key)
    }

    fn unwatch(&self, key: &str) {
        self.0.feed().unwatch(key);
    }
}
