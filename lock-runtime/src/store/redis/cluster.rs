//! `ClusterStore`: locks in a Redis Cluster, through the `redis` crate's async cluster
//! client. Each lock lives on the shard that owns its key's slot, with the same format as
//! on one server.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{OnceCell, mpsc};

use super::conn::NodeConn;
use super::deployment::{Deployed, Deployment};
use super::error::NodeError;
use super::feed::{Event, Feed, Sink, Source};
use super::naming::{hash_tag, slot};
use super::protocol::Node;
use super::replicas::wait_cmd;
use super::scan::{scan_cmd, scan_reply};
use super::tls::TlsRoots;
use crate::error::BoxError;
use crate::store::{Caps, Replicas};
use crate::url::RedactedUrl;

/// How long one connection attempt to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request may take, retries and redirects included.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Retries after an I/O error or a redirect, and the waits between them (ms): short,
/// because the engine retries on its own until the caller's deadline.
const RETRIES: u32 = 4;
const MIN_RETRY_WAIT_MS: u64 = 10;
const MAX_RETRY_WAIT_MS: u64 = 100;

pub(crate) type ClusterStore = Deployed<Cluster>;

/// The cluster behind a [`ClusterStore`].
///
/// ## Behavior
/// - The seed URLs are checked at construction; the cluster is reached on first use, and
///   its topology followed from then on (`MOVED`/`ASK` redirects, failovers).
/// - A request ends within [`RESPONSE_TIMEOUT`], its retries included.
/// - The client re-sends a request after an I/O error or a redirect, so every command is
///   idempotent for its token: a re-sent `SET NX` of our own token counts as acquired.
/// - Several keys must share a hash slot (one script on one shard); otherwise the call is
///   refused before anything is sent.
/// - Releases are announced with `SPUBLISH`, so only the key's shard carries them; one
///   sharded subscription connection per `Locker` listens while someone waits.
pub(crate) struct Cluster {
    client: ClusterClient,
    urls: Vec<RedactedUrl>,
    conn: OnceCell<ClusterConnection>,
    feed: Feed<Shards>,
}

impl Cluster {
    /// Checks the seed URLs (no I/O).
    pub(crate) fn open(
        urls: &[String],
        roots: &TlsRoots,
    ) -> Result<ClusterStore, redis::RedisError> {
        let client = builder(urls, roots).build()?;
        let seeds = urls.to_vec();
        Ok(Deployed(Self {
            client,
            urls: urls.iter().map(|u| RedactedUrl::new(u)).collect(),
            conn: OnceCell::new(),
            feed: Feed::new(Shards {
                seeds,
                roots: roots.clone(),
            }),
        }))
    }

    #[inline(never)]
    async fn connect(&self) -> Result<ClusterConnection, BoxError> {
        let conn = self
            .conn
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .map_err(|e| NodeError::new(self.host(), e))?;
        Ok(conn.clone())
    }
}

/// The client settings every cluster connection of this store shares.
fn builder(urls: &[String], roots: &TlsRoots) -> ClusterClientBuilder {
    let builder = ClusterClientBuilder::new(urls.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(RETRIES)
        .min_retry_wait(MIN_RETRY_WAIT_MS)
        .max_retry_wait(MAX_RETRY_WAIT_MS);
    #[cfg(feature = "tls")]
    if let Some(pem) = &roots.0 {
        return builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
    }
    let _ = roots;
    builder
}

impl Deployment for Cluster {
    type Conn = ClusterConnection;
    type Source = Shards;
    const NODE: Node = Node::SHARD;
    const PRODUCT: &'static str = "the Redis Cluster";

    fn describe(&self) -> String {
        format!("redis-cluster({})", self.host())
    }

    fn host(&self) -> String {
        let urls: Vec<String> = self.urls.iter().map(ToString::to_string).collect();
        format!("cluster {}", urls.join(","))
    }

    fn caps(&self) -> Caps {
        Caps {
            fencing: true,
            replica_sync: true,
            announces_releases: true,
        }
    }

    fn bounds_calls_within(&self, limit: Duration) -> bool {
        limit >= RESPONSE_TIMEOUT && self.conn.initialized()
    }

    fn check_keys(&self, keys: &[String]) -> Result<(), String> {
        if let Some(key) = keys
            .iter()
            .find(|k| hash_tag(k).is_none() && k.contains('}'))
        {
            return Err(format!(
                "`{key}` holds a `}}` but no `{{tag}}`, so its fence counter and release \
                 channel cannot share its cluster slot; drop the `}}` or add a tag such as \
                 `{{{}}}`",
                key.replace(['{', '}'], "")
            ));
        }
        if keys.len() < 2 {
            return Ok(());
        }
        let mut slots: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for key in keys {
            slots.entry(slot(key)).or_default().push(key);
        }
        if slots.len() <= 1 {
            return Ok(());
        }
        let spread: Vec<String> = slots
            .iter()
            .map(|(slot, keys)| format!("slot {slot}: {}", keys.join(", ")))
            .collect();
        let example = keys
            .first()
            .map(|k| hash_tag(k).map_or_else(|| format!("{{{k}}}"), |t| format!("{{{t}}}")))
            .unwrap_or_default();
        Err(format!(
            "the keys hash to {} different cluster slots ({}), and one script can only take \
             keys of one slot; give them a common hash tag so they share a slot, e.g. \
             `{{account}}:1` and `{{account}}:2` (here: put `{example}` in each)",
            slots.len(),
            spread.join("; "),
        ))
    }

    async fn conn(&self) -> Result<ClusterConnection, BoxError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        self.connect().await
    }

    fn feed(&self) -> &Feed<Shards> {
        &self.feed
    }

    /// `SCAN` on every master, found with `CLUSTER SLOTS`.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, BoxError> {
        let mut conn = self.conn().await?;
        let slots = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let mut masters: Vec<(String, u16)> = Vec::new();
        if let Value::Array(ranges) = slots {
            for range in ranges {
                let Value::Array(parts) = range else { continue };
                let Some(Value::Array(master)) = parts.get(2) else {
                    continue;
                };
                let host = master
                    .first()
                    .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok());
                let port = master
                    .get(1)
                    .and_then(|v| redis::from_redis_value::<u16>(v.clone()).ok());
                if let (Some(host), Some(port)) = (host, port)
                    && !masters.contains(&(host.clone(), port))
                {
                    masters.push((host, port));
                }
            }
        }
        let mut keys = Vec::new();
        for (host, port) in masters {
            let mut cursor = 0u64;
            loop {
                let at = SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port,
                };
                let cmd = scan_cmd(cursor, pattern);
                let reply = conn.route_command(cmd, RoutingInfo::SingleNode(at)).await?;
                match scan_reply(reply, &mut keys)? {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

impl NodeConn for ClusterConnection {
    async fn wait_replicas(&mut self, key: &str, r: Replicas) -> redis::RedisResult<i64> {
        // Routed to the key's primary: the cluster client would send a bare `WAIT` to
        // every primary and take the least answer.
        let cmd = wait_cmd(r);
        let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let value = self.route_command(cmd, routing).await?;
        Ok(redis::from_redis_value(value)?)
    }
}

/// Sharded pub/sub on a cluster: a RESP3 cluster connection whose pushes come through a
/// channel. The client itself re-subscribes after reconnects and slot moves.
pub(crate) struct Shards {
    seeds: Vec<String>,
    roots: TlsRoots,
}

impl Source for Shards {
    type Sink = ClusterConnection;

    async fn connect(&self) -> Result<(ClusterConnection, BoxStream<'static, Event>), BoxError> {
        let (tx, rx) = mpsc::unbounded_channel::<PushInfo>();
        let client = builder(&self.seeds, &self.roots)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()?;
        let conn = client.get_async_connection().await?;
        let mut confirmed = HashSet::new();
        let events = futures_util::stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|push| (push, rx))
        })
        .filter_map(move |push| {
            let channel = match push.data.first() {
                Some(Value::BulkString(name)) => String::from_utf8_lossy(name).into_owned(),
                _ => String::new(),
            };
            let event = match push.kind {
                PushKind::SMessage => Some(Event::Message(channel)),
                // The first confirmation is our own subscribe; a later one is the client
                // subscribing again after a reconnect or a slot move.
                PushKind::SSubscribe if !confirmed.insert(channel.clone()) => {
                    Some(Event::Resubscribed(channel))
                }
                PushKind::SUnsubscribe => {
                    confirmed.remove(&channel);
                    None
                }
                _ => None,
            };
            std::future::ready(event)
        });
        Ok((conn, events.boxed()))
    }
}

impl Sink for ClusterConnection {
    async fn subscribe(&mut self, channel: &str) -> Result<(), BoxError> {
        Ok(self.ssubscribe(channel).await?)
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), BoxError> {
        Ok(self.sunsubscribe(channel).await?)
    }
}
