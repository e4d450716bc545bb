//! Wake-ups: one etcd watch per watched key (on the key and its companions), counted; a
//! delete wakes the `Locker`'s waiters of that key, a broken watch wakes them all and is
//! made again.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::conn::Conn;
use super::layout;
use crate::store::WakeTarget;

/// How many waiters of this process watch each key of each cluster (by its endpoints):
/// what `inspect` reports, whichever `Locker` of the process asks.
static WAITERS: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Default::default);

fn count(place: &str, key: &str, up: bool) {
    if let Ok(mut all) = WAITERS.lock() {
        let id = format!("{place}\0{key}");
        let n = all.entry(id.clone()).or_insert(0);
        if up {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                all.remove(&id);
            }
        }
    }
}

/// The watched keys of one store, and whom their releases wake.
pub(super) struct Feed {
    /// The cluster's endpoints, naming it in [`WAITERS`].
    place: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    target: Option<Weak<dyn WakeTarget>>,
    /// Each watched key: how many watch it, and its watch's task.
    watched: HashMap<String, (u64, JoinHandle<()>)>,
}

impl Feed {
    pub(super) fn new(place: String) -> Self {
        Self {
            place,
            state: Mutex::default(),
        }
    }

    pub(super) fn attach(&self, target: Weak<dyn WakeTarget>) {
        if let Ok(mut state) = self.state.lock() {
            state.target = Some(target);
        }
    }

    fn target(&self) -> Option<Arc<dyn WakeTarget>> {
        self.state.lock().ok()?.target.as_ref()?.upgrade()
    }

    /// Counts a watcher of `key`; the first starts its watch, and gets a receiver that
    /// resolves once the watch is in place.
    pub(super) fn watch(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        key: &str,
    ) -> Option<oneshot::Receiver<()>> {
        count(&self.place, key, true);
        let mut state = self.state.lock().ok()?;
        if let Some((count, _)) = state.watched.get_mut(key) {
            *count += 1;
            return None;
        }
        let (ready, rx) = oneshot::channel();
        let task = tokio::spawn(watching(
            Arc::downgrade(self),
            conn.clone(),
            key.to_owned(),
            ready,
        ));
        state.watched.insert(key.to_owned(), (1, task));
        Some(rx)
    }

    pub(super) fn unwatch(&self, key: &str) {
        count(&self.place, key, false);
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some((count, _)) = state.watched.get_mut(key) {
            *count -= 1;
            if *count == 0
                && let Some((_, task)) = state.watched.remove(key)
            {
                task.abort();
            }
        }
    }

    /// How many waiters of this process watch `key` on this cluster.
    pub(super) fn waiters(&self, key: &str) -> u64 {
        let id = format!("{}\0{key}", self.place);
        WAITERS
            .lock()
            .ok()
            .and_then(|all| all.get(&id).copied())
            .unwrap_or(0)
    }
}

/// Watches `key` and its companions until aborted; remakes a broken watch after a pause.
async fn watching(feed: Weak<Feed>, conn: Arc<Conn>, key: String, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut broken = false;
    loop {
        if let Ok(mut client) = conn.client().await {
            let options = WatchOptions::new().with_range(layout::all_end(&key));
            let made = tokio::time::timeout(
                super::conn::REQUEST_LIMIT,
                client.watch(key.as_str(), Some(options)),
            )
            .await;
            if let Ok(Ok(mut stream)) = made {
                // The first answer says the watch is created.
                let created = tokio::time::timeout(super::conn::REQUEST_LIMIT, stream.message());
                if let Ok(Ok(Some(_))) = created.await {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    if broken {
                        // Releases may have been missed meanwhile.
                        if let Some(target) = feed.upgrade().and_then(|f| f.target()) {
                            target.wake_all();
                        }
                    }
                    while let Ok(Some(resp)) = stream.message().await {
                        let deleted = resp
                            .events()
                            .iter()
                            .any(|e| e.event_type() == EventType::Delete);
                        if deleted {
                            match feed.upgrade().and_then(|f| f.target()) {
                                Some(target) => target.wake(&key),
                                None => return,
                            }
                        }
                    }
                }
            }
        }
        // Broken, or never made (the waiter polls meanwhile).
        ready.take();
        broken = true;
        if feed.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
