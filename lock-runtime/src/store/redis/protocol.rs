//! The lock and lease primitives over one node: take, release, extend, time left and
//! force-release, for an exclusive lock on one or several keys (a semaphore's or
//! read/write lock's lease is handed to `shared_lease`). `Node` says how the node
//! announces releases and whether its client re-sends commands.

use std::time::Duration;

use redis::Value;

use super::conn::NodeConn;
use super::error::TooFewReplicas;
use super::naming::{fence_key, release_channel, waiters_key};
use super::replicas::wait_cmd;
use super::script::SCRIPTS;
use super::shared_lease::SharedOp;
use crate::error::BoxError;
use crate::store::{Attempt, HeldAs, Kind, Lease, Release, Replicas, Request, shared_key};

/// How long a fence counter lives after it starts, beyond the lock's ttl (see
/// `acquire.lua`).
const FENCE_RETENTION_MS: u64 = 60_000;
/// How long a waiting try's mark on a key lives at least (beyond that, its ttl): a waiter
/// tries again, and marks again, at least every `retry_interval` and when the holder's time
/// runs out, so a mark that lapsed first only costs that waiter its prompt wake-up.
const WAITERS_MARK_MIN_MS: u64 = 10_000;
/// Fence counters start at the server time in microseconds; a smaller value is a counter
/// that `INCR` has just created, which must be started before its value is handed out.
const FENCE_SEEDED_MIN: i64 = 1_000_000_000_000_000;

/// How a node announces releases, and whether its client may re-send commands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    /// `PUBLISH` on one server, `SPUBLISH` on a cluster shard.
    pub(super) publish: &'static str,
    /// The client re-sends commands after I/O errors (the cluster client): a refused
    /// `SET NX` must then check whether the holder is our own earlier send, which needs
    /// `SET ... NX GET` (Redis 7).
    pub(super) resent: bool,
    /// Scripts must declare the release channel among their keys (a cluster routes and
    /// checks them by slot); one server lets the release script name it itself.
    pub(super) declare_channel: bool,
}

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
            if waiting {
                // Before the `SET NX`: if that fails, its holder's release comes after this
                // mark and so announces itself (a release nobody marked announces nothing).
                pipe.cmd("SET")
                    .arg(waiters_key(key))
                    .arg(1)
                    .arg("PX")
                    .arg(waiters_mark_ms(ttl_ms))
                    .ignore();
            }
            pipe.add_command(self.set_nx(key, token, ttl_ms));
            if fencing {
                // Runs even when the SET fails: that only skips a number. A successful
                // SET's INCR comes before its own release, hence before the next holder's.
                // The server's clock (µs) comes along: the token is the greater of the two,
                // so that a replica promoted with a counter that missed the last INCRs
                // still hands out greater tokens than its old master did (issue 16).
                pipe.cmd("INCR").arg(fence_key(key));
                pipe.cmd("TIME");
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
            let mut int = || -> Result<Option<i64>, BoxError> {
                let value = replies.next().unwrap_or(Value::Nil);
                Ok(redis::from_redis_value::<Option<i64>>(value)?)
            };
            let fence = if fencing { int()? } else { None };
            let clock = if fencing {
                let value = replies.next().unwrap_or(Value::Nil);
                let (secs, micros) = redis::from_redis_value::<(u64, u64)>(value)?;
                secs.saturating_mul(1_000_000).saturating_add(micros)
            } else {
                0
            };
            let mut int = || -> Result<Option<i64>, BoxError> {
                let value = replies.next().unwrap_or(Value::Nil);
                Ok(redis::from_redis_value::<Option<i64>>(value)?)
            };
            let pttl = if waiting { int()? } else { None };
            let held_as = if waiting {
                let value = replies.next().unwrap_or(Value::Nil);
                redis::from_redis_value::<String>(value).ok()
            } else {
                None
            };
            let acked = match replicas {
                Some(_) => {
                    let value = replies.next().unwrap_or(Value::Nil);
                    redis::from_redis_value::<Option<i64>>(value)?
                }
                None => None,
            };
            if self.set_taken(set, token) {
                let fence = match fence {
                    Some(f) if f >= FENCE_SEEDED_MIN => {
                        Some(u64::try_from(f).unwrap_or(0).max(clock))
                    }
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
                    held_as: HeldAs::Leases,
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
                .arg(ttl_ms.saturating_add(FENCE_RETENTION_MS))
                .arg(if waiting { waiters_mark_ms(ttl_ms) } else { 0 });
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
    pub(super) async fn replicated<C: NodeConn>(
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
            self.shared(conn, shared_key(keys)?, op).await?.0
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
            let (pttl, _) = self.shared(conn, shared_key(keys)?, op).await?;
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

/// How long a waiting try's mark on a held key lives.
fn waiters_mark_ms(ttl_ms: u64) -> u64 {
    ttl_ms.max(WAITERS_MARK_MIN_MS)
}

/// A lock's `SET ... GET` (or a lock script) refused with `WRONGTYPE`: the key holds a
/// semaphore's or read/write lock's leases, which a lock can never join. Any other error
/// is the store's.
fn wrong_type(e: redis::RedisError) -> Result<Attempt, BoxError> {
    if e.code() == Some("WRONGTYPE") {
        Ok(Attempt::Conflict {
            held_as: HeldAs::Leases,
        })
    } else {
        Err(e.into())
    }
}

#[cfg(test)]
use locked_test_support as support;

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

    /// A release is announced, on the channel the Rust side subscribes to, when a waiting
    /// try marked its key, and only then: the unmarked release before it sent nothing
    /// (messages reach one subscriber in the order they were published).
    #[tokio::test]
    async fn release_is_announced_only_when_a_waiter_marked_the_key() {
        let server = super::support::RedisServer::start();
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = redis::aio::ConnectionManager::new(client.clone())
            .await
            .unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        let quiet = ["lock:quiet".to_owned()];
        pubsub.subscribe(release_channel(&quiet[0])).await.unwrap();
        for key in ["lock:plain", "lock:{tag}:x", "lock:{multi}:a"] {
            pubsub.subscribe(release_channel(key)).await.unwrap();
            let keys = if key == "lock:{multi}:a" {
                vec![key.to_owned(), "lock:{multi}:b".to_owned()]
            } else {
                vec![key.to_owned()]
            };
            for keys in [&quiet[..], &keys[..]] {
                let taken = Node::SINGLE
                    .try_acquire(&mut conn, &request(keys, "a"))
                    .await;
                assert_eq!(taken.unwrap(), Attempt::Acquired { fence: None });
            }
            let waiter = Request {
                waiting: true,
                ..request(&keys, "b")
            };
            let refused = Node::SINGLE.try_acquire(&mut conn, &waiter).await.unwrap();
            assert!(matches!(refused, Attempt::Held { .. }), "{refused:?}");
            let theirs = lease(&keys, "b", Kind::Lock);
            let foreign = Node::SINGLE.release(&mut conn, theirs).await.unwrap();
            assert_eq!(foreign, Release::Foreign);
            let unmarked = lease(&quiet, "a", Kind::Lock);
            let unmarked = Node::SINGLE.release(&mut conn, unmarked).await.unwrap();
            assert_eq!(unmarked, Release::Released);
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
            assert_eq!(msg.get_channel_name(), release_channel(key), "{key}");
            drop(messages);
            let mark: i64 = redis::cmd("EXISTS")
                .arg(waiters_key(key))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(mark, 0, "the announcing release took the mark with it");
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
}
