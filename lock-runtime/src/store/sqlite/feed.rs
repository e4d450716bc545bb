//! Wake-ups between the `Locker`s of one process on one file: a release on any of them
//! wakes the waiters of all of them at once. (Waiters in other processes poll.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use crate::store::WakeTarget;

/// Every file's feed in this process, by path.
static FEEDS: LazyLock<Mutex<HashMap<PathBuf, Weak<Feed>>>> = LazyLock::new(Default::default);

/// The `Locker`s of this process on one file, and the keys their waiters watch.
#[derive(Default)]
pub(super) struct Feed {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    targets: Vec<Weak<dyn WakeTarget>>,
    /// Waiters per key, over every `Locker` on the file.
    watching: HashMap<String, u64>,
}

impl Feed {
    /// The feed of the file at `path` (by its absolute path), shared with every store of
    /// this process on it.
    pub(super) fn of(path: &Path) -> Arc<Feed> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let Ok(mut feeds) = FEEDS.lock() else {
            return Arc::default();
        };
        feeds.retain(|_, feed| feed.strong_count() > 0);
        if let Some(feed) = feeds.get(&path).and_then(Weak::upgrade) {
            return feed;
        }
        let feed = Arc::<Feed>::default();
        feeds.insert(path, Arc::downgrade(&feed));
        feed
    }

    pub(super) fn attach(&self, target: Weak<dyn WakeTarget>) {
        if let Ok(mut state) = self.state.lock() {
            state.targets.retain(|t| t.strong_count() > 0);
            state.targets.push(target);
        }
    }

    pub(super) fn watch(&self, key: &str) {
        if let Ok(mut state) = self.state.lock() {
            *state.watching.entry(key.to_owned()).or_default() += 1;
        }
    }

    pub(super) fn unwatch(&self, key: &str) {
        if let Ok(mut state) = self.state.lock()
            && let Some(n) = state.watching.get_mut(key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.watching.remove(key);
            }
        }
    }

    /// How many waiters of this process watch `key`.
    pub(super) fn waiters(&self, key: &str) -> u64 {
        self.state
            .lock()
            .map_or(0, |state| state.watching.get(key).copied().unwrap_or(0))
    }

    /// Wakes every `Locker`'s waiters for `keys`.
    pub(super) fn released(&self, keys: &[String]) {
        let targets: Vec<Arc<dyn WakeTarget>> = match self.state.lock() {
            Ok(state) => state.targets.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => return,
        };
        for target in targets {
            for key in keys {
                target.wake(key);
            }
        }
    }
}
