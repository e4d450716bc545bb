//! `RedlockStore`: one lock over N independent Redis masters, held while a majority
//! (N/2 + 1) holds it. Each master stores the lock in the single-server format, through the
//! node layer; this file only adds the quorum around it.
//!
//! ## What Redlock promises, and what not
//! - A lock is granted when a quorum of masters set it within its validity: `ttl` minus the
//!   time the requests took (counted from when they were sent) minus a clock-drift
//!   allowance of 1% of `ttl` + 2 ms. It keeps working with a minority of masters down.
//! - It assumes bounded process pauses, bounded network delay and clocks that run at about
//!   the same rate. A holder paused past its validity (a GC pause, a stalled VM), a master
//!   whose clock jumps forward, or a master restarted without persistence (it forgets the
//!   locks it held, so another majority can form) can let two holders in.
//! - A semaphore of P permits needs more than a majority: each master admits at most P
//!   leases, and P + 1 holders that each won a bare majority can share the masters out
//!   between them (3 masters, 2 permits: A+B, B+C, A+C). A permit is granted by
//!   `N*P/(P+1) + 1` masters, more than P + 1 holders can find among N masters admitting
//!   P each. For one permit (and for read/write locks, whose conflicts are pairwise) that
//!   is the usual majority; with more permits it is every master or nearly, so a
//!   semaphore on Redlock tolerates fewer failed masters than a lock does.
//! - Fencing tokens cannot be made strictly increasing across independent masters, so
//!   Redlock offers none: asking for one is a `Config` error. Where a stale holder must be
//!   made harmless, use single Redis or a Cluster with fencing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::aio::ConnectionManager;
use tokio::sync::oneshot;

use super::error::NodeError;
use super::feed::Feed;
use super::protocol::Node;
use super::server::{PubSub, Server};
use super::tls::TlsRoots;
use crate::error::BoxError;
use crate::info::{LockInfo, MasterView};
use crate::store::{Attempt, Caps, Kind, Lease, Release, Replicas, Request, Store, WakeTarget};

/// How long one master may take to answer one request: short, so that a hung master costs
/// each call little, and far below any sensible ttl.
const MASTER_LIMIT: Duration = Duration::from_millis(250);

/// The Redlock store over N masters.
///
/// ## Behavior
/// - Acquire sends `SET NX PX` to every master at once, each bounded by
///   [`MASTER_LIMIT`], and goes on as soon as a quorum took it within its validity
///   (`ttl - drift` from the send) or can no longer take it; the other requests finish in
///   the background, so the lock still lands on every master that answers. A failed
///   attempt is released on every master before it returns, and the engine retries with
///   jitter until `timeout`.
/// - Release, extend and `is_locked` act on every master and count a quorum.
/// - Every master announces its releases; a waiter listens on every master and wakes on
///   the first announcement.
/// - Fewer than a quorum of masters answering is a `Backend` error that says how many did.
pub(crate) struct RedlockStore {
    masters: Vec<Arc<Server>>,
    feeds: Vec<Feed<PubSub>>,
    /// Acquisitions still landing on the slower masters, by token: resolves once landed.
    late: Arc<Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>>,
}

/// The map of late acquisitions (a poisoned lock still holds a usable map).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one master answered.
type Answers<T> = Vec<Result<T, BoxError>>;
/// Keys owned by the requests that may outlive the call (see `on_masters`).
type ArcKeys = Arc<[String]>;

/// A lease owned by the per-master requests, which may outlive the call.
#[derive(Clone)]
struct ArcLease {
    keys: ArcKeys,
    token: Arc<str>,
    kind: Kind,
}

impl ArcLease {
    fn new(lease: Lease<'_>) -> Self {
        Self {
            keys: lease.keys.into(),
            token: lease.token.into(),
            kind: lease.kind,
        }
    }

    fn lease(&self) -> Lease<'_> {
        Lease {
            keys: &self.keys,
            token: &self.token,
            kind: self.kind,
        }
    }
}

impl RedlockStore {
    /// Checks the URLs (no I/O): at least one, each a Redis URL, no duplicates, an odd count.
    pub(crate) fn open(urls: &[String], roots: &TlsRoots) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("is empty; give an odd number of independent masters, e.g. 3".into());
        }
        let mut masters = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let server = Server::open_fail_fast(url, roots, MASTER_LIMIT).map_err(|e| {
                format!(
                    "holds `{}`, which is not a Redis URL ({e}); write `redis://host:6379`",
                    crate::url::RedactedUrl::new(url)
                )
            })?;
            if urls[..i].contains(url) {
                return Err(format!(
                    "names `{}` twice; each master must be a separate server",
                    server.url()
                ));
            }
            masters.push(Arc::new(server));
        }
        if urls.len().is_multiple_of(2) {
            return Err(format!(
                "names {} masters; use an odd number: {} tolerate as many failures as {} \
                 (a quorum is a majority), at more cost",
                urls.len(),
                urls.len(),
                urls.len() - 1
            ));
        }
        Ok(Self {
            feeds: masters.iter().map(|m| Feed::new(m.pubsub())).collect(),
            masters,
            late: Arc::default(),
        })
    }

    fn quorum(&self) -> usize {
        self.quorum_for(Kind::Lock)
    }

    /// How many masters must grant a lease of `kind` (see the module doc): a majority,
    /// or for a semaphore of P > 1 permits, `N*P/(P+1) + 1`, so that P + 1 holders
    /// cannot each find that many masters among N that admit P each.
    fn quorum_for(&self, kind: Kind) -> usize {
        let n = self.masters.len();
        match kind {
            Kind::Permit { permits } if permits > 1 => {
                let p = permits as usize;
                (n.saturating_mul(p) / (p + 1) + 1).min(n)
            }
            _ => n / 2 + 1,
        }
    }

    fn hosts(&self) -> String {
        let urls: Vec<String> = self.masters.iter().map(|m| m.url().to_string()).collect();
        urls.join(",")
    }

    /// Sends `op` to every master at once, each bounded by [`MASTER_LIMIT`], and gathers
    /// the answers until `enough` holds. The rest keep running in the background, so a
    /// lock still lands on every master that answers (it survives as many failures as it
    /// can) while the caller goes on as soon as a quorum has answered.
    async fn on_masters<T, F, Fut>(&self, op: F, enough: impl Fn(&Answers<T>) -> bool) -> Answers<T>
    where
        T: Send + 'static,
        F: Fn(ConnectionManager) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'static,
    {
        let (answers, rest) = self.gather(op, enough).await;
        if let (false, Ok(runtime)) = (rest.is_empty(), tokio::runtime::Handle::try_current()) {
            let mut rest = rest;
            runtime.spawn(async move { while rest.next().await.is_some() {} });
        }
        answers
    }

    /// As [`Self::on_masters`], for an acquisition of `token`: while its requests to the
    /// slower masters are still landing, a release or undo of the same token waits for
    /// them (see [`Self::landed`]), so that it reaches each master after the `SET` it
    /// undoes, never before (issue 16: a master still connecting took the lock after its
    /// release had passed, and kept it for its ttl).
    async fn on_masters_for<T, F, Fut>(
        &self,
        token: &str,
        op: F,
        enough: impl Fn(&Answers<T>) -> bool,
    ) -> Answers<T>
    where
        T: Send + 'static,
        F: Fn(ConnectionManager) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'static,
    {
        let (answers, rest) = self.gather(op, enough).await;
        if let (false, Ok(runtime)) = (rest.is_empty(), tokio::runtime::Handle::try_current()) {
            let (done, landed) = tokio::sync::watch::channel(false);
            let late = self.late.clone();
            let token = token.to_owned();
            lock(&late).insert(token.clone(), landed);
            let mut rest = rest;
            runtime.spawn(async move {
                while rest.next().await.is_some() {}
                lock(&late).remove(&token);
                let _ = done.send(true);
            });
        }
        answers
    }

    /// Waits (at most a master's bound, twice) until the acquisition of `token` has
    /// landed on every master it was sent to.
    async fn landed(&self, token: &str) {
        let landed = lock(&self.late).get(token).cloned();
        if let Some(mut landed) = landed {
            let _ = tokio::time::timeout(MASTER_LIMIT * 2, landed.wait_for(|done| *done)).await;
        }
    }

    /// Sends `op` to every master, gathers answers until `enough` holds; the requests
    /// still out come back with them.
    async fn gather<T, F, Fut>(
        &self,
        op: F,
        enough: impl Fn(&Answers<T>) -> bool,
    ) -> (
        Answers<T>,
        FuturesUnordered<impl Future<Output = Result<T, BoxError>> + Send + 'static>,
    )
    where
        T: Send + 'static,
        F: Fn(ConnectionManager) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'static,
    {
        let mut pending: FuturesUnordered<_> = self
            .masters
            .iter()
            .map(|master| {
                let (master, op) = (master.clone(), op.clone());
                async move {
                    // Connection errors name the master already; the op's are wrapped here.
                    let call = async {
                        let conn = master.conn().await?;
                        op(conn)
                            .await
                            .map_err(|e| Box::new(NodeError::new(master.url(), e)) as BoxError)
                    };
                    // Connected, the client bounds every command by MASTER_LIMIT itself,
                    // which saves a timer per master per call.
                    if master.bounds_calls_within(MASTER_LIMIT) {
                        return call.await;
                    }
                    match tokio::time::timeout(MASTER_LIMIT, call).await {
                        Ok(answer) => answer,
                        Err(_) => Err(Box::new(NodeError::new(
                            master.url(),
                            format!("no answer within {MASTER_LIMIT:?}"),
                        )) as BoxError),
                    }
                }
            })
            .collect();
        let mut answers = Vec::with_capacity(self.masters.len());
        while let Some(answer) = pending.next().await {
            answers.push(answer);
            if enough(&answers) {
                break;
            }
        }
        (answers, pending)
    }

    /// Releases on every master, whatever each answered before (also those that did not
    /// answer: their `SET` may have landed), without announcing it: no one held the lock,
    /// and an announcement would wake every waiter, this one too, into another try.
    async fn undo(&self, lease: &ArcLease) {
        self.landed(&lease.token).await;
        let lease = lease.clone();
        let _ = self
            .on_masters(
                move |mut c| {
                    let lease = lease.clone();
                    async move { Node::QUIET.undo(&mut c, lease.lease()).await }
                },
                |_| false,
            )
            .await;
    }

    /// Sends `op` to every master and waits for every answer; fewer than `quorum`
    /// answers is the store's error.
    async fn on_quorum<T, F, Fut>(&self, quorum: usize, op: F) -> Result<Answers<T>, BoxError>
    where
        T: Send + 'static,
        F: Fn(ConnectionManager) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'static,
    {
        let answers = self.on_masters(op, |_| false).await;
        if answered(&answers) < quorum {
            return Err(self.no_quorum(&answers, quorum));
        }
        Ok(answers)
    }

    /// The error when fewer than `quorum` masters answered.
    fn no_quorum<T>(&self, answers: &Answers<T>, quorum: usize) -> BoxError {
        Box::new(NoQuorum {
            answered: answered(answers),
            masters: self.masters.len(),
            quorum,
            causes: answers
                .iter()
                .filter_map(|a| a.as_ref().err().map(ToString::to_string))
                .collect(),
        })
    }
}

/// Fewer masters answered than a quorum: how many did, of how many, and why the others
/// did not (each naming its master).
#[derive(Debug)]
struct NoQuorum {
    answered: usize,
    masters: usize,
    quorum: usize,
    causes: Vec<String>,
}

impl std::fmt::Display for NoQuorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "only {} of {} redlock masters answered, and a quorum is {}: {}",
            self.answered,
            self.masters,
            self.quorum,
            self.causes.join("; ")
        )
    }
}

impl std::error::Error for NoQuorum {}

/// How many masters answered.
fn answered<T>(answers: &Answers<T>) -> usize {
    answers.iter().filter(|a| a.is_ok()).count()
}

/// How many masters failed to answer.
fn failed<T>(answers: &Answers<T>) -> usize {
    answers.len() - answered(answers)
}

/// Ok answers satisfying `pred`.
fn count<T>(answers: &Answers<T>, pred: impl Fn(&T) -> bool) -> usize {
    answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(&pred))
        .count()
}

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
                    async move { Node::SINGLE.release(&mut c, lease.lease()).await }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn open_refuses_empty_malformed_duplicate_and_even() {
        let err = |l: &[&str]| {
            RedlockStore::open(&urls(l), &TlsRoots::default())
                .err()
                .unwrap_or_default()
        };
        assert!(err(&[]).contains("empty"));
        assert!(
            err(&["redis://a:1", "http://u:secret@b", "redis://c:1"]).contains("not a Redis URL")
        );
        assert!(!err(&["redis://a:1", "http://u:secret@b", "redis://c:1"]).contains("secret"));
        assert!(err(&["redis://a:1", "redis://a:1", "redis://c:1"]).contains("twice"));
        assert!(err(&["redis://a:1", "redis://b:1"]).contains("odd"));
        assert!(
            RedlockStore::open(
                &urls(&["redis://a:1", "redis://b:1", "redis://c:1"]),
                &TlsRoots::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn validity_takes_off_the_drift_allowance() {
        let store = RedlockStore::open(&urls(&["redis://a:1"]), &TlsRoots::default()).unwrap();
        assert_eq!(
            store.validity(Duration::from_secs(10)),
            Duration::from_millis(9_898)
        );
        assert_eq!(store.quorum(), 1);
    }

    #[test]
    fn semaphore_quorum_keeps_p_plus_one_holders_from_forming() {
        let of = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("redis://h{i}:1")).collect();
            RedlockStore::open(&list, &TlsRoots::default()).unwrap()
        };
        let permits = |permits| Kind::Permit { permits };
        for n in [1, 3, 5, 7] {
            let store = of(n);
            assert_eq!(store.quorum_for(Kind::Lock), n / 2 + 1);
            assert_eq!(store.quorum_for(permits(1)), n / 2 + 1);
            assert_eq!(store.quorum_for(Kind::Read), n / 2 + 1);
            for p in 1..=10u32 {
                let q = store.quorum_for(permits(p));
                // P + 1 holders, each granted by q masters that admit P each: impossible
                // when (P + 1) * q exceeds N * P.
                assert!((p as usize + 1) * q > n * p as usize, "n={n} p={p} q={q}");
                assert!(q <= n);
            }
        }
        assert_eq!(of(3).quorum_for(permits(2)), 3);
        assert_eq!(of(5).quorum_for(permits(2)), 4);
        assert_eq!(of(5).quorum_for(permits(3)), 4);
    }
}
