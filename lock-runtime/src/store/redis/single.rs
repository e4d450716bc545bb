//! `RedisStore`: locks in one Redis server, through a self-reconnecting `ConnectionManager`.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use tokio::sync::OnceCell;

use super::Caps;
use super::feed::{Event, Feed, Sink, Source};
use super::node::{Deployment, Node, NodeError, Redis};
use crate::error::BoxError;
use crate::url::RedactedUrl;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take before it fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// One Redis server. The connection is opened on first use, so constructing the store does
/// no I/O and needs no runtime.
///
/// ## Behavior
/// - Every command fails after [`RESPONSE_TIMEOUT`] once connected; connecting is bounded
///   by [`CONNECT_TIMEOUT`], and the connection reconnects in the background.
/// - Releases are announced with `PUBLISH` on the lock's release channel; one pub/sub
///   connection per `Locker` listens while someone waits.
/// - Fencing tokens strictly increase per key; several keys are taken by one script.
pub(crate) type RedisStore = Redis<Single>;

/// The single server behind a [`RedisStore`].
pub(crate) struct Single {
    server: Server,
    feed: Feed<PubSub>,
}

/// The roots a `rediss://` connection trusts, when not the system's (PEM).
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) struct TlsRoots(pub(crate) Option<Vec<u8>>);

/// A client for `url`, trusting `roots` for TLS when given.
pub(crate) fn client(url: &str, roots: &TlsRoots) -> Result<Client, redis::RedisError> {
    #[cfg(feature = "tls")]
    if let Some(pem) = &roots.0 {
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        };
        return Client::build_with_tls(url, certs);
    }
    let _ = roots;
    Client::open(url)
}

impl Single {
    /// Parses the URL (no I/O).
    pub(crate) fn open(url: &str, roots: &TlsRoots) -> Result<RedisStore, redis::RedisError> {
        let server = Server::open(url, roots)?;
        Ok(Redis(Self {
            feed: Feed::new(server.pubsub()),
            server,
        }))
    }
}

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

impl Deployment for Single {
    type Conn = ConnectionManager;
    type Source = PubSub;
    const NODE: Node = Node::SINGLE;

    fn describe(&self) -> String {
        format!("redis({})", self.server.url)
    }

    fn host(&self) -> String {
        self.server.url.to_string()
    }

    fn caps(&self) -> Caps {
        Caps {
            fencing: true,
            multi_key_same_slot: false,
            sharded_wakeups: false,
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
