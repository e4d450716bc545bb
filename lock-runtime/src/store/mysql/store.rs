//! The store type and its `Store` impl: every call an [`Op`] run to its end (`finish`),
//! on a pooled connection, retried after a deadlock or a lock wait timeout.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mysql_async::{Conn, Pool};
use tokio::sync::{OnceCell, oneshot};

use super::batch::{Queue, batches};
use super::feed::Feed;
use super::ops::{self, Seen};
use super::setup::{self, CONNECT_LIMIT};
use super::sql::Statements;
use crate::error::{BoxError, LockError};
use crate::info::{LockInfo, token_prefix};
use crate::store::{
    Attempt, Caps, Kind, Lease, Release, Replicas, Request, Store, WakeTarget, finish, shared_key,
};

/// How long one call may go on retrying deadlocks and lock wait timeouts (and at most how
/// long its task lives: a hung server's statement is abandoned, its connection dropped).
pub(super) const CALL_LIMIT: Duration = crate::time::CALL_LIMIT;

/// The MySQL store (see the module doc), behind an `Arc` so that a call's task can
/// outlive its caller.
pub(crate) struct MysqlStore(pub(super) Arc<Inner>);

/// The store's state, shared with its calls' tasks.
pub(super) struct Inner {
    pool: Pool,
    /// Connections given back by the last calls, taken before the pool's.
    idle: Mutex<Vec<Conn>>,
    /// One permit per pooled connection: a call queues here for a free one (within
    /// [`CALL_LIMIT`]), and only then may take [`CONNECT_LIMIT`] to connect.
    pub(super) slots: tokio::sync::Semaphore,
    /// `host:port/database`, for errors and `Debug`: no user, no password.
    pub(super) host: String,
    database: String,
    /// Set once the tables exist.
    ready: OnceCell<()>,
    pub(super) sql: Statements,
    /// This process's `Locker`s on the database: a release wakes them all.
    pub(super) feed: Arc<Feed>,
    /// The group commit's queue ([`super::batch`]).
    pub(super) queue: Mutex<Queue>,
}

/// One call, with everything it needs owned.
pub(super) enum Op {
    Acquire(Owned),
    Release(Vec<String>, String, Kind),
    Extend(Vec<String>, String, Kind, u64),
    Remaining(Vec<String>, String, Kind),
    Holders(String),
    /// One key, as a list.
    Force(Vec<String>),
    Inspect(String),
    Scan(String),
}

/// What a call answered.
pub(super) enum Out {
    Attempt(Attempt),
    Release(Release),
    Bool(bool),
    Left(Option<Duration>),
    Count(u64),
    Seen(Seen),
    Keys(Vec<String>),
}

/// A request's fields, owned, for the call's task.
pub(super) struct Owned {
    pub(super) keys: Vec<String>,
    pub(super) token: String,
    pub(super) ttl_ms: u64,
    pub(super) fencing: bool,
    pub(super) kind: Kind,
    pub(super) intent_ms: u64,
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Acquire(_) => "acquire",
            Op::Release(..) => "release",
            Op::Extend(..) => "extend",
            Op::Remaining(..) => "remaining",
            Op::Holders(_) => "count",
            Op::Force(_) => "force release",
            Op::Inspect(_) => "inspect",
            Op::Scan(_) => "scan",
        }
    }
}

/// The keys of a release.
fn req_keys(op: &Op) -> Vec<String> {
    match op {
        Op::Release(keys, ..) => keys.clone(),
        _ => Vec::new(),
    }
}

impl MysqlStore {
    /// Checks the URL and the database name (no I/O).
    pub(crate) fn open(url: &str, database: Option<&str>) -> Result<Self, LockError> {
        let opened = setup::open(url, database)?;
        let quoted = format!("`{}`", opened.database);
        Ok(Self(Arc::new(Inner {
            pool: opened.pool,
            slots: tokio::sync::Semaphore::new(setup::POOL_SIZE),
            idle: Mutex::default(),
            feed: Feed::of(&opened.host),
            host: opened.host,
            sql: Statements::new(&quoted),
            database: opened.database,
            ready: OnceCell::new(),
            queue: Mutex::default(),
        })))
    }

    /// Runs `op` to its end ([`finish`]): in the caller's task while it waits, on a task of
    /// its own once it stops waiting, and then an acquisition it made is released (after
    /// it landed).
    async fn call(&self, op: Op) -> Result<Out, BoxError> {
        let inner = self.0.clone();
        let work = async move {
            let outcome = inner.bounded(&op).await;
            match (&op, &outcome) {
                (Op::Release(keys, ..), Ok(Out::Release(Release::Released)))
                | (Op::Force(keys), Ok(Out::Bool(_))) => inner.feed.released(keys),
                _ => {}
            }
            (outcome, op, inner)
        };
        let (outcome, ..) = finish(work, |(outcome, op, inner)| async move {
            let taken = match (&op, &outcome) {
                (Op::Acquire(_), Ok(Out::Attempt(Attempt::Acquired { .. }))) => true,
                // A waiting writer's intent is withdrawn too.
                (Op::Acquire(req), Ok(_)) => req.intent_ms > 0,
                _ => false,
            };
            if taken && let Op::Acquire(req) = op {
                let release = Op::Release(req.keys, req.token, req.kind);
                if let Ok(Out::Release(Release::Released)) = inner.run(&release).await {
                    inner.feed.released(&req_keys(&release));
                }
            }
        })
        .await;
        outcome
    }
}

impl MysqlStore {
    /// A take as a call of its own (not batched).
    pub(super) async fn acquire_alone(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        if req.kind != Kind::Lock {
            shared_key(req.keys)?;
        }
        let op = Op::Acquire(Owned {
            keys: req.keys.to_vec(),
            token: req.token.to_owned(),
            ttl_ms: req.ttl_ms,
            fencing: req.fencing,
            kind: req.kind,
            intent_ms: req.intent_ms,
        });
        match self.call(op).await? {
            Out::Attempt(a) => Ok(a),
            _ => Err(mismatch(&self.0.host)),
        }
    }

    /// A release as a call of its own (not batched).
    pub(super) async fn release_alone(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        let op = Op::Release(lease.keys.to_vec(), lease.token.to_owned(), lease.kind);
        match self.call(op).await? {
            Out::Release(r) => Ok(r),
            _ => Err(mismatch(&self.0.host)),
        }
    }
}

impl Inner {
    /// [`Inner::run`], abandoned after twice [`CALL_LIMIT`] (a hung server).
    pub(super) async fn bounded(&self, op: &Op) -> Result<Out, BoxError> {
        match tokio::time::timeout(CALL_LIMIT * 2, self.run(op)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(setup::failed(
                &self.host,
                op.name(),
                &format!("no answer within {:?}", CALL_LIMIT * 2),
            )),
        }
    }

    /// A pooled connection, within the connect limit, with the tables created on first use.
    ///
    /// The connection a call just gave back first (kept here, the pool's recycling is a
    /// task away), and whether it came from there.
    pub(super) async fn conn(&self) -> Result<(Conn, bool), mysql_async::Error> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok((conn, true));
        }
        let conn = tokio::time::timeout(CONNECT_LIMIT, self.pool.get_conn());
        let mut conn = match conn.await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(mysql_async::Error::Other(
                    format!(
                        "no connection within {CONNECT_LIMIT:?}; check that the MySQL server \
                         is running, reachable and not overloaded"
                    )
                    .into(),
                ));
            }
        };
        self.ready
            .get_or_try_init(|| setup::create_tables(&mut conn, &self.database))
            .await?;
        Ok((conn, false))
    }

    /// Keeps a connection whose call went well for the next call.
    pub(super) fn give_back(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < setup::POOL_SIZE
        {
            idle.push(conn);
        }
    }

    /// `op` on a connection, again after a deadlock or a lock wait timeout, within
    /// [`CALL_LIMIT`].
    async fn run(&self, op: &Op) -> Result<Out, BoxError> {
        let deadline = tokio::time::Instant::now() + CALL_LIMIT;
        let mut pause = Duration::from_millis(2);
        let Ok(Ok(_slot)) = tokio::time::timeout(CALL_LIMIT, self.slots.acquire()).await else {
            return Err(setup::failed(
                &self.host,
                op.name(),
                &format!(
                    "every one of the {} pooled connections stayed busy for {CALL_LIMIT:?}",
                    setup::POOL_SIZE
                ),
            ));
        };
        loop {
            let (outcome, kept) = match self.conn().await {
                Ok((mut conn, kept)) => match self.once(&mut conn, op).await {
                    Ok(out) => {
                        self.give_back(conn);
                        (Ok(out), kept)
                    }
                    // Dropped: the pool cleans it up, or closes it.
                    Err(e) => (Err(e), kept),
                },
                Err(e) => (Err(e), false),
            };
            match outcome {
                Ok(out) => return Ok(out),
                // A kept connection the server closed since (a restart, its idle
                // timeout): once more on a connection from the pool. Every operation may
                // be sent twice (a take finds the key already the token's).
                Err(e) if kept && setup::broken(&e) => {}
                Err(e) if setup::retriable(&e) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(setup::failed(&self.host, op.name(), &setup::cause(&e))),
            }
        }
    }

    async fn once(&self, conn: &mut Conn, op: &Op) -> Result<Out, mysql_async::Error> {
        let sql = &self.sql;
        Ok(match op {
            Op::Acquire(r) if r.kind == Kind::Lock => {
                Out::Attempt(ops::acquire(conn, sql, &r.keys, &r.token, r.ttl_ms, r.fencing).await?)
            }
            Op::Acquire(r) => match r.keys.as_slice() {
                [key] => Out::Attempt(
                    ops::acquire_shared(conn, sql, key, &r.token, r.kind, r.ttl_ms, r.intent_ms)
                        .await?,
                ),
                _ => Out::Attempt(Attempt::Held { remaining: None }),
            },
            Op::Release(keys, token, Kind::Lock) => {
                Out::Release(ops::release(conn, sql, keys, token).await?)
            }
            Op::Release(keys, token, kind) => match keys.as_slice() {
                [key] => {
                    Out::Release(ops::release_shared(conn, sql, key, &kind.member(token)).await?)
                }
                _ => Out::Release(Release::Gone),
            },
            Op::Extend(keys, token, Kind::Lock, ttl) => {
                Out::Bool(ops::extend(conn, sql, keys, token, *ttl).await?)
            }
            Op::Extend(keys, token, kind, ttl) => match keys.as_slice() {
                [key] => {
                    Out::Bool(ops::extend_shared(conn, sql, key, &kind.member(token), *ttl).await?)
                }
                _ => Out::Bool(false),
            },
            Op::Remaining(keys, token, Kind::Lock) => {
                Out::Left(ops::remaining(conn, sql, keys, token).await?)
            }
            Op::Remaining(keys, token, kind) => match keys.as_slice() {
                [key] => {
                    Out::Left(ops::remaining_shared(conn, sql, key, &kind.member(token)).await?)
                }
                _ => Out::Left(None),
            },
            Op::Holders(key) => Out::Count(ops::holders(conn, sql, key).await?),
            Op::Force(keys) => match keys.as_slice() {
                [key] => Out::Bool(ops::force_release(conn, sql, key).await?),
                _ => Out::Bool(false),
            },
            Op::Inspect(key) => Out::Seen(ops::inspect(conn, sql, key).await?),
            Op::Scan(pattern) => Out::Keys(ops::scan(conn, sql, pattern).await?),
        })
    }
}

/// An answer of another kind than the call's: a bug, reported as a backend failure.
fn mismatch(host: &str) -> BoxError {
    setup::failed(host, "call", "the answer did not match the call")
}

impl Store for MysqlStore {
    fn describe(&self) -> String {
        format!("mysql({})", self.0.host)
    }

    fn product(&self) -> &'static str {
        "MySQL"
    }

    fn caps(&self) -> Caps {
        Caps {
            fencing: true,
            replica_sync: false,
            // To every `Locker` of this process on the database (see `feed`).
            announces_releases: true,
        }
    }

    fn bounds_calls_within(&self, _limit: Duration) -> bool {
        // A statement on a hung server waits: the engine bounds every call.
        false
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        if batches(req) {
            return self.take_batched(req).await;
        }
        self.acquire_alone(req).await
    }

    async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        self.give_batched(lease).await
    }

    async fn extend(
        &self,
        lease: Lease<'_>,
        ttl_ms: u64,
        _replicas: Option<Replicas>,
    ) -> Result<bool, BoxError> {
        let op = Op::Extend(
            lease.keys.to_vec(),
            lease.token.to_owned(),
            lease.kind,
            ttl_ms,
        );
        match self.call(op).await? {
            Out::Bool(b) => Ok(b),
            _ => Err(mismatch(&self.0.host)),
        }
    }

    async fn remaining(&self, lease: Lease<'_>) -> Result<Option<Duration>, BoxError> {
        let op = Op::Remaining(lease.keys.to_vec(), lease.token.to_owned(), lease.kind);
        match self.call(op).await? {
            Out::Left(l) => Ok(l),
            _ => Err(mismatch(&self.0.host)),
        }
    }

    async fn holders(&self, key: &str) -> Result<u64, BoxError> {
        match self.call(Op::Holders(key.to_owned())).await? {
            Out::Count(n) => Ok(n),
            _ => Err(mismatch(&self.0.host)),
        }
    }

    async fn force_release(&self, key: &str) -> Result<bool, BoxError> {
        match self.call(Op::Force(vec![key.to_owned()])).await? {
            Out::Bool(b) => Ok(b),
            _ => Err(mismatch(&self.0.host)),
        }
    }

    async fn inspect(&self, key: &str) -> Result<LockInfo, BoxError> {
        let seen = match self.call(Op::Inspect(key.to_owned())).await? {
            Out::Seen(seen) => seen,
            _ => return Err(mismatch(&self.0.host)),
        };
        let waiters = self.0.feed.waiters(key);
        Ok(LockInfo {
            held: seen.left.is_some(),
            remaining: seen.left,
            holder: seen.token.as_deref().map(token_prefix),
            fence: seen.fence,
            waiters,
            ..LockInfo::free(key)
        })
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, BoxError> {
        match self.call(Op::Scan(pattern.to_owned())).await? {
            Out::Keys(keys) => Ok(keys),
            _ => Err(mismatch(&self.0.host)),
        }
    }

    fn attach(&self, target: Weak<dyn WakeTarget>) {
        self.0.feed.attach(target);
    }

    fn watch(&self, key: &str) -> Option<oneshot::Receiver<()>> {
        self.0.feed.watch(key);
        None
    }

    fn unwatch(&self, key: &str) {
        self.0.feed.unwatch(key);
    }
}
