//! Tracing: the target, the span and every event `locked` emits, so names live in one place.
//!
//! All events use the target `locked` (`RUST_LOG=locked=debug`). Per-call events are DEBUG and
//! honour `logging`; warnings are always on. Nothing is logged at ERROR: errors are returned.

use std::time::Duration;

use tracing::Span;

use crate::time::duration_ms;

/// The tracing target of every span and event: filter with `RUST_LOG=locked=debug`.
///
/// ```
/// assert_eq!(locked::TRACING_TARGET, "locked");
/// ```
pub const TARGET: &str = "locked";

/// The span around one lock call.
pub(crate) fn lock_span(
    key: &str,
    mode: &'static str,
    ttl: Duration,
    timeout: Duration,
    site: &'static str,
) -> Span {
    tracing::debug_span!(
        target: TARGET,
        "lock",
        key = %key,
        mode = mode,
        ttl_ms = duration_ms(ttl),
        timeout_ms = duration_ms(timeout),
        site = site,
    )
}

pub(crate) fn acquired(
    logging: bool,
    key: &str,
    waited: Duration,
    attempts: u32,
    fence: Option<u64>,
) {
    if logging {
        tracing::debug!(target: TARGET, key, waited_ms = duration_ms(waited), attempts, fencing_token = fence, "acquired");
    }
}

pub(crate) fn waiting(logging: bool, key: &str) {
    if logging {
        tracing::debug!(target: TARGET, key, "waiting");
    }
}

pub(crate) fn busy(logging: bool, key: &str) {
    if logging {
        tracing::debug!(target: TARGET, key, "busy");
    }
}

pub(crate) fn timeout(logging: bool, key: &str, waited: Duration, attempts: u32) {
    if logging {
        tracing::debug!(target: TARGET, key, waited_ms = duration_ms(waited), attempts, "timeout");
    }
}

pub(crate) fn renewed(logging: bool, key: &str, held: Duration) {
    if logging {
        tracing::debug!(target: TARGET, key, held_ms = duration_ms(held), "renewed");
    }
}

pub(crate) fn released(logging: bool, key: &str, held: Duration) {
    if logging {
        tracing::debug!(target: TARGET, key, held_ms = duration_ms(held), "released");
    }
}

pub(crate) fn lost(key: &str, held: Duration, reason: &str) {
    tracing::warn!(target: TARGET, key, held_ms = duration_ms(held), reason, "lost");
}

pub(crate) fn expired_before_release(key: &str, held: Duration) {
    tracing::warn!(
        target: TARGET,
        key,
        held_ms = duration_ms(held),
        "lost: the lock had expired or been taken before release; raise `ttl` or keep renewal on"
    );
}

pub(crate) fn release_failed(key: &str, error: &dyn std::error::Error) {
    tracing::warn!(target: TARGET, key, error = %error, "release_failed: the lock will expire after its ttl");
}

pub(crate) fn force_release(key: &str, existed: bool) {
    tracing::warn!(target: TARGET, key, existed, "force_release: deleted whoever held it");
}

/// This instance began leading `key` (INFO: a change an operator wants to see).
pub(crate) fn leading(key: &str, identity: &str, term: Option<u64>) {
    tracing::info!(target: TARGET, key, identity, term, "leadership_gained");
}

/// This instance stopped leading `key`: `event` is `lost`, `resigned` or `stepped_down`.
pub(crate) fn not_leading(key: &str, identity: &str, term: Option<u64>, event: &str, reason: &str) {
    if event == "lost" {
        tracing::warn!(target: TARGET, key, identity, term, reason, "leadership_lost");
    } else {
        tracing::info!(target: TARGET, key, identity, term, event, "leadership_ended");
    }
}

/// A campaign's round failed on the store; it tries again after `pause`.
pub(crate) fn campaign_failed(key: &str, error: &dyn std::error::Error, pause: Duration) {
    tracing::warn!(target: TARGET, key, error = %error, retry_in_ms = duration_ms(pause), "campaign_failed");
}

const MEMORY_FALLBACK: &str = "memory store: not shared between processes. Neither \
     LOCK_STORE nor REDIS_URL is set, so locks only exclude callers inside this process; set \
     LOCK_STORE=redis and REDIS_URL to share them";

/// Once per process, when the environment selects no store. The one warning that must
/// reach a user who installed no `tracing` subscriber (the original's troubleshooting case
/// 3: several processes run the same section), so it goes to stderr then.
pub(crate) fn memory_store_fallback() {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!(target: TARGET, "{MEMORY_FALLBACK}");
    } else {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "WARN locked: {MEMORY_FALLBACK}");
    }
}
