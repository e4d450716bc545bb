//! A key in the memory store whatever holds it: how many holders it has, whether it is
//! held, and a forced release of all of them.

use super::MemoryStore;

impl MemoryStore {
    /// How many live leases `key` has (1 for a held lock).
    pub(crate) fn holders_now(&self, key: &str) -> u64 {
        self.with(|s, now| {
            let lock = s.entries.get(key).is_some_and(|e| e.expires > now);
            let leases = s
                .shared
                .get(key)
                .map_or(0, |sh| sh.leases.values().filter(|t| **t > now).count());
            u64::from(lock) + leases as u64
        })
    }

    pub(crate) fn exists_now(&self, key: &str) -> bool {
        self.holders_now(key) > 0
    }

    pub(crate) fn force_release_now(&self, key: &str) -> bool {
        let held = self.exists_now(key);
        self.with(|s, _| {
            s.entries.remove(key);
            if let Some(sh) = s.shared.get_mut(key) {
                sh.leases.clear();
                if sh.is_empty() {
                    s.shared.remove(key);
                }
            }
        });
        held
    }
}
