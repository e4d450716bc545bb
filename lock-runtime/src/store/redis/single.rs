//! `RedisStore`: locks in one Redis server, through a self-reconnecting `ConnectionManager`.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::batch::Batch;
use super::deployment::{Deployed, Deployment};
use super::feed::Feed;
use super::protocol::Node;
use super::server::{PubSub, Server};
use super::tls::TlsRoots;
use crate::error::BoxError;
use crate::store::Caps;

/// One Redis server. The connection is opened on first use, so constructing the store does
/// no I/O and needs no runtime.
///
/// ## Behavior
/// - Every command fails after [`RESPONSE_TIMEOUT`](super::server::RESPONSE_TIMEOUT) once connected; connecting is bounded
///   by [`CONNECT_TIMEOUT`](super::server::CONNECT_TIMEOUT), and the connection
///   reconnects in the background.
/// - Releases are announced with `PUBLISH` on the lock's release channel; one pub/sub
///   connection per `Locker` listens while someone waits.
/// - Fencing tokens strictly increase per key; several keys are taken by one script.
pub(crate) type RedisStore = Deployed<Single>;

/// The single server behind a [`RedisStore`].
pub(crate) struct Single {
    server: Server,
    feed: Feed<PubSub>,
    batch: Batch<ConnectionManager>,
}

impl Single {
    /// Parses the URL (no I/O).
    pub(crate) fn open(url: &str, roots: &TlsRoots) -> Result<RedisStore, redis::RedisError> {
        let server = Server::open(url, roots)?;
        Ok(Deployed(Self {
            feed: Feed::new(server.pubsub()),
            server,
            batch: Batch::new(Self::NODE.publish),
        }))
    }
}

impl Deployment for Single {
    type Conn = ConnectionManager;
    type Source = PubSub;
    const NODE: Node = Node::SINGLE;
    const PRODUCT: &'static str = "Redis";

    fn describe(&self) -> String {
        format!("redis({})", self.server.url())
    }

    fn host(&self) -> String {
        self.server.url().to_string()
    }

    fn caps(&self) -> Caps {
        Caps {
            fencing: true,
            replica_sync: true,
            announces_releases: true,
        }
    }

    fn bounds_calls_within(&self, limit: Duration) -> bool {
        self.server.bounds_calls_within(limit)
    }

    fn check_keys(&self, _keys: &[String]) -> Result<(), String> {
        Ok(())
    }

    async fn conn(&self) -> Result<ConnectionManager, BoxError> {
        self.server.conn().await
    }

    fn feed(&self) -> &Feed<PubSub> {
        &self.feed
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, BoxError> {
        let mut conn = self.server.conn().await?;
        Self::NODE.scan(&mut conn, pattern).await
    }

    fn batch(&self) -> Option<&Batch<ConnectionManager>> {
        Some(&self.batch)
    }
}
