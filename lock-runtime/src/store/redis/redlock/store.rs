//! Redlock's `Store` impl: each operation sent to every master and decided by quorum;
//! a release announced by every master wakes a waiter on the first.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use super::fanout::ArcLease;
use super::quorum::{NoQuorum, count, failed};
use super::{MASTER_LIMIT, RedlockStore};
use crate::error::BoxError;
use crate::info::{LockInfo, MasterView};
use crate::store::redis::batch::Op;
use crate::store::redis::protocol::Node;
use crate::store::{Attempt, Caps, Kind, Lease, Release, Replicas, Request, Store, WakeTarget};

impl Store for RedlockStore {
    fn describe(&self) -> String {
        format!("redlock({})", self.hosts())
    }

    fn product(&self) -> &'static str {
        "the Redlock masters"
    }

    fn caps(&self) -> Caps {
        Caps {
            fencing: false,
            replica_sync: false,
            announces_releases: true,
        }
    }

    fn validity(&self, ttl: Duration) -> Duration {
        ttl.saturating_sub(drift(ttl))
    }

    fn bounds_calls_within(&self, limit: Duration) -> bool {
        // Every master's answer is bounded by MASTER_LIMIT, and they are awaited together.
        limit >= MASTER_LIMIT
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        let (n, quorum) = (self.masters.len(), self.quorum_for(req.kind));
        let sent = tokio::time::Instant::now();
        let lease = ArcLease::new(req.lease());
        let (ttl_ms, waiting, intent_ms) = (req.ttl_ms, req.waiting, req.intent_ms);
        let taken = |a: &Attempt| matches!(a, Attempt::Acquired { .. });
        let answers = {
            let lease = lease.clone();
            self.on_masters_for(
                req.token,
                move |mut c| {
                    let lease = lease.clone();
                    async move {
                        if let (Kind::Lock, [key], false) = (lease.kind, &lease.keys[..], waiting) {
                            let op = Op::Take {
                                key,
                                token: &lease.token,
                                ttl_ms,
                                fencing: false,
                            };
                            return Ok(match c.batch.run(c.conn, op).await? {
                                0 => Attempt::Held { remaining: None },
                                _ => Attempt::Acquired { fence: None },
                            });
                        }
                        let req = Request {
                            keys: &lease.keys,
                            token: &lease.token,
                            ttl_ms,
                            fencing: false,
                            waiting,
                            replicas: None,
                            kind: lease.kind,
                            intent_ms,
                        };
                        Node::SINGLE.try_acquire(&mut c, &req).await
                    }
                },
                // Go on once a quorum took it. A failed try waits for every answer: it
                // must undo on every master anyway, and its error counts them all.
                move |answers| {
                    let won = count(answers, taken);
                    won >= quorum
                },
            )
            .await
        };
        let won = count(&answers, taken);
        let ttl = Duration::from_millis(ttl_ms);
        if won >= quorum && sent.elapsed() < self.validity(ttl) {
            return Ok(Attempt::Acquired { fence: None });
        }
        self.undo(&lease).await;
        if let Some(held_as) = answers.iter().find_map(|a| match a {
            Ok(Attempt::Conflict { held_as }) => Some(held_as.clone()),
            _ => None,
        }) {
            return Ok(Attempt::Conflict { held_as });
        }
        if failed(&answers) > n - quorum {
            return Err(self.no_quorum(&answers, quorum));
        }
        let remaining = answers
            .iter()
            .filter_map(|a| match a {
                Ok(Attempt::Held { remaining }) => *remaining,
                _ => None,
            })
            .min();
        Ok(Attempt::Held { remaining })
    }

    async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        self.landed(lease.token).await;
        let (n, quorum) = (self.masters.len(), self.quorum_for(lease.kind));
        let lease = ArcLease::new(lease);
        let released = |r: &Release| *r == Release::Released;
        let answers = self
            .on_masters(
                move |mut c| {
                    let lease = lease.clone();
                    async move {
                        if let (Kind::Lock, [key]) = (lease.kind, &lease.keys[..]) {
                            let token = &lease.token;
                            return Ok(
                                match c.batch.run(c.conn, Op::Give { key, token }).await? {
                                    1 => Release::Released,
                                    0 => Release::Foreign,
                                    _ => Release::Gone,
                                },
                            );
                        }
                        Node::SINGLE.release(&mut c, lease.lease()).await
                    }
                },
                move |answers| {
                    let yes = count(answers, released);
                    yes >= quorum
                },
            )
            .await;
        if count(&answers, released) >= quorum {
            Ok(Release::Released)
        } else if failed(&answers) > n - quorum {
            Err(self.no_quorum(&answers, quorum))
        } else if count(&answers, |r| *r == Release::Foreign) > 0 {
            Ok(Release::Foreign)
        } else {
            Ok(Release::Gone)
        }
    }

    async fn extend(
        &self,
        lease: Lease<'_>,
        ttl_ms: u64,
        _replicas: Option<Replicas>,
    ) -> Result<bool, BoxError> {
        let (n, quorum) = (self.masters.len(), self.quorum_for(lease.kind));
        let lease = ArcLease::new(lease);
        let answers = self
            .on_masters(
                move |mut c| {
                    let lease = lease.clone();
                    async move {
                        Node::SINGLE
                            .extend(&mut c, lease.lease(), ttl_ms, None)
                            .await
                    }
                },
                move |answers| {
                    let yes = count(answers, |v| *v);
                    yes >= quorum
                },
            )
            .await;
        if count(&answers, |v| *v) >= quorum {
            Ok(true)
        } else if failed(&answers) > n - quorum {
            Err(self.no_quorum(&answers, quorum))
        } else {
            Ok(false)
        }
    }

    async fn remaining(&self, lease: Lease<'_>) -> Result<Option<Duration>, BoxError> {
        let quorum = self.quorum_for(lease.kind);
        let lease = ArcLease::new(lease);
        let answers = self
            .on_quorum(quorum, move |mut c| {
                let lease = lease.clone();
                async move { Node::SINGLE.remaining(&mut c, lease.lease()).await }
            })
            .await?;
        let mut left: Vec<Duration> = answers
            .iter()
            .filter_map(|a| a.as_ref().ok().copied().flatten())
            .collect();
        if left.len() < quorum {
            return Ok(None);
        }
        // The longest time a quorum still holds it.
        left.sort_unstable_by(|a, b| b.cmp(a));
        Ok(left.get(quorum - 1).copied())
    }

    async fn exists(&self, key: &str) -> Result<bool, BoxError> {
        let quorum = self.quorum();
        let key: Arc<str> = key.into();
        let answers = self
            .on_quorum(quorum, move |mut c| {
                let key = key.clone();
                async move { Node::SINGLE.exists(&mut c, &key).await }
            })
            .await?;
        Ok(count(&answers, |v| *v) >= quorum)
    }

    async fn holders(&self, key: &str) -> Result<u64, BoxError> {
        let key: Arc<str> = key.into();
        let answers = self
            .on_quorum(self.quorum(), move |mut c| {
                let key = key.clone();
                async move { Node::SINGLE.holders(&mut c, &key).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().max().unwrap_or(0))
    }

    async fn force_release(&self, key: &str) -> Result<bool, BoxError> {
        let key: Arc<str> = key.into();
        let answers = self
            .on_quorum(self.quorum(), move |mut c| {
                let key = key.clone();
                async move { Node::SINGLE.force_release(&mut c, &key).await }
            })
            .await?;
        Ok(count(&answers, |v| *v) > 0)
    }

    async fn inspect(&self, key: &str) -> Result<LockInfo, BoxError> {
        let owned: Arc<str> = key.into();
        // Every master, in the configured order (not the order they answered).
        let mut views = Vec::with_capacity(self.masters.len());
        for master in &self.masters {
            let owned = owned.clone();
            let view = async {
                let mut conn = master.conn().await?;
                Node::SINGLE.inspect(&mut conn, &owned).await
            };
            let view = match tokio::time::timeout(MASTER_LIMIT, view).await {
                Ok(view) => view,
                Err(_) => Err(format!("no answer within {MASTER_LIMIT:?}").into()),
            };
            views.push((master.url().to_string(), view));
        }
        let answered = views.iter().filter(|(_, v)| v.is_ok()).count();
        if answered < self.quorum() {
            let causes: Vec<String> = views
                .iter()
                .filter_map(|(url, v)| v.as_ref().err().map(|e| format!("{url}: {e}")))
                .collect();
            return Err(Box::new(NoQuorum {
                answered,
                masters: self.masters.len(),
                quorum: self.quorum(),
                causes,
            }));
        }
        let mut info = LockInfo::free(key);
        let mut left: Vec<Duration> = Vec::new();
        for (url, view) in views {
            let mut master = MasterView {
                url,
                ..MasterView::default()
            };
            match view {
                Ok(v) => {
                    if v.held {
                        left.extend(v.remaining);
                        info.holder = info.holder.or(v.holder.clone());
                    }
                    info.waiters = info.waiters.max(v.waiters);
                    (master.held, master.remaining, master.holder) =
                        (v.held, v.remaining, v.holder);
                }
                Err(e) => master.error = Some(e.to_string()),
            }
            info.masters.push(master);
        }
        let holders = info.masters.iter().filter(|m| m.held).count();
        info.held = holders >= self.quorum();
        if info.held {
            // The longest time a quorum still holds it.
            left.sort_unstable_by(|a, b| b.cmp(a));
            info.remaining = left.get(self.quorum() - 1).copied();
        } else {
            info.holder = None;
        }
        Ok(info)
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, BoxError> {
        let pattern: Arc<str> = pattern.into();
        let answers = self
            .on_quorum(self.quorum(), move |mut c| {
                let pattern = pattern.clone();
                async move { Node::SINGLE.scan(&mut c, &pattern).await }
            })
            .await?;
        let mut keys: Vec<String> = answers.into_iter().flatten().flatten().collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    fn attach(&self, target: Weak<dyn WakeTarget>) {
        for feed in &self.feeds {
            feed.attach(target.clone());
        }
    }

    fn watch(&self, key: &str) -> Option<oneshot::Receiver<()>> {
        // Listens on every master; the first subscription in place is enough to wait on.
        let mut first = None;
        for feed in &self.feeds {
            let ack = feed.watch(key);
            first = first.or(ack);
        }
        first
    }

    fn unwatch(&self, key: &str) {
        for feed in &self.feeds {
            feed.unwatch(key);
        }
    }
}

/// The clock-drift allowance: 1% of the ttl plus 2 ms.
fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}
