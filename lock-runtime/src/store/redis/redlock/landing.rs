//! Acquisitions still landing on the slower Redlock masters after the call went on: a
//! release or undo of the same token waits for them, so that it reaches each master after
//! the `SET` it undoes; and the undo of a try that failed.

use std::sync::Mutex;

use futures_util::StreamExt;

use super::fanout::{Answers, ArcLease, MasterConn};
use super::{MASTER_LIMIT, RedlockStore};
use crate::error::BoxError;
use crate::store::redis::protocol::Node;

/// The map of late acquisitions (a poisoned lock still holds a usable map).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedlockStore {
    /// As [`Self::on_masters`], for an acquisition of `token`: while its requests to the
    /// slower masters are still landing, a release or undo of the same token waits for
    /// them (see [`Self::landed`]), so that it reaches each master after the `SET` it
    /// undoes, never before (issue 16: a master still connecting took the lock after its
    /// release had passed, and kept it for its ttl).
    pub(super) async fn on_masters_for<T, F, Fut>(
        &self,
        token: &str,
        op: F,
        enough: impl Fn(&Answers<T>) -> bool,
    ) -> Answers<T>
    where
        T: Send + 'static,
        F: Fn(MasterConn) -> Fut + Clone + Send + Sync + 'static,
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
    pub(super) async fn landed(&self, token: &str) {
        let landed = lock(&self.late).get(token).cloned();
        if let Some(mut landed) = landed {
            let _ = tokio::time::timeout(MASTER_LIMIT * 2, landed.wait_for(|done| *done)).await;
        }
    }

    /// Releases on every master, whatever each answered before (also those that did not
    /// answer: their `SET` may have landed), without announcing it: no one held the lock,
    /// and an announcement would wake every waiter, this one too, into another try.
    pub(super) async fn undo(&self, lease: &ArcLease) {
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
}
