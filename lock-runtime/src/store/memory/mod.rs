//! `MemoryStore`: locks in this process only, for tests, examples and single-process apps.
//!
//! - Here: the store type, its registry entry, and the one mutex every call goes through.
//! - `state`: what the mutex guards: the locks, the shared leases and the fence counter.
//! - `locks`: exclusive locks of one or several keys (take, release, extend, time left).
//! - `leases`: shared leases of one key (a semaphore's permits, a read/write lock's
//!   readers and writer, a waiting writer's intent).
//! - `keys`: a key whatever holds it (how many holders, a forced release).
//! - `store`: the `Store` impl over the above.

mod keys;
mod leases;
mod locks;
mod state;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

use state::{MIN_SWEEP, State};

/// Locks held in a map in this process. Time is tokio's, so paused test time drives expiry.
pub(crate) struct MemoryStore {
    state: Mutex<State>,
}

/// The registry's entry: `LOCK_STORE=memory`, and the store when nothing is set.
pub(crate) const ENTRY: super::registry::Entry = super::registry::Entry {
    name: "memory",
    help: "in this process only (tests, development): locks are not shared",
    schemes: &[],
    url_vars: &[],
    other_vars: &[],
    url_example: "",
    feature: None,
    implied: super::registry::Implied::Fallback,
    open_from_env: Some(|_, _| Ok(MemoryStore::new().into())),
};

impl MemoryStore {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                entries: HashMap::new(),
                shared: HashMap::new(),
                fence: 0,
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State, Instant) -> R) -> R {
        // A panic while the lock was held cannot leave the map half-written (every
        // mutation is one insert or remove), so a poisoned mutex is safe to reuse.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state, Instant::now())
    }
}
