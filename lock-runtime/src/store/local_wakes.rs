//! Wake-ups within one process, for stores that announce nothing across `Locker`s (SQLite,
//! MySQL): the `Locker`s of this process on one database and the keys their waiters
//! watch, so that a release by any of them wakes the waiters of all of them. Each store's
//! feed keeps one of these per database, behind its own mutex.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use super::WakeTarget;

#[derive(Default)]
pub(crate) struct LocalWakes {
    targets: Vec<Weak<dyn WakeTarget>>,
    /// Waiters per key, over every `Locker` on the database.
    watching: HashMap<String, u64>,
}

impl LocalWakes {
    /// Another `Locker` of this process on the database (gone ones are dropped).
    pub(crate) fn attach(&mut self, target: Weak<dyn WakeTarget>) {
        self.targets.retain(|t| t.strong_count() > 0);
        self.targets.push(target);
    }

    pub(crate) fn watch(&mut self, key: &str) {
        *self.watching.entry(key.to_owned()).or_default() += 1;
    }

    pub(crate) fn unwatch(&mut self, key: &str) {
        if let Some(n) = self.watching.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.watching.remove(key);
            }
        }
    }

    /// How many waiters of this process watch `key`.
    pub(crate) fn waiters(&self, key: &str) -> u64 {
        self.watching.get(key).copied().unwrap_or(0)
    }

    /// Whether anyone of this process waits at all.
    #[cfg(feature = "sqlite")]
    pub(crate) fn anyone_waits(&self) -> bool {
        !self.watching.is_empty()
    }

    /// The `Locker`s still alive, to wake outside the caller's mutex.
    pub(crate) fn targets(&self) -> Vec<Arc<dyn WakeTarget>> {
        self.targets.iter().filter_map(Weak::upgrade).collect()
    }
}

/// Wakes `targets`' waiters for `keys`.
pub(crate) fn wake(targets: Vec<Arc<dyn WakeTarget>>, keys: &[String]) {
    for target in targets {
        for key in keys {
            target.wake(key);
        }
    }
}
