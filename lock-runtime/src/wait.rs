//! Waiting for a held lock: a FIFO queue per key inside each `Locker`, woken when a lock
//! is released. Store-agnostic: each store's wake-up feed (or, for a store that announces
//! nothing, the releasing `Locker`) calls [`Waits::wake`].
//!
//! ## Behavior
//! - A caller that finds no one of its `Locker` waiting on a key tries the store at once
//!   (the uncontended path costs nothing more).
//! - Otherwise it joins the key's queue (a fair semaphore): only the head of the queue
//!   talks to the store, so a task that just released cannot jump ahead of earlier
//!   waiters, and waiters are served in arrival order.
//! - Readers of a read/write lock queue in a lane of their own, beside the one of writers
//!   (and of locks and permits): a waiting writer's intent refuses new readers, so a
//!   reader at the head of a shared queue would stand in front of the very writer it
//!   waits for, and neither would ever try again (issue 16).
//! - A release wakes the head at once. Polling every `retry_interval` (with jitter, and no
//!   later than the holder's remaining ttl) stays as the fallback for expiry, a lost
//!   message or a dropped subscription connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use crate::store::WakeTarget;

/// Which of a key's two queues a waiter joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Locks, semaphore permits and writers: they wait for holders, never for each
    /// other's intents.
    Exclusive,
    /// Readers, who may wait for a queued writer's intent.
    Shared,
}

struct Entry {
    queue: Arc<Semaphore>,
    readers: Arc<Semaphore>,
    notify: Arc<Notify>,
    failure: Arc<Mutex<Option<String>>>,
    users: usize,
}

/// The waiters of one `Locker`, per key.
pub(crate) struct Waits {
    map: Mutex<HashMap<String, Entry>>,
    /// How many keys have waiters: lets the uncontended path skip the mutex.
    keys_waited: AtomicUsize,
}

/// A place in a key's queue; leaving it (drop) cleans up after the last waiter.
pub(crate) struct Ticket<'a> {
    waits: &'a Waits,
    key: String,
    pub(crate) queue: Arc<Semaphore>,
    pub(crate) notify: Arc<Notify>,
    /// The store's failure on the head's last try, if it failed: what the waiters behind
    /// it, which never talk to the store, report when their time runs out.
    failure: Arc<Mutex<Option<String>>>,
}

impl Waits {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Waits {
            map: Mutex::new(HashMap::new()),
            keys_waited: AtomicUsize::new(0),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every critical section is a single insert, remove or counter change.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anyone of this `Locker` is waiting for `key`.
    pub(crate) fn has_waiters(&self, key: &str) -> bool {
        self.keys_waited.load(Ordering::Acquire) != 0 && self.map().contains_key(key)
    }

    /// Joins the queue of `key` in `lane`.
    pub(crate) fn join(&self, key: &str, lane: Lane) -> Ticket<'_> {
        let mut map = self.map();
        if !map.contains_key(key) {
            self.keys_waited.fetch_add(1, Ordering::AcqRel);
        }
        let entry = map.entry(key.to_owned()).or_insert_with(|| Entry {
            queue: Arc::new(Semaphore::new(1)),
            readers: Arc::new(Semaphore::new(1)),
            notify: Arc::new(Notify::new()),
            failure: Arc::new(Mutex::new(None)),
            users: 0,
        });
        entry.users += 1;
        Ticket {
            waits: self,
            key: key.to_owned(),
            queue: match lane {
                Lane::Exclusive => entry.queue.clone(),
                Lane::Shared => entry.readers.clone(),
            },
            notify: entry.notify.clone(),
            failure: entry.failure.clone(),
        }
    }
}

impl WakeTarget for Waits {
    /// Wakes whoever waits for a release of `key`: the head of its queue, and waiters
    /// for several keys that include it. Waiters register before each try, so a wake-up
    /// between two tries is not needed (the next try sees the release).
    fn wake(&self, key: &str) {
        if self.keys_waited.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(entry) = self.map().get(key) {
            entry.notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        if self.keys_waited.load(Ordering::Acquire) == 0 {
            return;
        }
        for entry in self.map().values() {
            entry.notify.notify_waiters();
        }
    }
}

impl Ticket<'_> {
    /// Records how the head's last try went: the store's failure, or `None` when it
    /// answered.
    pub(crate) fn note(&self, failure: Option<String>) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = failure;
    }

    /// The store's failure on the head's last try, if that try failed.
    pub(crate) fn noted(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut map = self.waits.map();
        if let Some(entry) = map.get_mut(&self.key) {
            entry.users -= 1;
            if entry.users == 0 {
                map.remove(&self.key);
                self.waits.keys_waited.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticket_last_one_out_removes_entry() {
        let waits = Waits::new();
        let a = waits.join("k", Lane::Exclusive);
        let b = waits.join("k", Lane::Shared);
        assert!(waits.has_waiters("k"));
        drop(a);
        assert!(waits.has_waiters("k"));
        drop(b);
        assert!(!waits.has_waiters("k"));
    }
}
