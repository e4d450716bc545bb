//! The primitives of a semaphore's or read/write lock's lease over one node: one
//! `shared.lua` call per operation (a sorted set of leases per key), and a release
//! without Lua.

use std::time::Duration;

use super::conn::NodeConn;
use super::naming::{release_channel, writers_key};
use super::protocol::Node;
use super::script::SCRIPTS;
use crate::error::BoxError;
use crate::store::{Attempt, HeldAs, Kind, Lease, Release, Request, shared_key};

/// One `shared.lua` operation (see the script for what each answers).
#[derive(Debug, Clone, Copy)]
pub(super) struct SharedOp<'a> {
    pub(super) op: &'static str,
    pub(super) member: &'a str,
    /// A read/write lock's lease: the waiting writers' set is passed too.
    pub(super) rw: bool,
    pub(super) ttl_ms: u64,
    pub(super) limit: u32,
    pub(super) intent_ms: u64,
}

impl<'a> SharedOp<'a> {
    pub(super) fn new(op: &'static str, kind: Kind, member: &'a str) -> Self {
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

impl Node {
    /// A lease of a semaphore or read/write lock: one `shared.lua` call, then `WAIT` when
    /// asked.
    pub(super) async fn try_acquire_shared<C: NodeConn>(
        self,
        conn: &mut C,
        req: &Request<'_>,
    ) -> Result<Attempt, BoxError> {
        let key = shared_key(req.keys)?;
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
            _ => Attempt::Conflict {
                held_as: HeldAs::from_tag(&value),
            },
        })
    }

    /// One `shared.lua` call on `key`: its reply's code and value.
    pub(super) async fn shared<C: NodeConn>(
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

    /// Ends a shared lease: `ZREM` of the lease (its name holds the owner's token, so no
    /// other owner's lease can be removed), the writer's intent withdrawn when `withdraw`,
    /// and the release announced, in one pipeline without Lua. The key's expiry is left
    /// as it is (see `shared.lua`).
    pub(super) async fn release_shared<C: NodeConn>(
        self,
        conn: &mut C,
        lease: Lease<'_>,
        withdraw: bool,
    ) -> Result<Release, BoxError> {
        let key = shared_key(lease.keys)?;
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
}
