//! Wake-ups on one file: a release by a `Locker` of this process wakes the waiters of
//! every `Locker` of the process on the file at once; a commit by another process is seen
//! by a watcher thread, which runs while anyone here waits and reads the file's change
//! counter (`PRAGMA data_version`, which reads no table and takes no lock) every
//! [`WATCH_EVERY`], waking every waiter when it moves. Polling at `retry_interval` stays
//! the fallback.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use crate::store::WakeTarget;
use crate::store::local_wakes::{LocalWakes, wake};

/// How often the watcher reads the file's change counter while someone waits.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

/// Every file's feed in this process, by path.
static FEEDS: LazyLock<Mutex<HashMap<PathBuf, Weak<Feed>>>> = LazyLock::new(Default::default);

/// The `Locker`s of this process on one file, and the keys their waiters watch.
#[derive(Default)]
pub(super) struct Feed {
    path: PathBuf,
    state: Mutex<State>,
    /// Commits this process's connections to the file are about to make: a change the
    /// watcher sees with no commit of ours beside it is another process's.
    own_commits: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    wakes: LocalWakes,
    /// The watcher thread runs (it stops when no one waits).
    watcher: bool,
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
        let feed = Arc::new(Feed {
            path: path.clone(),
            state: Mutex::default(),
            own_commits: Arc::default(),
        });
        feeds.insert(path, Arc::downgrade(&feed));
        feed
    }

    /// The counter this process's connections bump before each commit.
    pub(super) fn own_commits(&self) -> Arc<AtomicU64> {
        self.own_commits.clone()
    }

    pub(super) fn attach(&self, target: Weak<dyn WakeTarget>) {
        if let Ok(mut state) = self.state.lock() {
            state.wakes.attach(target);
        }
    }

    pub(super) fn watch(self: &Arc<Self>, key: &str) {
        let start = match self.state.lock() {
            Ok(mut state) => {
                state.wakes.watch(key);
                !std::mem::replace(&mut state.watcher, true)
            }
            Err(_) => false,
        };
        if start {
            let feed = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("locked-sqlite-watch".to_owned())
                .spawn(move || watch_file(&feed));
            if spawned.is_err()
                && let Ok(mut state) = self.state.lock()
            {
                // No thread: waiters poll.
                state.watcher = false;
            }
        }
    }

    pub(super) fn unwatch(&self, key: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.wakes.unwatch(key);
        }
    }

    /// How many waiters of this process watch `key`.
    pub(super) fn waiters(&self, key: &str) -> u64 {
        self.state
            .lock()
            .map_or(0, |state| state.wakes.waiters(key))
    }

    /// Wakes every `Locker`'s waiters for `keys`.
    pub(super) fn released(&self, keys: &[String]) {
        if let Ok(targets) = self.state.lock().map(|s| s.wakes.targets()) {
            wake(targets, keys);
        }
    }
}

/// The watcher: reads the file's change counter every [`WATCH_EVERY`] on a connection of
/// its own while anyone waits, and wakes every waiter when another connection committed.
fn watch_file(feed: &Weak<Feed>) {
    let Some(path) = feed.upgrade().map(|f| f.path.clone()) else {
        return;
    };
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(&path, flags).ok();
    let version = |conn: &rusqlite::Connection| -> Option<i64> {
        conn.query_row("PRAGMA data_version", [], |r| r.get(0)).ok()
    };
    let mut last = conn.as_ref().and_then(version);
    let mut ours = feed
        .upgrade()
        .map_or(0, |f| f.own_commits.load(Ordering::Acquire));
    loop {
        std::thread::sleep(WATCH_EVERY);
        let Some(feed) = feed.upgrade() else {
            return;
        };
        let targets: Vec<Arc<dyn WakeTarget>> = match feed.state.lock() {
            Ok(mut state) if !state.wakes.anyone_waits() => {
                state.watcher = false;
                return;
            }
            Ok(state) => state.wakes.targets(),
            Err(_) => return,
        };
        // The version first: a commit of ours that moved it was counted before it.
        let now = conn.as_ref().and_then(version);
        let ours_now = feed.own_commits.load(Ordering::Acquire);
        if now != last && ours_now == ours {
            // Another process committed, and only it: perhaps a release.
            for target in targets {
                target.wake_all();
            }
        }
        (last, ours) = (now, ours_now);
    }
}
