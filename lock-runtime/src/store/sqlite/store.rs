//! The SQLite store's `Store` impl: each call one transaction on the file.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::feed::Feed;
use super::file::File;
use super::ops;
use crate::error::BoxError;
use crate::info::{LockInfo, token_prefix};
use crate::store::{
    Attempt, Caps, Kind, Lease, Release, Replicas, Request, Store, WakeTarget, shared_key,
};

/// Locks in one SQLite file, shared by the processes of one host (see the module doc).
pub(crate) struct SqliteStore {
    file: File,
    feed: Arc<Feed>,
}

impl SqliteStore {
    /// The store on `path`; nothing is opened until the first call.
    pub(crate) fn new(path: PathBuf) -> Self {
        let feed = Feed::of(&path);
        Self {
            file: File::new(path, feed.own_commits()),
            feed,
        }
    }

    /// Wakes this process's waiters for `keys` after a release that freed them.
    fn announce(&self, keys: &[String], outcome: Release) -> Release {
        if outcome == Release::Released {
            self.feed.released(keys);
        }
        outcome
    }
}

/// The owned copies a blocking thread needs.
fn owned(keys: &[String], token: &str) -> (Vec<String>, String) {
    (keys.to_vec(), token.to_owned())
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite({})", self.file.path().display())
    }

    fn product(&self) -> &'static str {
        "SQLite"
    }

    fn caps(&self) -> Caps {
        Caps {
            fencing: true,
            replica_sync: false,
            // To every `Locker` of this process on the file (see `feed`).
            announces_releases: true,
        }
    }

    fn bounds_calls_within(&self, _limit: Duration) -> bool {
        // A call may wait for another process's transaction: the engine bounds it.
        false
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        let (keys, token) = owned(req.keys, req.token);
        let (ttl_ms, fencing, kind, intent_ms) = (req.ttl_ms, req.fencing, req.kind, req.intent_ms);
        if kind == Kind::Lock {
            return self
                .file
                .write(move |tx, now| ops::acquire(tx, now, &keys, &token, ttl_ms, fencing))
                .await;
        }
        let key = shared_key(&keys)?.clone();
        self.file
            .write(move |tx, now| {
                ops::acquire_shared(tx, now, &key, &token, kind, ttl_ms, intent_ms)
            })
            .await
    }

    async fn release(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        let (keys, token) = owned(lease.keys, lease.token);
        let outcome = match (lease.kind, keys.as_slice()) {
            (Kind::Lock, _) => {
                let keys = keys.clone();
                self.file
                    .write(move |tx, now| ops::release(tx, now, &keys, &token))
                    .await?
            }
            (kind, [key]) => {
                let (key, member) = (key.clone(), kind.member(&token));
                self.file
                    .write(move |tx, now| ops::release_shared(tx, now, &key, &member))
                    .await?
            }
            _ => Release::Gone,
        };
        Ok(self.announce(&keys, outcome))
    }

    async fn extend(
        &self,
        lease: Lease<'_>,
        ttl_ms: u64,
        _replicas: Option<Replicas>,
    ) -> Result<bool, BoxError> {
        let (keys, token) = owned(lease.keys, lease.token);
        match (lease.kind, keys.as_slice()) {
            (Kind::Lock, _) => {
                self.file
                    .write(move |tx, now| ops::extend(tx, now, &keys, &token, ttl_ms))
                    .await
            }
            (kind, [key]) => {
                let (key, member) = (key.clone(), kind.member(&token));
                self.file
                    .write(move |tx, now| ops::extend_shared(tx, now, &key, &member, ttl_ms))
                    .await
            }
            _ => Ok(false),
        }
    }

    async fn remaining(&self, lease: Lease<'_>) -> Result<Option<Duration>, BoxError> {
        let (keys, token) = owned(lease.keys, lease.token);
        match (lease.kind, keys.as_slice()) {
            (Kind::Lock, _) => {
                self.file
                    .read(move |tx, now| ops::remaining(tx, now, &keys, &token))
                    .await
            }
            (kind, [key]) => {
                let (key, member) = (key.clone(), kind.member(&token));
                self.file
                    .read(move |tx, now| ops::remaining_shared(tx, now, &key, &member))
                    .await
            }
            _ => Ok(None),
        }
    }

    async fn holders(&self, key: &str) -> Result<u64, BoxError> {
        let key = key.to_owned();
        self.file
            .read(move |tx, now| ops::holders(tx, now, &key))
            .await
    }

    async fn force_release(&self, key: &str) -> Result<bool, BoxError> {
        let owned_key = key.to_owned();
        let held = self
            .file
            .write(move |tx, now| ops::force_release(tx, now, &owned_key))
            .await?;
        self.feed.released(&[key.to_owned()]);
        Ok(held)
    }

    async fn inspect(&self, key: &str) -> Result<LockInfo, BoxError> {
        let owned_key = key.to_owned();
        let seen = self
            .file
            .read(move |tx, now| ops::inspect(tx, now, &owned_key))
            .await?;
        Ok(LockInfo {
            held: seen.left.is_some(),
            remaining: seen.left,
            holder: seen.token.as_deref().map(token_prefix),
            fence: seen.fence,
            waiters: self.feed.waiters(key),
            ..LockInfo::free(key)
        })
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, BoxError> {
        let pattern = glob::Pattern::new(pattern)?;
        let keys = self.file.read(ops::live_keys).await?;
        Ok(keys.into_iter().filter(|k| pattern.matches(k)).collect())
    }

    fn attach(&self, target: Weak<dyn WakeTarget>) {
        self.feed.attach(target);
    }

    fn watch(&self, key: &str) -> Option<tokio::sync::oneshot::Receiver<()>> {
        self.feed.watch(key);
        None
    }

    fn unwatch(&self, key: &str) {
        self.feed.unwatch(key);
    }
}
