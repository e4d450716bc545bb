//! One Redis server: its address and self-reconnecting connection (the single store has
//! one, Redlock one per master), and its classic pub/sub connections for a wake-up feed.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use tokio::sync::OnceCell;

use super::error::NodeError;
use super::feed::{Event, Sink, Source};
use super::tls::{TlsRoots, client};
use crate::error::BoxError;
use crate::url::RedactedUrl;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take before it fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// One Redis server's address and its self-reconnecting connection, opened on first use:
/// the single store has one, Redlock one per master.
pub(crate) struct Server {
    client: Client,
    url: RedactedUrl,
    conn: OnceCell<ConnectionManager>,
    /// How long connecting, and then each command, may take.
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Server {
    /// Parses the URL (no I/O).
    pub(crate) fn open(url: &str, roots: &TlsRoots) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: client(url, roots)?,
            url: RedactedUrl::new(url),
            conn: OnceCell::new(),
            connect_timeout: CONNECT_TIMEOUT,
            response_timeout: RESPONSE_TIMEOUT,
        })
    }

    /// As [`Server::open`], for one of several servers where the others can stand in
    /// (Redlock): connecting and every command are bounded by `limit`.
    pub(crate) fn open_fail_fast(
        url: &str,
        roots: &TlsRoots,
        limit: Duration,
    ) -> Result<Self, redis::RedisError> {
        Ok(Self {
            connect_timeout: limit,
            response_timeout: limit,
            ..Self::open(url, roots)?
        })
    }

    /// The URL, without credentials.
    pub(crate) fn url(&self) -> &RedactedUrl {
        &self.url
    }

    /// A source of pub/sub connections to this server, for a wake-up feed.
    pub(crate) fn pubsub(&self) -> PubSub {
        PubSub(self.client.clone())
    }

    /// Whether every command ends within `limit` by itself. A connected manager that
    /// lost its connection first waits for the reconnect (up to the connect timeout),
    /// then for the answer: both count (issue 16: a renewal sent into a reset-then-cut
    /// connection returned after its lock had lapsed).
    pub(crate) fn bounds_calls_within(&self, limit: Duration) -> bool {
        limit >= self.response_timeout.saturating_add(self.connect_timeout)
            && self.conn.initialized()
    }

    /// The connection, opened on first use.
    pub(crate) async fn conn(&self) -> Result<ConnectionManager, BoxError> {
        // Connected: no await, which also keeps the connect future out of every call's
        // state (smaller futures to move on the hot path).
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        self.connect().await
    }

    #[inline(never)]
    async fn connect(&self) -> Result<ConnectionManager, BoxError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.response_timeout))
                    // One attempt per call: a refused connection fails the call at once
                    // with its cause, and the engine retries until the caller's deadline.
                    .set_number_of_retries(0)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .map_err(|e| NodeError::new(&self.url, e))?;
        Ok(conn.clone())
    }
}

/// Classic pub/sub on one server: a dedicated connection, split in two.
pub(crate) struct PubSub(Client);

impl Source for PubSub {
    type Sink = PubSubSink;

    async fn connect(&self) -> Result<(PubSubSink, BoxStream<'static, Event>), BoxError> {
        let (sink, stream) = self.0.get_async_pubsub().await?.split();
        let events = stream.map(|msg| Event::Message(msg.get_channel_name().to_owned()));
        Ok((sink, events.boxed()))
    }
}

impl Sink for PubSubSink {
    async fn subscribe(&mut self, channel: &str) -> Result<(), BoxError> {
        Ok(PubSubSink::subscribe(self, channel).await?)
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), BoxError> {
        Ok(PubSubSink::unsubscribe(self, channel).await?)
    }
}
