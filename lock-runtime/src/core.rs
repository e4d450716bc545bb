//! `Core`: what one `Locker` is made of (its store, its waiters' queues, its prefix and
//! defaults), and the store calls every layer above shares: bounded, errors tied to the
//! key, releases announced to local waiters where the store does not.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{BoxError, LockError, StoreError};
use crate::keys::full_key;
use crate::options::LockOptions;
use crate::store::{AnyStore, OwnedLease, Release, Store, WakeTarget};
use crate::time::CALL_LIMIT;
use crate::wait::Waits;

/// One `Locker`'s state, shared by its clones and the guards it hands out.
pub(crate) struct Core {
    pub(crate) store: AnyStore,
    pub(crate) waits: Arc<Waits>,
    pub(crate) prefix: String,
    pub(crate) defaults: LockOptions,
}

impl Core {
    /// A core on `store`, its wake-up feed connected to the new queues.
    pub(crate) fn new(store: AnyStore, prefix: String, defaults: LockOptions) -> Arc<Self> {
        let waits = Waits::new();
        let target: Arc<dyn WakeTarget> = waits.clone();
        store.attach(Arc::downgrade(&target));
        Arc::new(Self {
            store,
            waits,
            prefix,
            defaults,
        })
    }

    /// The stored keys of `keys`, sorted and without duplicates.
    pub(crate) fn full_keys<S: AsRef<str>>(&self, keys: &[S]) -> Result<Vec<String>, LockError> {
        let mut full = keys
            .iter()
            .map(|k| full_key(&self.prefix, k.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if full.is_empty() {
            return Err(LockError::InvalidKey {
                key: String::new(),
                reason: "no keys were given; lock at least one".to_owned(),
            });
        }
        full.sort_unstable();
        full.dedup();
        Ok(full)
    }

    /// One store call, bounded in time, its error tied to the key.
    ///
    /// The bound is skipped where the store already keeps it, which saves a timer per
    /// call on the hot path: memory operations never wait, and a connected Redis client
    /// fails every command after its own response timeout.
    pub(crate) async fn call<T>(
        &self,
        key: &str,
        limit: Duration,
        op: impl Future<Output = Result<T, BoxError>>,
    ) -> Result<T, LockError> {
        let failed =
            |e: BoxError| LockError::backend(key, StoreError::wrap(self.store.product(), e));
        if self.store.bounds_calls_within(limit) {
            return op.await.map_err(failed);
        }
        match tokio::time::timeout(limit, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(failed(e)),
            Err(_) => Err(failed(
                format!("{} did not answer within {limit:?}", self.store.describe()).into(),
            )),
        }
    }

    /// Wakes this locker's waiters for `keys` after a release, where the store does not
    /// announce releases itself.
    pub(crate) fn released(&self, keys: &[String]) {
        if !self.store.caps().announces_releases {
            for key in keys {
                self.waits.wake(key);
            }
        }
    }

    /// Releases `token`'s lease of `kind` on `keys` (or withdraws a waiting writer's
    /// intent) without waiting, on `runtime` or else the current
    /// one. With no runtime at all, the lock expires after its ttl.
    pub(crate) fn release_in_background(
        self: &Arc<Self>,
        runtime: Option<&tokio::runtime::Handle>,
        held: OwnedLease,
    ) {
        let handle = runtime
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        if let Some(handle) = handle {
            let core = self.clone();
            handle.spawn(async move {
                let key = held.keys.join(", ");
                // A store that failed (or a pool that had no connection free in time) gets
                // a few more tries: the lease would otherwise block others for its whole
                // ttl. Releases compare tokens, so a late one deletes nothing of another's.
                for pause in [200, 1_000, 3_000] {
                    let release = core.store.release(held.lease());
                    match core.call(&key, CALL_LIMIT, release).await {
                        Ok(Release::Released) => return core.released(&held.keys),
                        Ok(_) => return,
                        Err(_) => tokio::time::sleep(Duration::from_millis(pause)).await,
                    }
                }
            });
        }
    }
}
