//! The connection the node layer drives: any `redis` async connection that can also wait
//! for its node's replicas.

use std::future::Future;

use redis::aio::ConnectionLike;

use super::replicas::wait_cmd;
use crate::store::Replicas;

/// A connection the node layer can drive: any `redis` async connection, plus a way to
/// wait for the replicas of the node that owns `key`.
pub(crate) trait NodeConn: ConnectionLike + Send {
    /// `WAIT count ms` on the node that holds `key`, on the connection that wrote to it.
    fn wait_replicas(
        &mut self,
        key: &str,
        replicas: Replicas,
    ) -> impl Future<Output = redis::RedisResult<i64>> + Send;
}

impl NodeConn for redis::aio::ConnectionManager {
    async fn wait_replicas(&mut self, _key: &str, r: Replicas) -> redis::RedisResult<i64> {
        wait_cmd(r).query_async(self).await
    }
}
