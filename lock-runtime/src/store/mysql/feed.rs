//! Wake-ups within one process: a release by any `Locker` of this process on a database
//! wakes the waiters of every `Locker` of the process on the same one at once. MySQL has
//! no notifications: waiters in other processes poll at `retry_interval`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use crate::store::WakeTarget;
use crate::store::local_wakes::{LocalWakes, wake};

/// Every database's feed in this process, by `host:port/database`.
static FEEDS: LazyLock<Mutex<HashMap<String, Weak<Feed>>>> = LazyLock::new(Default::default);

/// The `Locker`s of this process on one database, and the keys their waiters watch.
#[derive(Default)]
pub(super) struct Feed {
    state: Mutex<State>,
}

type State = LocalWakes;

impl Feed {
    /// The feed of the database at `place`, shared with every store of this process on it.
    pub(super) fn of(place: &str) -> Arc<Feed> {
        let Ok(mut feeds) = FEEDS.lock() else {
            return Arc::default();
        };
        feeds.retain(|_, feed| feed.strong_count() > 0);
        if let Some(feed) = feeds.get(place).and_then(Weak::upgrade) {
            return feed;
        }
        let feed = Arc::new(Feed::default());
        feeds.insert(place.to_owned(), Arc::downgrade(&feed));
        feed
    }

    pub(super) fn attach(&self, target: Weak<dyn WakeTarget>) {
        if let Ok(mut state) = self.state.lock() {
            state.attach(target);
        }
    }

    pub(super) fn watch(&self, key: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.watch(key);
        }
    }

    pub(super) fn unwatch(&self, key: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.unwatch(key);
        }
    }

    /// How many waiters of this process watch `key`.
    pub(super) fn waiters(&self, key: &str) -> u64 {
        self.state.lock().map_or(0, |state| state.waiters(key))
    }

    /// Wakes every `Locker`'s waiters for `keys`.
    pub(super) fn released(&self, keys: &[String]) {
        if let Ok(state) = self.state.lock().map(|s| s.targets()) {
            wake(state, keys);
        }
    }
}
