//! The stores a [`Locker`](crate::Locker) can sit on, behind one internal interface.
//!
//! Every store implements [`Store`]: take, release, extend and inspect locks atomically in
//! that store, say what it can do ([`Caps`]) and how long a lock it granted stays valid,
//! and own its wake-up feed (the pub/sub connections that announce releases). Everything
//! else (the per-key queue of waiters, renewal, loss cancellation, fencing in the body,
//! nested detection, errors and events) is store-agnostic and lives above this module. The
//! engine never asks which store it talks to; it asks what the store can do.
//!
//! The Redis stores share the [`node`] layer: the scripts, companion names and single-node
//! primitives, written once over any `redis` connection. Single Redis and Cluster are a
//! [`node::Deployment`] each; Redlock puts a quorum around the same primitives.
//!
//! ## Adding a store
//! A new store is a new file under `store/` with a type that implements [`Store`], plus one
//! line in the [`stores!`] list below; its constructor on `LockerBuilder` is the only other
//! code that names it. Nothing else may match on the store kind.

pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod redis;

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::BoxError;
use crate::info::LockInfo;

/// What a caller holds of a key: the whole of it, or a lease among several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An exclusive lock: the key holds its one owner's token.
    Lock,
    /// One of `permits` leases of a semaphore.
    Permit { permits: u32 },
    /// One reader's lease of a read/write lock.
    Read,
    /// The writer's lease of a read/write lock.
    Write,
}

impl Kind {
    /// The tag a lease of this kind carries in the store (`s3`, `r`, `w`), which tells a
    /// semaphore of 3 permits from one of 5, or from a read/write lock.
    pub(crate) fn tag(self) -> String {
        match self {
            Kind::Lock => "lock".to_owned(),
            Kind::Permit { permits } => format!("s{permits}"),
            Kind::Read => "r".to_owned(),
            Kind::Write => "w".to_owned(),
        }
    }

    /// The kind a tag names; `None` for a tag no kind writes.
    pub(crate) fn from_tag(tag: &str) -> Option<Kind> {
        match tag {
            "lock" => Some(Kind::Lock),
            "r" => Some(Kind::Read),
            "w" => Some(Kind::Write),
            t => {
                let permits = t.strip_prefix('s')?.parse().ok()?;
                (permits > 0).then_some(Kind::Permit { permits })
            }
        }
    }

    /// A lease's name in the store: its tag and its owner's token.
    pub(crate) fn member(self, token: &str) -> String {
        format!("{}:{token}", self.tag())
    }

    /// How many leases the key admits at once (0: no limit).
    pub(crate) fn limit(self) -> u32 {
        match self {
            Kind::Lock | Kind::Write => 1,
            Kind::Permit { permits } => permits,
            Kind::Read => 0,
        }
    }

    /// Whether a lease with `tag` can sit beside (or wait behind) leases of this kind.
    pub(crate) fn agrees_with(self, tag: &str) -> bool {
        match self {
            Kind::Read | Kind::Write => tag == "r" || tag == "w",
            other => other.tag() == tag,
        }
    }

    /// What a key held with `tag` is, for errors: "a semaphore of 3 permits".
    pub(crate) fn describe_tag(tag: &str) -> String {
        match tag {
            "r" | "w" => "a read/write lock".to_owned(),
            "lock" => "an exclusive lock".to_owned(),
            "shared" => "a semaphore or read/write lock".to_owned(),
            t => match t.strip_prefix('s') {
                Some(n) => format!("a semaphore of {n} permits"),
                None => format!("something else (`{t}`)"),
            },
        }
    }
}

/// One holder's lease on its keys: what release, extend and remaining act on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease<'a> {
    /// Every key, sorted and deduplicated (one, except for `Kind::Lock`).
    pub(crate) keys: &'a [String],
    pub(crate) token: &'a str,
    pub(crate) kind: Kind,
}

/// A lease owned: what a guard, a background release or a detached try keeps of a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnedLease {
    /// Every key, sorted and deduplicated (one, except for `Kind::Lock`).
    pub(crate) keys: Vec<String>,
    pub(crate) token: String,
    pub(crate) kind: Kind,
}

impl OwnedLease {
    /// The lease, borrowed, as the store takes it.
    pub(crate) fn lease(&self) -> Lease<'_> {
        Lease {
            keys: &self.keys,
            token: &self.token,
            kind: self.kind,
        }
    }
}

/// The outcome of one acquisition attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The lock is ours, with a fencing token when one was asked for.
    Acquired { fence: Option<u64> },
    /// Someone else holds it, for this long when the store said.
    Held { remaining: Option<Duration> },
    /// The key is held as something this request cannot share it with (a lock asked of a
    /// semaphore, or another permit count): the holders' tag, see [`Kind::describe_tag`].
    Conflict { held_as: String },
}

/// The outcome of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// The keys were ours and are deleted.
    Released,
    /// The keys are gone already: expired, force-released, or deleted by an earlier send
    /// of this same release that the client re-sent.
    Gone,
    /// Some key is held by another token; it was left alone.
    Foreign,
}

/// Wait for `count` replicas to acknowledge a write, at most `within` (Redis `WAIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replicas {
    pub(crate) count: u32,
    pub(crate) within: Duration,
}

/// One acquisition attempt, as the engine asks it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// Every key, sorted and deduplicated.
    pub(crate) keys: &'a [String],
    pub(crate) token: &'a str,
    pub(crate) ttl_ms: u64,
    pub(crate) fencing: bool,
    /// A queued waiter's try: a refusal should say how long the holder has left.
    pub(crate) waiting: bool,
    pub(crate) replicas: Option<Replicas>,
    pub(crate) kind: Kind,
    /// A writer that will wait: when refused, it registers its intent for this long, so
    /// that new readers queue behind it (0: no intent, e.g. try mode).
    pub(crate) intent_ms: u64,
}

impl<'a> Request<'a> {
    /// The lease this request asks for.
    pub(crate) fn lease(&self) -> Lease<'a> {
        Lease {
            keys: self.keys,
            token: self.token,
            kind: self.kind,
        }
    }
}

/// What a store can do; the engine refuses what it cannot before sending anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// Fencing tokens that strictly increase per key.
    pub(crate) fencing: bool,
    /// Several keys taken at once must share a hash slot (checked by `check_keys`).
    pub(crate) multi_key_same_slot: bool,
    /// Releases are announced per shard (`SPUBLISH`), not broadcast.
    pub(crate) sharded_wakeups: bool,
    /// Writes can wait for replicas (`WAIT`).
    pub(crate) replica_sync: bool,
    /// The store announces releases to every `Locker` by itself (pub/sub). Without it, the
    /// releasing `Locker` wakes its own waiters.
    pub(crate) announces_releases: bool,
}

/// Whom a wake-up feed wakes: the per-key queues of one `Locker`.
pub(crate) trait WakeTarget: Send + Sync {
    /// A release of `key` was announced.
    fn wake(&self, key: &str);
    /// Announcements may have been missed (a reconnect): every waiter should try again.
    fn wake_all(&self);
}

/// One lock store. Implemented by every store and by [`AnyStore`], which delegates to the
/// one a `Locker` was built with (static dispatch: no boxed future per call).
pub(crate) trait Store: Send + Sync + 'static {
    /// What the store is, for logs, `Debug` and errors (no credentials).
    fn describe(&self) -> String;

    /// What the store can do.
    fn caps(&self) -> Caps;

    /// How long a lock granted (or extended) for `ttl` stays valid, counted from when its
    /// request was sent, so the time the request took is already taken off. A store
    /// whose nodes' clocks may drift apart (Redlock) answers less than `ttl`. Renewal and
    /// loss detection use this figure, never the raw ttl. By default `ttl`: one clock
    /// counts it from when the request arrived, after the send.
    fn validity(&self, ttl: Duration) -> Duration {
        ttl
    }

    /// Whether every call ends (answer or error) within `limit` by itself, so the engine
    /// can skip its own timer.
    fn bounds_calls_within(&self, limit: Duration) -> bool;

    /// Whether `keys` can be taken together; the error says why not and how to fix it.
    /// By default any keys can.
    fn check_keys(&self, _keys: &[String]) -> Result<(), String> {
        Ok(())
    }

    /// Takes every key for the token, or none of them. Idempotent: a re-sent attempt that
    /// finds the keys already held by the same token reports them acquired.
    fn try_acquire(
        &self,
        req: &Request<'_>,
    ) -> impl Future<Output = Result<Attempt, BoxError>> + Send;

    /// Ends the lease (and a waiting writer's intent), and announces the release.
    fn release(&self, lease: Lease<'_>) -> impl Future<Output = Result<Release, BoxError>> + Send;

    /// Resets the lease's expiry to `ttl_ms` if it is still held; false otherwise.
    fn extend(
        &self,
        lease: Lease<'_>,
        ttl_ms: u64,
        replicas: Option<Replicas>,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// The least time left on the lease if it is still held.
    fn remaining(
        &self,
        lease: Lease<'_>,
    ) -> impl Future<Output = Result<Option<Duration>, BoxError>> + Send;

    /// Whether anyone holds `key` now.
    fn exists(&self, key: &str) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// How many leases `key` has now (0 or 1 for a lock; on Redlock, the most any
    /// master counts, so `permits - holders` never overstates what is free).
    fn holders(&self, key: &str) -> impl Future<Output = Result<u64, BoxError>> + Send;

    /// Deletes the key whoever owns it and announces it; true when there was one.
    fn force_release(&self, key: &str) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// What the store has of `key` now, for operators.
    fn inspect(&self, key: &str) -> impl Future<Output = Result<LockInfo, BoxError>> + Send;

    /// The stored lock keys matching a Redis glob `pattern` (companions left out), found
    /// with `SCAN`, never `KEYS` (on a Cluster, on every master).
    fn scan(&self, pattern: &str) -> impl Future<Output = Result<Vec<String>, BoxError>> + Send;

    /// Connects the store's wake-up feed to the `Locker`'s queues (once, at build).
    fn attach(&self, target: Weak<dyn WakeTarget>);

    /// Starts listening for releases of `key` (counted: every `watch` is paired with an
    /// `unwatch`). Returns a receiver that resolves once the subscription is in place,
    /// when this call started it.
    fn watch(&self, key: &str) -> Option<oneshot::Receiver<()>>;

    /// Stops one `watch` of `key`; the subscription ends with the last one.
    fn unwatch(&self, key: &str);
}

/// The list of stores: one line per store generates the [`AnyStore`] enum, its `From`
/// conversions and its delegating [`Store`] impl.
macro_rules! stores {
    ($($(#[$cfg:meta])* $variant:ident($ty:ty)),* $(,)?) => {
        /// The store a `Locker` was built with. It lives once per `Locker`, in an `Arc`,
        /// so the variants' size difference costs nothing worth a box.
        #[allow(clippy::large_enum_variant)]
        pub(crate) enum AnyStore {
            $($(#[$cfg])* $variant($ty)),*
        }

        $($(#[$cfg])* impl From<$ty> for AnyStore {
            fn from(store: $ty) -> Self {
                Self::$variant(store)
            }
        })*

        impl Store for AnyStore {
            fn describe(&self) -> String {
                match self { $($(#[$cfg])* Self::$variant(s) => s.describe()),* }
            }
            fn caps(&self) -> Caps {
                match self { $($(#[$cfg])* Self::$variant(s) => s.caps()),* }
            }
            fn validity(&self, ttl: Duration) -> Duration {
                match self { $($(#[$cfg])* Self::$variant(s) => s.validity(ttl)),* }
            }
            fn bounds_calls_within(&self, limit: Duration) -> bool {
                match self { $($(#[$cfg])* Self::$variant(s) => s.bounds_calls_within(limit)),* }
            }
            fn check_keys(&self, keys: &[String]) -> Result<(), String> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.check_keys(keys)),* }
            }
            async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.try_acquire(req).await),* }
            }
            async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.release(lease).await),* }
            }
            async fn extend(
                &self,
                lease: Lease<'_>,
                ttl_ms: u64,
                replicas: Option<Replicas>,
            ) -> Result<bool, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.extend(lease, ttl_ms, replicas).await),* }
            }
            async fn remaining(&self, lease: Lease<'_>) -> Result<Option<Duration>, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.remaining(lease).await),* }
            }
            async fn exists(&self, key: &str) -> Result<bool, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.exists(key).await),* }
            }
            async fn holders(&self, key: &str) -> Result<u64, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.holders(key).await),* }
            }
            async fn force_release(&self, key: &str) -> Result<bool, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.force_release(key).await),* }
            }
            async fn inspect(&self, key: &str) -> Result<LockInfo, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.inspect(key).await),* }
            }
            async fn scan(&self, pattern: &str) -> Result<Vec<String>, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.scan(pattern).await),* }
            }
            fn attach(&self, target: Weak<dyn WakeTarget>) {
                match self { $($(#[$cfg])* Self::$variant(s) => s.attach(target)),* }
            }
            fn watch(&self, key: &str) -> Option<oneshot::Receiver<()>> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.watch(key)),* }
            }
            fn unwatch(&self, key: &str) {
                match self { $($(#[$cfg])* Self::$variant(s) => s.unwatch(key)),* }
            }
        }
    };
}

stores! {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
    Cluster(redis::ClusterStore),
    Redlock(redis::RedlockStore),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Postgres),
}
