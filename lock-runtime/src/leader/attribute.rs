//! `#[locked(key = "...", leader)]`: the campaign the expansion drives, one term at a time
//! (the expansion's loop runs the body anew in each term, borrowing the arguments).

use std::future::Future;

use tokio::sync::watch;

use super::Election;
use crate::error::LockError;
use crate::guard::LockGuard;
use crate::locker::Locker;
use crate::private::Spec;
use crate::time::jittered;

/// One annotated call's campaign.
#[derive(Debug)]
pub struct Campaign {
    election: Election,
    resigned: watch::Receiver<u64>,
    site: &'static str,
    losses: u64,
}

/// The campaign of one call of a `leader` fn, on `locker` or the global one.
pub fn campaign(
    spec: &'static Spec,
    locker: Option<&Locker>,
    key: Result<String, LockError>,
) -> Result<Campaign, LockError> {
    let key = key?;
    let locker = match locker {
        Some(l) => l,
        None => crate::global::global()?,
    };
    let mut election = locker
        .election(&key)
        .options(spec.options(locker.options()));
    if let Some(timeout) = spec.timeout {
        election = election.timeout(timeout);
    }
    Ok(Campaign {
        resigned: election.shared.resign.subscribe(),
        election,
        site: spec.site,
        losses: 0,
    })
}

impl Campaign {
    /// Waits until this instance leads (after a lost term, a short pause first).
    pub async fn elect(&mut self) -> Result<LockGuard, LockError> {
        if self.losses > 0 {
            let pause = jittered(self.election.opts.retry_interval, self.losses);
            tokio::time::sleep(pause).await;
        }
        self.election.campaign(&mut self.resigned, self.site).await
    }

    /// Runs one term's body while `guard` leads.
    pub async fn lead<F: Future>(
        &mut self,
        guard: LockGuard,
        body: F,
    ) -> Result<F::Output, LockError> {
        self.election
            .serve(guard, |_| body, &mut self.resigned)
            .await
    }

    /// Whether `err` ended a term that the call should campaign again after.
    pub fn lost(&mut self, err: &LockError) -> bool {
        let lost = err.is_lost();
        self.losses += u64::from(lost);
        lost
    }
}
