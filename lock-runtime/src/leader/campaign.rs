//! Waiting to lead: rounds of a waiting acquisition of the key's lock, with the leader's
//! identity in its token, until it is taken, the campaign's timeout passes, or the
//! instance resigns. A round that ends because the store kept failing is followed by a
//! pause that doubles up to [`MAX_BACKOFF`].

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Election, identity};
use crate::acquire::{Mode, lock_as};
use crate::error::LockError;
use crate::guard::LockGuard;
use crate::options::LockOptions;
use crate::store::{Kind, Store};
use crate::telemetry;
use crate::time::{jittered, later};

/// The longest one round waits before it starts again (a fresh token, a new place in the
/// queue): long enough to cost nothing, short enough that a store error surfaces.
const ROUND: Duration = Duration::from_secs(60);

/// The longest pause between rounds while the store fails.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Election {
    /// The options of each try and term: renewed, fenced where the store fences, polling no
    /// more often than every `ttl/2` while a leader holds the key.
    pub(super) fn term_options(&self) -> LockOptions {
        let fencing = self.locker.inner.store.caps().fencing;
        let poll = self.opts.retry_interval.max(self.opts.ttl / 2);
        self.opts.renew(true).fencing(fencing).retry_interval(poll)
    }

    /// Waits until this instance holds the key as its leader.
    pub(super) async fn campaign(
        &self,
        resigned: &mut watch::Receiver<u64>,
        site: &'static str,
    ) -> Result<LockGuard, LockError> {
        identity::check(&self.identity)?;
        let core = &self.locker.inner;
        let keys = core.full_keys(&[self.key.as_str()])?;
        let key = keys.join(", ");
        let start = Instant::now();
        let deadline = self.timeout.map(|t| later(start, t));
        let mut backoff = self.opts.retry_interval.max(Duration::from_millis(10));
        let mut rounds = 0u64;
        loop {
            rounds += 1;
            if resigned.has_changed().unwrap_or(false) {
                return Err(LockError::Resigned { key });
            }
            let now = Instant::now();
            let round = match deadline {
                // The first round always tries, whatever the timeout (zero: once).
                Some(end) if now >= end && rounds > 1 => {
                    return Err(LockError::Timeout {
                        key,
                        waited: start.elapsed(),
                    });
                }
                Some(end) => end.saturating_duration_since(now).min(ROUND),
                None => ROUND,
            };
            let opts = self.term_options().timeout(round);
            let attempt = lock_as(
                core,
                keys.clone(),
                Kind::Lock,
                &opts,
                Mode::Wait,
                site,
                Some(&self.identity),
            );
            let outcome = tokio::select! {
                // A resign wins over a try that is ready at the same moment: the lock it
                // may have taken is given back as it is dropped.
                biased;
                () = resign_asked(resigned) => return Err(LockError::Resigned { key }),
                out = attempt => out,
            };
            let failed = match outcome {
                Ok(guard) => return Ok(guard),
                // Another leader kept it for the whole round: the next one starts (and
                // the check above ends the campaign at its deadline).
                Err(LockError::Timeout { .. }) => continue,
                Err(e @ LockError::Backend { .. }) => e,
                Err(other) => return Err(other),
            };
            if deadline.is_some_and(|end| Instant::now() >= end) {
                return Err(failed);
            }
            let pause = jittered(backoff, rounds);
            telemetry::campaign_failed(&key, &failed, pause);
            let until = deadline.map_or(later(Instant::now(), pause), |end| {
                later(Instant::now(), pause).min(end)
            });
            tokio::select! {
                biased;
                () = resign_asked(resigned) => return Err(LockError::Resigned { key }),
                () = tokio::time::sleep_until(until) => {}
            }
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
    }
}

/// Resolves when [`Election::resign`] is called after `resigned` was made; never if the
/// election is gone.
pub(super) async fn resign_asked(resigned: &mut watch::Receiver<u64>) {
    if resigned.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
