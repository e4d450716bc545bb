//! Taking keys and giving them back: a lock, a lease, an acquisition run to its end
//! (undone when its caller is gone), a release.

use std::sync::Arc;

use tokio_postgres::types::Type;

use super::conn::{Param, values};
use super::store::{PostgresStore, fence, ms};
use crate::error::BoxError;
use crate::store::{Attempt, HeldAs, Kind, Lease, Release, Request, finish, shared_key};

impl PostgresStore {
    /// Takes every key for the token, or none (`Lock` kind).
    pub(super) async fn acquire_lock(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        let mut client = self.client().await?;
        let ttl = i64::try_from(req.ttl_ms).unwrap_or(i64::MAX);
        let fail = |e: tokio_postgres::Error| self.error("acquire", &e);
        if let ([key], true) = (req.keys, req.waiting) {
            let rows = client
                .query_typed(
                    &self.sql.acquire_waiting,
                    &[
                        (key, Type::TEXT),
                        (&req.token, Type::TEXT),
                        (&ttl, Type::INT8),
                    ],
                )
                .await
                .map_err(fail)?;
            return Ok(match rows.first() {
                Some(row) if row.get::<_, bool>(0) => Attempt::Acquired {
                    fence: req.fencing.then(|| fence(row.get(1))),
                },
                // Leases of a semaphore or read/write lock hold the key: a lock never joins.
                Some(row) if row.get::<_, bool>(3) => Attempt::Conflict {
                    held_as: HeldAs::Leases,
                },
                row => Attempt::Held {
                    remaining: row.and_then(|r| ms(r.get(2))),
                },
            });
        }
        if let [key] = req.keys {
            let rows = client
                .query_typed(
                    &self.sql.acquire_one,
                    &[
                        (key, Type::TEXT),
                        (&req.token, Type::TEXT),
                        (&ttl, Type::INT8),
                    ],
                )
                .await
                .map_err(fail)?;
            return Ok(match rows.first() {
                Some(row) => Attempt::Acquired {
                    fence: req.fencing.then(|| fence(row.get(0))),
                },
                None => Attempt::Held { remaining: None },
            });
        }
        // One transaction, all keys or none: fine through a transaction-mode pooler,
        // which keeps one server connection from `BEGIN` to `COMMIT`.
        let params: [Param<'_>; 3] = [
            (&req.keys, Type::TEXT_ARRAY),
            (&req.token, Type::TEXT),
            (&ttl, Type::INT8),
        ];
        let many = client
            .prepare(&self.sql.acquire_many, &params)
            .await
            .map_err(fail)?;
        let tx = client.client.transaction().await.map_err(fail)?;
        let rows = match &many {
            Some(many) => tx.query(many, &values(&params)).await,
            None => tx.query_typed(&self.sql.acquire_many, &params).await,
        }
        .map_err(fail)?;
        if rows.len() < req.keys.len() {
            tx.rollback().await.map_err(fail)?;
            if req.waiting {
                client
                    .execute_typed(
                        &self.sql.contend,
                        &[(&req.keys, Type::TEXT_ARRAY), (&req.token, Type::TEXT)],
                    )
                    .await
                    .map_err(fail)?;
            }
            return Ok(Attempt::Held { remaining: None });
        }
        tx.commit().await.map_err(fail)?;
        let top = rows.iter().map(|r| r.get::<_, i64>(0)).max().unwrap_or(0);
        Ok(Attempt::Acquired {
            fence: req.fencing.then(|| fence(top)),
        })
    }

    /// Takes a semaphore permit or read/write lease (`acquire_lease` in the schema).
    async fn acquire_lease(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        let [key] = req.keys else {
            return Err("a semaphore or read/write lease is on exactly one key".into());
        };
        let client = self.client().await?;
        let member = req.kind.member(req.token);
        let ttl = i64::try_from(req.ttl_ms).unwrap_or(i64::MAX);
        let limit = i32::try_from(req.kind.limit()).unwrap_or(i32::MAX);
        let intent = i64::try_from(req.intent_ms).unwrap_or(i64::MAX);
        let row = client
            .query_typed_one(
                &self.sql.lease_acquire,
                &[
                    (key, Type::TEXT),
                    (&member, Type::TEXT),
                    (&ttl, Type::INT8),
                    (&limit, Type::INT4),
                    (&intent, Type::INT8),
                ],
            )
            .await
            .map_err(|e| self.error("acquire", &e))?;
        let outcome: String = row.get(0);
        Ok(match outcome.split_once(':') {
            None => Attempt::Acquired { fence: None },
            Some(("held", left)) => Attempt::Held {
                remaining: ms(left.parse().ok()),
            },
            Some((_, held_as)) => Attempt::Conflict {
                held_as: HeldAs::from_tag(held_as),
            },
        })
    }

    /// An acquisition run to its end ([`finish`]): if the caller goes away before the
    /// answer, it goes on on a task of its own, which then deletes what it took, after the
    /// statement (so never before it lands).
    pub(super) async fn acquire_detached(
        self: &Arc<Self>,
        req: &Request<'_>,
    ) -> Result<Attempt, BoxError> {
        let (keys, token) = (req.keys.to_vec(), req.token.to_owned());
        let req = Owned {
            keys,
            token,
            ttl_ms: req.ttl_ms,
            fencing: req.fencing,
            waiting: req.waiting,
            kind: req.kind,
            intent_ms: req.intent_ms,
        };
        let store = self.clone();
        let work = async move {
            let request = req.request();
            let outcome = if req.kind == Kind::Lock {
                store.acquire_lock(&request).await
            } else {
                store.acquire_lease(&request).await
            };
            (outcome, req, store)
        };
        let (outcome, ..) = finish(work, |(outcome, req, store)| async move {
            // A try that outlives its caller withdraws what it took, and a waiting
            // writer's intent it registered: the caller's own withdrawal may have run
            // before this statement did (issue 16: readers stayed refused for the
            // intent's whole life).
            let taken = matches!(outcome, Ok(Attempt::Acquired { .. }))
                || (req.intent_ms > 0 && outcome.is_ok());
            if taken {
                let lease = Lease {
                    keys: &req.keys,
                    token: &req.token,
                    kind: req.kind,
                };
                let _ = store.release(lease).await;
            }
        })
        .await;
        outcome
    }

    pub(super) async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| self.error("release", &e);
        if lease.kind == Kind::Lock {
            let rows = client
                .query_typed(
                    &self.sql.release,
                    &[
                        (&lease.keys, Type::TEXT_ARRAY),
                        (&lease.token, Type::TEXT),
                        (&self.channel, Type::TEXT),
                    ],
                )
                .await
                .map_err(fail)?;
            let live = rows.iter().filter(|r| r.get::<_, bool>(0)).count();
            if live == lease.keys.len() {
                return Ok(Release::Released);
            }
            let row = client
                .query_typed_one(
                    &self.sql.foreign,
                    &[(&lease.keys, Type::TEXT_ARRAY), (&lease.token, Type::TEXT)],
                )
                .await
                .map_err(fail)?;
            return Ok(if row.get::<_, i64>(0) > 0 {
                Release::Foreign
            } else {
                Release::Gone
            });
        }
        let member = lease.kind.member(lease.token);
        let withdraw = matches!(lease.kind, Kind::Read | Kind::Write);
        let row = client
            .query_typed_one(
                &self.sql.lease_release,
                &[
                    (shared_key(lease.keys)?, Type::TEXT),
                    (&member, Type::TEXT),
                    (&self.channel, Type::TEXT),
                    (&withdraw, Type::BOOL),
                ],
            )
            .await
            .map_err(fail)?;
        Ok(if row.get::<_, i64>(0) == 1 {
            Release::Released
        } else {
            Release::Gone
        })
    }
}

/// A request's fields, owned, for the detached acquisition.
struct Owned {
    keys: Vec<String>,
    token: String,
    ttl_ms: u64,
    fencing: bool,
    waiting: bool,
    kind: Kind,
    intent_ms: u64,
}

impl Owned {
    fn request(&self) -> Request<'_> {
        Request {
            keys: &self.keys,
            token: &self.token,
            ttl_ms: self.ttl_ms,
            fencing: self.fencing,
            waiting: self.waiting,
            replicas: None,
            kind: self.kind,
            intent_ms: self.intent_ms,
        }
    }
}
