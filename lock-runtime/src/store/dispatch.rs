//! The one list of stores, and what it generates: [`AnyStore`], one enum variant per
//! store, and its [`Store`] impl, which delegates; the registry's [`STORES`], each store's
//! [`Entry`]; and [`AnyStore::entry`].
//!
//! The hot calls (`try_acquire`, `release`, `extend`) box their store's future. Unboxed,
//! the future of every call would be as large as the largest store's (11.6 KB for an
//! `acquire` with every store built in, 3.1 KB with the default ones), and every layer of
//! the engine above that moves it copies that much: on the memory store with every feature
//! on, a cycle took 1,280 ns unboxed and 985 ns boxed; with the default features 900-940
//! and 870-890 ns (200,000 `acquire` + `release` cycles in a loop on one thread).

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::oneshot;

use super::registry::Entry;
use super::{Attempt, Lease, Release, Replicas, Request};
use super::{Caps, Store, WakeTarget};
use crate::error::BoxError;
use crate::info::LockInfo;

/// The list of stores: one line per store, `Variant(store type) = its entry`, generates
/// the [`AnyStore`] enum, its `From` conversions, its delegating [`Store`] impl, and the
/// registry ([`STORES`], [`AnyStore::entry`]). A `#[cfg]` on a line gates the variant, not
/// the entry: a store whose feature is off stays in the registry, unopenable.
macro_rules! stores {
    ($($(#[$cfg:meta])* $variant:ident($ty:ty) = $entry:path),* $(,)?) => {
        /// The store a `Locker` was built with. It lives once per `Locker`, in an `Arc`,
        /// so the variants' size difference costs nothing worth a box.
        #[allow(clippy::large_enum_variant)]
        pub(crate) enum AnyStore {
            $($(#[$cfg])* $variant($ty)),*
        }

        /// Every store's entry, in the list's order, feature-gated ones included.
        pub(super) const STORES: &[Entry] = &[$($entry),*];

        impl AnyStore {
            /// The registry's entry of this store.
            pub(crate) fn entry(&self) -> &'static Entry {
                match self { $($(#[$cfg])* Self::$variant(_) => &$entry),* }
            }
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
            fn product(&self) -> &'static str {
                match self { $($(#[$cfg])* Self::$variant(s) => s.product()),* }
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
            fn queues_waiters(&self) -> bool {
                match self { $($(#[$cfg])* Self::$variant(s) => s.queues_waiters()),* }
            }
            fn poll_interval(&self, retry_interval: Duration) -> Duration {
                match self { $($(#[$cfg])* Self::$variant(s) => s.poll_interval(retry_interval)),* }
            }
            fn check_keys(&self, keys: &[String]) -> Result<(), String> {
                match self { $($(#[$cfg])* Self::$variant(s) => s.check_keys(keys)),* }
            }
            async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => Box::pin(s.try_acquire(req)).await),* }
            }
            async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => Box::pin(s.release(lease)).await),* }
            }
            async fn extend(
                &self,
                lease: Lease<'_>,
                ttl_ms: u64,
                replicas: Option<Replicas>,
            ) -> Result<bool, BoxError> {
                match self { $($(#[$cfg])* Self::$variant(s) => Box::pin(s.extend(lease, ttl_ms, replicas)).await),* }
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

// A new store is one line here (and its file or folder beside `mod.rs`, declared there
// with its entry); the paths are whole so that the line is all it takes here.
stores! {
    Memory(super::memory::MemoryStore) = super::memory::ENTRY,
    Redis(super::redis::RedisStore) = super::redis::REDIS,
    Cluster(super::redis::ClusterStore) = super::redis::CLUSTER,
    Redlock(super::redis::RedlockStore) = super::redis::REDLOCK,
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::Postgres) = super::postgres::ENTRY,
    #[cfg(feature = "sqlite")]
    Sqlite(super::sqlite::SqliteStore) = super::sqlite::ENTRY,
    #[cfg(feature = "mysql")]
    Mysql(super::mysql::MysqlStore) = super::mysql::ENTRY,
    #[cfg(feature = "etcd")]
    Etcd(super::etcd::EtcdStore) = super::etcd::ENTRY,
}
