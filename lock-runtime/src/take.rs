//! The four ways every handle takes a hold (`run`, `try_run`, `acquire`, `try_acquire`),
//! written once for locks, semaphore permits and read/write leases alike.

use std::future::Future;
use std::sync::Arc;

use crate::acquire::{Mode, lock};
use crate::core::Core;
use crate::error::LockError;
use crate::guard::LockGuard;
use crate::options::LockOptions;
use crate::renew;
use crate::store::Kind;

/// What to take, and where the call comes from (for events).
pub(crate) struct Take<'a> {
    pub(crate) core: &'a Arc<Core>,
    /// The stored keys, sorted and deduplicated.
    pub(crate) keys: Vec<String>,
    pub(crate) kind: Kind,
    pub(crate) site: &'static str,
}

impl Take<'_> {
    /// Waits up to `timeout`, runs `f` while renewing, releases.
    pub(crate) async fn run<F, Fut, T>(self, opts: LockOptions, f: F) -> Result<T, LockError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let guard = self.acquire(opts).await?;
        renew::hold(guard, &opts, f()).await
    }

    /// Runs `f` if the hold is free now; `Ok(None)` at once if not.
    pub(crate) async fn try_run<F, Fut, T>(
        self,
        opts: LockOptions,
        f: F,
    ) -> Result<Option<T>, LockError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        match self.try_acquire(opts).await? {
            Some(guard) => renew::hold(guard, &opts, f()).await.map(Some),
            None => Ok(None),
        }
    }

    /// Waits up to `timeout` for the hold.
    pub(crate) async fn acquire(self, opts: LockOptions) -> Result<LockGuard, LockError> {
        lock(
            self.core,
            self.keys,
            self.kind,
            &opts,
            Mode::Wait,
            self.site,
        )
        .await
    }

    /// Takes the hold if it is free now.
    pub(crate) async fn try_acquire(
        self,
        opts: LockOptions,
    ) -> Result<Option<LockGuard>, LockError> {
        match lock(self.core, self.keys, self.kind, &opts, Mode::Try, self.site).await {
            Ok(guard) => Ok(Some(guard)),
            Err(LockError::Busy { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
