//! Metrics, behind the `metrics` cargo feature, through the `metrics` facade: whatever
//! recorder the application installs (e.g. `metrics-exporter-prometheus`) gets them.
//! Without the feature every function here is empty.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `locked_acquire_seconds` | histogram | `key`, `outcome` (`acquired`, `busy`, `timeout`, `error`) |
//! | `locked_hold_seconds` | histogram | `key` |
//! | `locked_held` | gauge | `key` |
//! | `locked_waiting` | gauge | `key` |
//! | `locked_renewals_total` | counter | `key`, `result` (`ok`, `failed`) |
//! | `locked_lost_total` | counter | `key` |
//! | `locked_leader` | gauge | `key`: the terms this process leads now (1 or 0 per election) |
//! | `locked_leadership_total` | counter | `key`, `event` (`gained`, `lost`, `resigned`, `stepped_down`) |
//!
//! The `key` label is the key *template* (`order:{id}`, which `#[locked]` knows) or the
//! name given with [`LockOptions::label`](crate::LockOptions::label), never the rendered
//! key, so the number of series stays bounded. Unnamed API calls get [`UNNAMED`].

#![cfg_attr(not(feature = "metrics"), allow(unused_variables))]

use std::time::Duration;

use crate::error::LockError;

/// The `key` label of a lock taken through the API without [`LockOptions::label`].
///
/// [`LockOptions::label`]: crate::LockOptions::label
pub(crate) const UNNAMED: &str = "unnamed";

/// The outcome label of an acquisition.
pub(crate) fn outcome(result: &Result<impl Sized, LockError>) -> &'static str {
    match result {
        Ok(_) => "acquired",
        Err(LockError::Busy { .. }) => "busy",
        Err(LockError::Timeout { .. }) => "timeout",
        Err(_) => "error",
    }
}

/// One acquisition ended after `waited`.
#[inline]
pub(crate) fn acquire(label: &'static str, outcome: &'static str, waited: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("locked_acquire_seconds", "key" => label, "outcome" => outcome)
        .record(waited.as_secs_f64());
}

/// A lock is now held.
#[inline]
pub(crate) fn held(label: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("locked_held", "key" => label).increment(1.0);
}

/// A lock is no longer held, after `held`.
#[inline]
pub(crate) fn let_go(label: &'static str, held: Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!("locked_held", "key" => label).decrement(1.0);
        metrics::histogram!("locked_hold_seconds", "key" => label).record(held.as_secs_f64());
    }
}

/// A caller starts (`true`) or stops (`false`) waiting in the queue.
#[inline]
pub(crate) fn waiting(label: &'static str, starts: bool) {
    #[cfg(feature = "metrics")]
    {
        let gauge = metrics::gauge!("locked_waiting", "key" => label);
        if starts {
            gauge.increment(1.0);
        } else {
            gauge.decrement(1.0);
        }
    }
}

/// One renewal attempt.
#[inline]
pub(crate) fn renewal(label: &'static str, ok: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!("locked_renewals_total", "key" => label, "result" => if ok { "ok" } else { "failed" })
        .increment(1);
}

/// A lock was lost while held.
#[inline]
pub(crate) fn lost(label: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("locked_lost_total", "key" => label).increment(1);
}

/// This instance starts (`true`) or stops (`false`) leading.
#[inline]
pub(crate) fn leader(label: &'static str, leads: bool) {
    #[cfg(feature = "metrics")]
    {
        let gauge = metrics::gauge!("locked_leader", "key" => label);
        if leads {
            gauge.increment(1.0);
        } else {
            gauge.decrement(1.0);
        }
    }
}

/// A change of leadership: `gained`, `lost`, `resigned` or `stepped_down`.
#[inline]
pub(crate) fn leadership(label: &'static str, event: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("locked_leadership_total", "key" => label, "event" => event).increment(1);
}
