//! What the memory store's mutex guards: each lock's holder and expiry, each shared key's
//! leases and waiting writers, and the one fence counter.

use std::collections::HashMap;

use tokio::time::Instant;

/// A lock: its holder's token, when it lapses, and its fencing token if it has one.
pub(super) struct Entry {
    pub(super) token: String,
    pub(super) expires: Instant,
    pub(super) fence: Option<u64>,
}

/// A key held by leases (a semaphore's permits, a read/write lock's readers or writer).
#[derive(Default)]
pub(super) struct Shared {
    /// Each lease (`tag:token`) and when it lapses.
    pub(super) leases: HashMap<String, Instant>,
    /// The writers waiting, and when each one's intent lapses.
    pub(super) writers: HashMap<String, Instant>,
}

impl Shared {
    pub(super) fn trim(&mut self, now: Instant) {
        self.leases.retain(|_, t| *t > now);
        self.writers.retain(|_, t| *t > now);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.writers.is_empty()
    }
}

/// The tag of a lease's name (`s3` of `s3:token`).
pub(super) fn tag_of(member: &str) -> &str {
    member.split(':').next().unwrap_or(member)
}

/// Everything the store holds, behind its one mutex.
pub(super) struct State {
    pub(super) entries: HashMap<String, Entry>,
    pub(super) shared: HashMap<String, Shared>,
    /// One counter for every key: strictly increasing per key, and no memory per key.
    pub(super) fence: u64,
    /// Expired entries are swept when the map grows past this.
    pub(super) sweep_at: usize,
}

/// The fewest entries a sweep of expired ones waits for.
pub(super) const MIN_SWEEP: usize = 64;
