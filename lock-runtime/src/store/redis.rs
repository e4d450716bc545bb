//! `RedisStore`: locks in one Redis server, through a self-reconnecting `ConnectionManager`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tokio::sync::OnceCell;

use super::Attempt;
use crate::error::BoxError;
use crate::url::RedactedUrl;
use crate::wait::release_channel;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take before it fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a fence counter lives after it starts, beyond the lock's ttl (see
/// `acquire.lua`).
const FENCE_RETENTION_MS: u64 = 60_000;
/// Fence counters start at the server time in microseconds; a smaller value is a counter
/// that `INCR` has just created, which must be started before its value is handed out.
const FENCE_SEEDED_MIN: i64 = 1_000_000_000_000_000;

/// One Redis server. The connection is opened on first use, so constructing the store does
/// no I/O and needs no runtime.
pub(crate) struct RedisStore {
    client: Client,
    url: RedactedUrl,
    conn: OnceCell<ConnectionManager>,
    release: Script,
    release_one: Script,
    extend: Script,
    remaining: Script,
    acquire: Script,
    seed_fence: Script,
}

impl RedisStore {
    /// Parses the URL (no I/O).
    pub(crate) fn open(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: Client::open(url)?,
            url: RedactedUrl::new(url),
            conn: OnceCell::new(),
            release: Script::new(include_str!("scripts/release.lua")),
            release_one: Script::new(include_str!("scripts/release_one.lua")),
            extend: Script::new(include_str!("scripts/extend.lua")),
            remaining: Script::new(include_str!("scripts/remaining.lua")),
            acquire: Script::new(include_str!("scripts/acquire.lua")),
            seed_fence: Script::new(include_str!("scripts/seed_fence.lua")),
        })
    }

    /// Whether a call ends within `limit` by itself: true once connected (every command
    /// has a response timeout), when `limit` is at least that timeout.
    pub(crate) fn bounds_calls_within(&self, limit: Duration) -> bool {
        limit >= RESPONSE_TIMEOUT && self.conn.initialized()
    }

    /// The client, for the pub/sub connection of waiters.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn url(&self) -> &RedactedUrl {
        &self.url
    }

    async fn conn(&self) -> Result<ConnectionManager, BoxError> {
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
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .map_err(|e| self.wrap(e))?;
        Ok(conn.clone())
    }

    fn wrap(&self, e: redis::RedisError) -> BoxError {
        format!("redis at {}: {e}", self.url).into()
    }

    /// One key: `SET NX PX` (one command, as a hand-rolled lock), pipelined with `INCR`
    /// of the fence counter when fencing and with `PTTL` for a queued waiter's try.
    /// Several keys: one `acquire.lua` call, all or none.
    pub(crate) async fn try_acquire(
        &self,
        keys: &[String],
        token: &str,
        ttl_ms: u64,
        fencing: bool,
        waiting: bool,
    ) -> Result<Attempt, BoxError> {
        let mut conn = self.conn().await?;
        if let ([key], false, false) = (keys, fencing, waiting) {
            let set: Option<String> = set_nx(key, token, ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.wrap(e))?;
            return Ok(match set {
                Some(_) => Attempt::Acquired { fence: None },
                None => Attempt::Held { remaining: None },
            });
        }
        // The other forms in a boxed future of their own: the hot path's stays small.
        Box::pin(self.try_acquire_pipelined(conn, keys, token, ttl_ms, fencing, waiting)).await
    }

    /// `try_acquire` with fencing, for a waiter, or for several keys.
    async fn try_acquire_pipelined(
        &self,
        mut conn: ConnectionManager,
        keys: &[String],
        token: &str,
        ttl_ms: u64,
        fencing: bool,
        waiting: bool,
    ) -> Result<Attempt, BoxError> {
        if let [key] = keys {
            let mut pipe = redis::pipe();
            pipe.add_command(set_nx(key, token, ttl_ms));
            if fencing {
                // Runs even when the SET fails: that only skips a number. A successful
                // SET's INCR comes before its own release, hence before the next holder's.
                pipe.cmd("INCR").arg(fence_key(key));
            }
            if waiting {
                pipe.cmd("PTTL").arg(key);
            }
            let replies: Vec<redis::Value> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| self.wrap(e))?;
            let mut replies = replies.into_iter();
            let acquired = !matches!(replies.next(), None | Some(redis::Value::Nil));
            let mut next = || -> Result<Option<i64>, BoxError> {
                let value = replies.next().unwrap_or(redis::Value::Nil);
                Ok(redis::from_redis_value::<Option<i64>>(value).map_err(|e| e.to_string())?)
            };
            let fence = if fencing { next()? } else { None };
            let pttl = if waiting { next()? } else { None };
            if acquired {
                let fence = match fence {
                    Some(f) if f >= FENCE_SEEDED_MIN => Some(u64::try_from(f).unwrap_or(0)),
                    Some(_) => Some(self.seed_fence(&mut conn, key, ttl_ms).await?),
                    None => None,
                };
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
                    .query_async(&mut conn)
                    .await;
            }
            return Ok(Attempt::Held {
                remaining: match pttl {
                    // -2: the key is gone already; -1: a key without expiry (poll).
                    Some(-2) => Some(Duration::ZERO),
                    Some(ms) => u64::try_from(ms).ok().map(Duration::from_millis),
                    None => None,
                },
            });
        }
        let mut call = self.acquire.prepare_invoke();
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
        let fence: Option<u64> = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.wrap(e))?;
        Ok(match fence {
            Some(f) => Attempt::Acquired {
                fence: fencing.then_some(f),
            },
            None => Attempt::Held { remaining: None },
        })
    }

    /// Starts a new fence counter at the server time (a second round trip, once per
    /// counter lifetime) and returns the token it hands out.
    async fn seed_fence(
        &self,
        conn: &mut ConnectionManager,
        key: &str,
        ttl_ms: u64,
    ) -> Result<u64, BoxError> {
        self.seed_fence
            .key(fence_key(key))
            .arg(ttl_ms.saturating_add(FENCE_RETENTION_MS))
            .invoke_async(conn)
            .await
            .map_err(|e| self.wrap(e))
    }

    async fn owned_op(
        &self,
        script: &Script,
        keys: &[String],
        token: &str,
        arg: Option<u64>,
    ) -> Result<i64, BoxError> {
        let mut conn = self.conn().await?;
        let mut call = script.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        call.arg(token);
        if let Some(arg) = arg {
            call.arg(arg);
        }
        call.invoke_async(&mut conn).await.map_err(|e| self.wrap(e))
    }

    /// Deletes the keys `token` owns, announcing each release; true when it owned them all.
    pub(crate) async fn release(&self, keys: &[String], token: &str) -> Result<bool, BoxError> {
        let mut conn = self.conn().await?;
        if let [key] = keys {
            let released: i64 = self
                .release_one
                .key(key)
                .arg(token)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.wrap(e))?;
            return Ok(released == 1);
        }
        let mut call = self.release.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        call.arg(token);
        let n: i64 = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.wrap(e))?;
        Ok(usize::try_from(n).is_ok_and(|n| n == keys.len()))
    }

    pub(crate) async fn extend(
        &self,
        keys: &[String],
        token: &str,
        ttl_ms: u64,
    ) -> Result<bool, BoxError> {
        Ok(self
            .owned_op(&self.extend, keys, token, Some(ttl_ms))
            .await?
            == 1)
    }

    pub(crate) async fn remaining(
        &self,
        keys: &[String],
        token: &str,
    ) -> Result<Option<Duration>, BoxError> {
        let pttl = self.owned_op(&self.remaining, keys, token, None).await?;
        Ok(u64::try_from(pttl).ok().map(Duration::from_millis))
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, BoxError> {
        let mut conn = self.conn().await?;
        let n: i64 = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.wrap(e))?;
        Ok(n == 1)
    }

    pub(crate) async fn force_release(&self, key: &str) -> Result<bool, BoxError> {
        let mut conn = self.conn().await?;
        let (n, _listeners): (i64, i64) = redis::pipe()
            .cmd("DEL")
            .arg(key)
            .cmd("PUBLISH")
            .arg(release_channel(key))
            .arg("")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.wrap(e))?;
        Ok(n == 1)
    }
}

/// `SET key token NX PX ttl`: the acquisition itself.
fn set_nx(key: &str, token: &str, ttl_ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(token).arg("NX").arg("PX").arg(ttl_ms);
    cmd
}

/// The fence counter of a lock key: hashed to the key's slot, and outside `KEYS "lock:*"`.
pub(crate) fn fence_key(key: &str) -> String {
    format!("{{{key}}}:fence")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_key_uses_lock_key_as_hash_tag() {
        assert_eq!(fence_key("lock:order:1"), "{lock:order:1}:fence");
    }
}
