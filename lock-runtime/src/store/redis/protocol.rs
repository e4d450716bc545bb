//! The Redis node layer: companion names, the scripts, and every single-node primitive,
//! written once over any `redis` connection. The single-server and Cluster stores (and
//! Redlock, per master) are thin shells around it.

use std::fmt;
use std::future::Future;
use std::sync::{LazyLock, Weak};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Script, Value};
use tokio::sync::oneshot;

use super::feed::{Feed, Source};
use super::{Attempt, Caps, Kind, Lease, Release, Replicas, Request, Store, WakeTarget};
use crate::error::BoxError;
use crate::info::{LockInfo, token_prefix};
use crate::options::duration_ms;

/// How long a fence counter lives after it starts, beyond the lock's ttl (see
/// `acquire.lua`).
const FENCE_RETENTION_MS: u64 = 60_000;
/// Fence counters start at the server time in microseconds; a smaller value is a counter
/// that `INCR` has just created, which must be started before its value is handed out.
const FENCE_SEEDED_MIN: i64 = 1_000_000_000_000_000;
/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16_384;

/// The scripts, hashed once per process.
struct Scripts {
    release: Script,
    release_one: Script,
    extend: Script,
    remaining: Script,
    acquire: Script,
    seed_fence: Script,
    shared: Script,
    live: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    release: Script::new(include_str!("scripts/release.lua")),
    release_one: Script::new(include_str!("scripts/release_one.lua")),
    extend: Script::new(include_str!("scripts/extend.lua")),
    remaining: Script::new(include_str!("scripts/remaining.lua")),
    acquire: Script::new(include_str!("scripts/acquire.lua")),
    seed_fence: Script::new(include_str!("scripts/seed_fence.lua")),
    shared: Script::new(include_str!("scripts/shared.lua")),
    live: Script::new(include_str!("scripts/live.lua")),
});

/// One `shared.lua` operation (see the script for what each answers).
#[derive(Debug, Clone, Copy)]
struct SharedOp<'a> {
    op: &'static str,
    member: &'a str,
    /// A read/write lock's lease: the waiting writers' set is passed too.
    rw: bool,
    ttl_ms: u64,
    limit: u32,
    intent_ms: u64,
}

impl<'a> SharedOp<'a> {
    fn new(op: &'static str, kind: Kind, member: &'a str) -> Self {
        Self {
            op,
            member,
            rw: matches!(kind, Kind::Read | Kind::Write),
            ttl_ms: 0,
            limit: 0,
            intent_ms: 0,
        }
    }
}

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

/// How a node announces releases, and whether its client may re-send commands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    /// `PUBLISH` on one server, `SPUBLISH` on a cluster shard.
    publish: &'static str,
    /// The client re-sends commands after I/O errors (the cluster client): a refused
    /// `SET NX` must then check whether the holder is our own earlier send, which needs
    /// `SET ... NX GET` (Redis 7).
    resent: bool,
    /// Scripts must declare the release channel among their keys (a cluster routes and
    /// checks them by slot); one server lets the release script name it itself.
    declare_channel: bool,
}

/// A failure at one node, naming it.
#[derive(Debug)]
pub(crate) struct NodeError {
    host: String,
    source: BoxError,
}

impl NodeError {
    pub(crate) fn new(host: impl fmt::Display, source: impl Into<BoxError>) -> Self {
        Self {
            host: host.to_string(),
            source: source.into(),
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis at {}: {}", self.host, self.source)
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Too few replicas acknowledged a write in time.
#[derive(Debug)]
struct TooFewReplicas {
    acked: i64,
    wanted: Replicas,
    what: &'static str,
}

impl fmt::Display for TooFewReplicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "only {} of {} replica(s) acknowledged the {} within {:?}; {}: check the \
             replicas' health and link, or lower `replicas`",
            self.acked,
            self.wanted.count,
            self.what,
            self.wanted.within,
            if self.what == "lock" {
                "the lock was released again"
            } else {
                "the renewal does not count"
            }
        )
    }
}

impl std::error::Error for TooFewReplicas {}

impl Node {
    /// One Redis server (Redis 6 or later).
    pub(crate) const SINGLE: Node = Node {
        publish: "PUBLISH",
        resent: false,
        declare_channel: false,
    };
    /// One server, for releases that must not be announced (Redlock undoing a failed
    /// try): the release scripts skip the publish when the command is empty.
    pub(crate) const QUIET: Node = Node {
        publish: "",
        resent: false,
        declare_channel: false,
    };
    /// A cluster shard (Redis 7 or later: sharded pub/sub, `SET NX GET`).
    pub(crate) const SHARD: Node = Node {
        publish: "SPUBLISH",
        resent: true,
        declare_channel: true,
    };

    /// Takes every key for the token, or none. One key: `SET NX PX` (one command, as a
    /// hand-rolled lock), pipelined with the fence `INCR`, a waiter's `PTTL` and `WAIT`
    /// when asked. Several keys: one `acquire.lua` call, all or none.
    pub(crate) async fn try_acquire<C: NodeConn>(
        self,
        conn: &mut C,
        req: &Request<'_>,
    ) -> Result<Attempt, BoxError> {
        if req.kind != Kind::Lock {
            return Box::pin(self.try_acquire_shared(conn, req)).await;
        }
        if let ([key], false, false, None) = (req.keys, req.fencing, req.waiting, req.replicas) {
            let set: Option<String> = match self
                .set_nx(key, req.token, req.ttl_ms)
                .query_async(conn)
                .await
            {
                Ok(set) => set,
                Err(e) => return wrong_type(e),
            };
            return Ok(if self.set_taken(set, req.token) {
                Attempt::Acquired { fence: None }
            } else {
                Attempt::Held { remaining: None }
            });
        }
        // The other forms in a boxed future of their own: the hot path's stays small.
        Box::pin(self.try_acquire_cold(conn, req)).await
    }

    /// Whether a `SET NX` (or, when re-sent commands are possible, `SET NX GET`) reply
    /// means the lock is ours.
    fn set_taken(self, reply: Option<String>, token: &str) -> bool {
        match (self.resent, reply) {
            (false, reply) => reply.is_some(),
            // `SET NX GET` answers the old value: none (set now) or our own (a re-send).
            (true, None) => true,
            (true, Some(old)) => old == token,
        }
    }

    /// `SET key token NX PX ttl` (with `GET` where re-sends are possible).
    fn set_nx(self, key: &str, token: &str, ttl_ms: u64) -> redis::Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(token).arg("NX").arg("PX").arg(ttl_ms);
        if self.resent {
            cmd.arg("GET");
        }
        cmd
    }

    /// `try_acquire` with fencing, for a waiter, with replicas, or for several keys.
    async fn try_acquire_cold<C: NodeConn>(
        self,
        conn: &mut C,
        req: &Request<'_>,
    ) -> Result<Attempt, BoxError> {
        let Request {
            keys,
            token,
            ttl_ms,
            fencing,
            waiting,
            replicas,
            ..
        } = *req;
        let attempt = if let [key] = keys {
            let mut pipe = redis::pipe();
            pipe.add_command(self.set_nx(key, token, ttl_ms));
            if fencing {
                // Runs even when the SET fails: that only skips a number. A successful
                // SET's INCR comes before its own release, hence before the next holder's.
                pipe.cmd("INCR").arg(fence_key(key));
            }
            if waiting {
                // A queued waiter also learns what holds the key: a semaphore's or read/write
                // lock's leases (a sorted set) would never let a lock in.
                pipe.cmd("PTTL").arg(key);
                pipe.cmd("TYPE").arg(key);
            }
            if let Some(r) = replicas {
                // Same connection, same round trip: waits for the SET (and INCR) above.
                pipe.add_command(wait_cmd(r));
            }
            let replies: Vec<Value> = match pipe.query_async(conn).await {
                Ok(replies) => replies,
                Err(e) => return wrong_type(e),
            };
            let mut replies = replies.into_iter();
            let set =
                redis::from_redis_value::<Option<String>>(replies.next().unwrap_or(Value::Nil))?;
            let mut next = || -> Result<Option<i64>, BoxError> {
                let value = replies.next().unwrap_or(Value::Nil);
                Ok(redis::from_redis_value::<Option<i64>>(value)?)
            };
            let fence = if fencing { next()? } else { None };
            let pttl = if waiting { next()? } else { None };
            let held_as = if waiting {
                let value = replies.next().unwrap_or(Value::Nil);
                redis::from_redis_value::<String>(value).ok()
            } else {
                None
            };
            let mut next = || -> Result<Option<i64>, BoxError> {
                let value = replies.next().unwrap_or(Value::Nil);
                Ok(redis::from_redis_value::<Option<i64>>(value)?)
            };
            let acked = if replicas.is_some() { next()? } else { None };
            if self.set_taken(set, token) {
                let fence = match fence {
                    Some(f) if f >= FENCE_SEEDED_MIN => Some(u64::try_from(f).unwrap_or(0)),
                    Some(_) => Some(self.seed_fence(conn, key, ttl_ms).await?),
                    None => None,
                };
                self.replicated(conn, req, replicas, acked).await?;
                return Ok(Attempt::Acquired { fence });
            }
            if fence == Some(1) {
                // This failed try's INCR created the counter: give it an expiry, or a
                // key that is never taken with fencing again would keep it forever.
                // Best effort (`NX` needs Redis 7); a restart from 1 is safe anyway.
                let _: Result<i64, _> = redis::cmd("PEXPIRE")
                    .arg(fence_key(key))
                    .arg(ttl_ms.saturating_add(FENCE_RETENTION_MS))
                    .arg("NX")
                    .query_async(conn)
                    .await;
            }
            if held_as.as_deref() == Some("zset") {
                return Ok(Attempt::Conflict {
                    held_as: "shared".to_owned(),
                });
            }
            Attempt::Held {
                remaining: match pttl {
                    // -2: the key is gone already; -1: a key without expiry (poll).
                    Some(-2) => Some(Duration::ZERO),
                    Some(ms) => u64::try_from(ms).ok().map(Duration::from_millis),
                    None => None,
                },
            }
        } else {
            let mut call = SCRIPTS.acquire.prepare_invoke();
            for key in keys {
                call.key(key);
            }
            if let (true, Some(first)) = (fencing, keys.first()) {
                call.key(fence_key(first));
            }
            call.arg(token)
                .arg(ttl_ms)
                .arg(u8::from(fencing))
                .arg(ttl_ms.saturating_add(FENCE_RETENTION_MS));
            let fence: Option<u64> = call.invoke_async(conn).await?;
            match fence {
                Some(f) => {
                    if let (Some(r), Some(first)) = (replicas, keys.first()) {
                        let acked = conn.wait_replicas(first, r).await?;
                        self.replicated(conn, req, replicas, Some(acked)).await?;
                    }
                    Attempt::Acquired {
                        fence: fencing.then_some(f),
                    }
                }
                None => Attempt::Held { remaining: None },
            }
        };
        Ok(attempt)
    }

    /// After a lock was taken with `replicas`: enough acknowledged, or the lock is
    /// released again and the attempt fails.
    async fn replicated<C: NodeConn>(
        self,
        conn: &mut C,
        req: &Request<'_>,
        replicas: Option<Replicas>,
        acked: Option<i64>,
    ) -> Result<(), BoxError> {
        let Some(wanted) = replicas else {
            return Ok(());
        };
        let acked = acked.unwrap_or(0);
        if acked >= i64::from(wanted.count) {
            return Ok(());
        }
        // Not durable enough: give it back now, so no one waits out its ttl.
        let _ = self.release(conn, req.lease()).await;
        Err(Box::new(TooFewReplicas {
            acked,
            wanted,
            what: "lock",
        }))
    }

    /// Starts a new fence counter at the server time (a second round trip, once per
    /// counter lifetime) and returns the token it hands out.
    async fn seed_fence<C: NodeConn>(
        self,
        conn: &mut C,
        key: &str,
        ttl_ms: u64,
    ) -> Result<u64, BoxError> {
        Ok(SCRIPTS
            .seed_fence
            .key(fence_key(key))
            .arg(ttl_ms.saturating_add(FENCE_RETENTION_MS))
            .invoke_async(conn)
            .await?)
    }

    /// A lease of a semaphore or read/write lock: one `shared.lua` call, then `WAIT` when
    /// asked.
    async fn try_acquire_shared<C: NodeConn>(
        self,
        conn: &mut C,
        req: &Request<'_>,
    ) -> Result<Attempt, BoxError> {
        let key = one(req.keys)?;
        let member = req.kind.member(req.token);
        let op = SharedOp {
            ttl_ms: req.ttl_ms,
            limit: req.kind.limit(),
            intent_ms: req.intent_ms,
            ..SharedOp::new("acquire", req.kind, &member)
        };
        let (code, value) = self.shared(conn, key, op).await?;
        Ok(match code {
            1 => {
                if let Some(r) = req.replicas {
                    let acked = conn.wait_replicas(key, r).await?;
                    self.replicated(conn, req, Some(r), Some(acked)).await?;
                }
                Attempt::Acquired { fence: None }
            }
            0 => Attempt::Held {
                remaining: value.parse().ok().map(Duration::from_millis),
            },
            _ => Attempt::Conflict { held_as: value },
        })
    }

    /// One `shared.lua` call on `key`: its reply's code and value.
    async fn shared<C: NodeConn>(
        self,
        conn: &mut C,
        key: &str,
        op: SharedOp<'_>,
    ) -> Result<(i64, String), BoxError> {
        let mut call = SCRIPTS.shared.key(key);
        if op.rw {
            call.key(writers_key(key));
        }
        Ok(call
            .arg(op.op)
            .arg(op.member)
            .arg(op.ttl_ms)
            .arg(op.limit)
            .arg(op.intent_ms)
            .invoke_async(conn)
            .await?)
    }

    /// Ends the lease (deletes the keys the token owns) and announces each release on
    /// its channel.
    pub(crate) async fn release<C: NodeConn>(
        self,
        conn: &mut C,
        lease: Lease<'_>,
    ) -> Result<Release, BoxError> {
        let Lease { keys, token, kind } = lease;
        if kind != Kind::Lock {
            return self.release_shared(conn, lease, true).await;
        }
        if let [key] = keys {
            let mut call = SCRIPTS.release_one.key(key);
            if self.declare_channel {
                call.key(release_channel(key));
            }
            let outcome: i64 = call.arg(token).arg(self.publish).invoke_async(conn).await?;
            return Ok(match outcome {
                1 => Release::Released,
                0 => Release::Foreign,
                _ => Release::Gone,
            });
        }
        let mut call = SCRIPTS.release.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        for key in keys {
            call.key(release_channel(key));
        }
        call.arg(token).arg(self.publish);
        let (deleted, foreign): (usize, usize) = call.invoke_async(conn).await?;
        Ok(if foreign > 0 {
            Release::Foreign
        } else if deleted == keys.len() {
            Release::Released
        } else {
            Release::Gone
        })
    }

    /// Takes back a lease that won no quorum (Redlock), announcing nothing: a lock is
    /// released quietly, a shared lease removed while a waiting writer's intent stays.
    pub(crate) async fn undo<C: NodeConn>(
        self,
        conn: &mut C,
        lease: Lease<'_>,
    ) -> Result<Release, BoxError> {
        if lease.kind == Kind::Lock {
            return Node::QUIET.release(conn, lease).await;
        }
        Node::QUIET.release_shared(conn, lease, false).await
    }

    /// Ends a shared lease: `ZREM` of the lease (its name holds the owner's token, so no
    /// other owner's lease can be removed), the writer's intent withdrawn when `withdraw`,
    /// and the release announced, in one pipeline without Lua. The key's expiry is left
    /// as it is (see `shared.lua`).
    async fn release_shared<C: NodeConn>(
        self,
        conn: &mut C,
        lease: Lease<'_>,
        withdraw: bool,
    ) -> Result<Release, BoxError> {
        let key = one(lease.keys)?;
        let member = lease.kind.member(lease.token);
        let withdraw = withdraw && matches!(lease.kind, Kind::Read | Kind::Write);
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM").arg(key).arg(&member);
        if withdraw {
            pipe.cmd("ZREM").arg(writers_key(key)).arg(&member).ignore();
        }
        if !self.publish.is_empty() {
            pipe.cmd(self.publish)
                .arg(release_channel(key))
                .arg("")
                .ignore();
        }
        match pipe.query_async::<(i64,)>(conn).await {
            Ok((1,)) => Ok(Release::Released),
            Ok(_) => Ok(Release::Gone),
            // The key holds an exclusive lock now: ours was force-released meanwhile.
            Err(e) if e.code() == Some("WRONGTYPE") => Ok(Release::Gone),
            Err(e) => Err(e.into()),
        }
    }

    /// Resets the keys' expiry if the token owns them all; with `replicas`, only counts
    /// when enough replicas acknowledged it.
    pub(crate) async fn extend<C: NodeConn>(
        self,
        conn: &mut C,
        lease: Lease<'_>,
        ttl_ms: u64,
        replicas: Option<Replicas>,
    ) -> Result<bool, BoxError> {
        let Lease { keys, token, kind } = lease;
        let extended: i64 = if kind == Kind::Lock {
            let mut call = SCRIPTS.extend.prepare_invoke();
            for key in keys {
                call.key(key);
            }
            call.arg(token).arg(ttl_ms);
            call.invoke_async(conn).await?
        } else {
            let member = kind.member(token);
            let op = SharedOp {
                ttl_ms,
                ..SharedOp::new("extend", kind, &member)
            };
            self.shared(conn, one(keys)?, op).await?.0
        };
        if let (1, Some(wanted), Some(first)) = (extended, replicas, keys.first()) {
            let acked = conn.wait_replicas(first, wanted).await?;
            if acked < i64::from(wanted.count) {
                return Err(Box::new(TooFewReplicas {
                    acked,
                    wanted,
                    what: "renewal",
                }));
            }
        }
        Ok(extended == 1)
    }

    /// The least time left on the keys if the token owns them all.
    pub(crate) async fn remaining<C: NodeConn>(
        self,
        conn: &mut C,
        lease: Lease<'_>,
    ) -> Result<Option<Duration>, BoxError> {
        let Lease { keys, token, kind } = lease;
        if kind != Kind::Lock {
            let member = kind.member(token);
            let op = SharedOp::new("remaining", kind, &member);
            let (pttl, _) = self.shared(conn, one(keys)?, op).await?;
            return Ok(u64::try_from(pttl).ok().map(Duration::from_millis));
        }
        let mut call = SCRIPTS.remaining.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        call.arg(token);
        let pttl: i64 = call.invoke_async(conn).await?;
        Ok(u64::try_from(pttl).ok().map(Duration::from_millis))
    }

    /// Whether anyone holds `key`.
    pub(crate) async fn exists<C: NodeConn>(
        self,
        conn: &mut C,
        key: &str,
    ) -> Result<bool, BoxError> {
        Ok(self.holders(conn, key).await? > 0)
    }

    /// How many live leases `key` has (1 for a held lock).
    pub(crate) async fn holders<C: NodeConn>(
        self,
        conn: &mut C,
        key: &str,
    ) -> Result<u64, BoxError> {
        let live: Value = SCRIPTS.live.key(key).invoke_async(conn).await?;
        Ok(match live {
            Value::Int(n) => u64::try_from(n).unwrap_or(0),
            Value::Nil => 0,
            _ => 1,
        })
    }

    /// What this node has of `key`: holder, time left, fence counter, listeners.
    pub(crate) async fn inspect<C: NodeConn>(
        self,
        conn: &mut C,
        key: &str,
    ) -> Result<LockInfo, BoxError> {
        let numsub = if self.declare_channel {
            "SHARDNUMSUB"
        } else {
            "NUMSUB"
        };
        // A lock's holder, or a semaphore's or read/write lock's number of live leases.
        let (holder, pttl, fence, listeners): (Value, i64, Option<String>, Vec<Value>) =
            redis::pipe()
                .cmd("EVAL")
                .arg(include_str!("scripts/live.lua"))
                .arg(1)
                .arg(key)
                .cmd("PTTL")
                .arg(key)
                .cmd("GET")
                .arg(fence_key(key))
                .cmd("PUBSUB")
                .arg(numsub)
                .arg(release_channel(key))
                .query_async(conn)
                .await?;
        let waiters = match listeners.get(1) {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        let (held, holder) = match holder {
            Value::Int(leases) => (leases > 0, None),
            other => match redis::from_redis_value::<Option<String>>(other)? {
                Some(token) => (true, Some(token_prefix(&token))),
                None => (false, None),
            },
        };
        Ok(LockInfo {
            held,
            remaining: u64::try_from(pttl).ok().map(Duration::from_millis),
            holder,
            fence: fence.and_then(|f| f.parse().ok()),
            waiters,
            ..LockInfo::free(key)
        })
    }

    /// The lock keys on this node matching `pattern`, by `SCAN` (fence counters left out).
    pub(crate) async fn scan<C: NodeConn>(
        self,
        conn: &mut C,
        pattern: &str,
    ) -> Result<Vec<String>, BoxError> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let reply: Value = scan_cmd(cursor, pattern).query_async(conn).await?;
            match scan_reply(reply, &mut keys)? {
                Some(next) => cursor = next,
                None => break,
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Deletes the key whoever holds it, and announces the release.
    pub(crate) async fn force_release<C: NodeConn>(
        self,
        conn: &mut C,
        key: &str,
    ) -> Result<bool, BoxError> {
        let (n, _listeners): (i64, i64) = redis::pipe()
            .cmd("DEL")
            .arg(key)
            .cmd(self.publish)
            .arg(release_channel(key))
            .arg("")
            .query_async(conn)
            .await?;
        Ok(n == 1)
    }
}

/// A Redis deployment whose every key lives on one node it can reach: one server, or
/// the cluster shard that owns the key. [`Redis`] turns it into a [`Store`].
pub(crate) trait Deployment: Send + Sync + 'static {
    /// The connection that reaches the node of a key.
    type Conn: NodeConn;
    /// Where the wake-up feed's connection comes from.
    type Source: Source;
    /// How its nodes announce releases and whether commands may be re-sent.
    const NODE: Node;

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
}

/// A [`Store`] on a Redis [`Deployment`]: every call is one node-layer primitive on the
/// node of its keys, its error naming the deployment.
pub(crate) struct Redis<D>(pub(crate) D);

impl<D: Deployment> Redis<D> {
    fn wrap(&self, e: BoxError) -> BoxError {
        Box::new(NodeError::new(self.0.host(), e))
    }
}

impl<D: Deployment> Store for Redis<D> {
    fn describe(&self) -> String {
        self.0.describe()
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
        D::NODE
            .try_acquire(&mut conn, req)
            .await
            .map_err(|e| self.wrap(e))
    }

    async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        let mut conn = self.0.conn().await?;
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

/// One `SCAN` step: `SCAN cursor MATCH pattern COUNT 500`.
pub(crate) fn scan_cmd(cursor: u64, pattern: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(500);
    cmd
}

/// Takes one `SCAN` reply's keys into `keys` (fence counters and waiting writers left out); the next cursor,
/// `None` when the scan is complete.
pub(crate) fn scan_reply(reply: Value, keys: &mut Vec<String>) -> Result<Option<u64>, BoxError> {
    let (next, batch): (u64, Vec<String>) = redis::from_redis_value(reply)?;
    keys.extend(
        batch
            .into_iter()
            .filter(|k| !k.ends_with(":fence") && !k.ends_with(":writers")),
    );
    Ok((next != 0).then_some(next))
}

/// `WAIT count ms`.
pub(crate) fn wait_cmd(r: Replicas) -> redis::Cmd {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(r.count).arg(duration_ms(r.within).max(1));
    cmd
}

/// The hash tag of a key, as Redis Cluster reads it: what stands between the first `{`
/// and the next `}`, when that is not empty.
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

/// The hash slot of a key (CRC16 of its hash tag, or of the whole key).
pub(crate) fn slot(key: &str) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed.as_bytes()) % SLOTS
}

/// A companion key or channel of a lock key, in the lock key's slot: `{K}:suffix`, or
/// `K:suffix` when K already holds a hash tag (wrapping it again would move it). A key
/// with a `}` but no tag has no companion in its slot; the cluster store refuses it.
fn companion(key: &str, suffix: &str) -> String {
    if hash_tag(key).is_some() {
        format!("{key}:{suffix}")
    } else {
        format!("{{{key}}}:{suffix}")
    }
}

/// The fence counter of a lock key.
pub(crate) fn fence_key(key: &str) -> String {
    companion(key, "fence")
}

/// A lock's `SET ... GET` (or a lock script) refused with `WRONGTYPE`: the key holds a
/// semaphore's or read/write lock's leases, which a lock can never join. Any other error
/// is the store's.
fn wrong_type(e: redis::RedisError) -> Result<Attempt, BoxError> {
    if e.code() == Some("WRONGTYPE") {
        Ok(Attempt::Conflict {
            held_as: "shared".to_owned(),
        })
    } else {
        Err(e.into())
    }
}

/// The writers waiting for a read/write lock (their intents).
pub(crate) fn writers_key(key: &str) -> String {
    companion(key, "writers")
}

/// The one key of a shared lease.
fn one(keys: &[String]) -> Result<&str, BoxError> {
    match keys {
        [key] => Ok(key),
        _ => Err("a semaphore or read/write lease is on exactly one key".into()),
    }
}

/// The channel a release of `key` is announced on.
pub(crate) fn release_channel(key: &str) -> String {
    companion(key, "released")
}

#[cfg(test)]
#[path = "../../../tests/support/mod.rs"]
mod support;

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(keys: &'a [String], token: &'a str) -> Request<'a> {
        Request {
            keys,
            token,
            ttl_ms: 10_000,
            fencing: false,
            waiting: false,
            replicas: None,
            kind: Kind::Lock,
            intent_ms: 0,
        }
    }

    fn lease<'a>(keys: &'a [String], token: &'a str, kind: Kind) -> Lease<'a> {
        Lease { keys, token, kind }
    }

    /// What the cluster client does after an I/O error: the same command again. Each
    /// shard primitive, sent twice, has the effect of one send, and the second answers as
    /// the first did (release excepted: it finds no lock, and says so).
    #[tokio::test]
    async fn shard_primitives_sent_twice_act_once() {
        let server = super::support::RedisServer::start();
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
        let one = ["lock:resend:one".to_owned()];
        let two = ["lock:{resend}:a".to_owned(), "lock:{resend}:b".to_owned()];
        let permit = ["lock:resend:permit".to_owned()];
        let write = ["lock:resend:write".to_owned()];
        let cases = [
            (&one[..], Kind::Lock),
            (&two[..], Kind::Lock),
            (&permit[..], Kind::Permit { permits: 1 }),
            (&write[..], Kind::Write),
        ];
        for (keys, kind) in cases {
            let mine = Request {
                kind,
                ..request(keys, "token-1")
            };
            for send in 0..2 {
                assert_eq!(
                    Node::SHARD.try_acquire(&mut conn, &mine).await.unwrap(),
                    Attempt::Acquired { fence: None },
                    "{keys:?}, send {send}"
                );
            }
            let theirs = Request {
                kind,
                ..request(keys, "token-2")
            };
            assert!(matches!(
                Node::SHARD.try_acquire(&mut conn, &theirs).await.unwrap(),
                Attempt::Held { .. }
            ));
            let mine = lease(keys, "token-1", kind);
            for send in 0..2 {
                let extended = Node::SHARD.extend(&mut conn, mine, 20_000, None);
                assert!(extended.await.unwrap(), "{keys:?}, extend send {send}");
            }
            let released = Node::SHARD.release(&mut conn, mine).await.unwrap();
            assert_eq!(released, Release::Released);
            let again = Node::SHARD.release(&mut conn, mine).await.unwrap();
            assert_eq!(again, Release::Gone);
        }
    }

    #[tokio::test]
    async fn release_of_foreign_lock_is_refused_and_single_server_names_channel_in_lua() {
        let server = super::support::RedisServer::start();
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = redis::aio::ConnectionManager::new(client.clone())
            .await
            .unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        // The channel the Rust side subscribes to is the one the Lua side publishes on.
        for key in ["lock:plain", "lock:{tag}:x"] {
            pubsub.subscribe(release_channel(key)).await.unwrap();
            let keys = [key.to_owned()];
            let taken = Node::SINGLE
                .try_acquire(&mut conn, &request(&keys, "a"))
                .await;
            assert_eq!(taken.unwrap(), Attempt::Acquired { fence: None });
            let theirs = lease(&keys, "b", Kind::Lock);
            let foreign = Node::SINGLE.release(&mut conn, theirs).await.unwrap();
            assert_eq!(foreign, Release::Foreign);
            let mine = lease(&keys, "a", Kind::Lock);
            let mine = Node::SINGLE.release(&mut conn, mine).await.unwrap();
            assert_eq!(mine, Release::Released);
            let mut messages = pubsub.on_message();
            let msg = tokio::time::timeout(
                Duration::from_secs(5),
                futures_util::StreamExt::next(&mut messages),
            )
            .await
            .expect("a release announcement")
            .unwrap();
            assert_eq!(msg.get_channel_name(), release_channel(key));
        }
    }

    /// A semaphore's leases each lapse on their own, and the key itself goes with the
    /// last of them: nothing is left behind by a crashed holder.
    #[tokio::test]
    async fn shared_leases_lapse_one_by_one_and_take_the_key_with_them() {
        let server = super::support::RedisServer::start();
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
        let keys = ["lock:lapse".to_owned()];
        let kind = Kind::Permit { permits: 2 };
        for (token, ttl_ms) in [("short", 300), ("long", 900)] {
            let req = Request {
                kind,
                ttl_ms,
                ..request(&keys, token)
            };
            let taken = Node::SINGLE.try_acquire(&mut conn, &req).await.unwrap();
            assert_eq!(taken, Attempt::Acquired { fence: None });
        }
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            pttl > 600 && pttl <= 900,
            "the key lives as its last lease: {pttl}"
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(Node::SINGLE.holders(&mut conn, &keys[0]).await.unwrap(), 1);
        let short = lease(&keys, "short", kind);
        assert_eq!(
            Node::SINGLE.remaining(&mut conn, short).await.unwrap(),
            None
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&keys[0])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(exists, 0, "an expired semaphore left its key behind");
    }

    #[test]
    fn companions_wrap_a_key_without_tag() {
        assert_eq!(fence_key("lock:order:1"), "{lock:order:1}:fence");
        assert_eq!(release_channel("lock:order:1"), "{lock:order:1}:released");
    }

    #[test]
    fn companions_keep_an_existing_tag() {
        assert_eq!(fence_key("lock:{account}:1"), "lock:{account}:1:fence");
        assert_eq!(
            release_channel("lock:{account}:1"),
            "lock:{account}:1:released"
        );
    }

    #[test]
    fn companions_share_the_lock_key_slot() {
        for key in ["lock:order:1", "lock:{account}:1", "lock:{:x", "a{b}c{d}"] {
            assert_eq!(slot(&fence_key(key)), slot(key), "{key}");
            assert_eq!(slot(&release_channel(key)), slot(key), "{key}");
        }
    }

    #[test]
    fn slot_matches_redis_reference_values() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
    }
}
