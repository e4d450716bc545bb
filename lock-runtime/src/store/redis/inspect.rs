//! The primitives that read what one node has of a key: whether it is held, by how many
//! leases, what it holds (for operators), and which lock keys match a pattern.

use std::time::Duration;

use redis::Value;

use super::conn::NodeConn;
use super::naming::{fence_key, release_channel};
use super::protocol::Node;
use super::scan::{scan_cmd, scan_reply};
use super::script::SCRIPTS;
use crate::error::BoxError;
use crate::info::{LockInfo, token_prefix};

impl Node {
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
}
