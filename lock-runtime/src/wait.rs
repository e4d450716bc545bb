//! Waiting for a held lock: a FIFO queue per key inside each `Locker`, and wake-ups when a
//! lock is released (a `Notify` for the memory store, Redis pub/sub for Redis).
//!
//! ## Behavior
//! - A caller that finds no one of its `Locker` waiting on a key tries the store at once
//!   (the uncontended path costs nothing more).
//! - Otherwise it joins the key's queue (a fair semaphore): only the head of the queue
//!   talks to the store, so a task that just released cannot jump ahead of earlier
//!   waiters, and waiters are served in arrival order.
//! - The head subscribes to the key's release channel (Redis: `<key>:released`, one
//!   shared subscription connection per `Locker`), then tries again before it sleeps, so a
//!   release between its first try and the subscription is not missed. Subscribing only
//!   after a failed first try keeps the uncontended path at one round trip.
//! - A release wakes the head at once. Polling every `retry_interval` (with jitter, and no
//!   later than the holder's remaining ttl) stays as the fallback for expiry, a lost
//!   message or a dropped subscription connection.
//! - The subscription to a key is dropped when no one of this `Locker` waits on it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

/// The pub/sub channel a release of `key` is announced on.
pub(crate) fn release_channel(key: &str) -> String {
    format!("{key}{RELEASE_SUFFIX}")
}

const RELEASE_SUFFIX: &str = ":released";

struct Entry {
    queue: Arc<Semaphore>,
    notify: Arc<Notify>,
    users: usize,
}

/// The waiters of one `Locker`, per key.
pub(crate) struct Waits {
    map: Mutex<HashMap<String, Entry>>,
    /// How many keys have waiters: lets the uncontended path skip the mutex.
    keys_waited: AtomicUsize,
    /// Redis only: the shared subscription connection, started on first need.
    subscriber: Option<Subscriber>,
}

/// A place in a key's queue; leaving it (drop) cleans up after the last waiter.
pub(crate) struct Ticket<'a> {
    waits: &'a Waits,
    key: String,
    pub(crate) queue: Arc<Semaphore>,
    pub(crate) notify: Arc<Notify>,
    subscribed: Option<oneshot::Receiver<()>>,
}

impl Waits {
    pub(crate) fn new(redis: Option<redis::Client>) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Waits>| Waits {
            map: Mutex::new(HashMap::new()),
            keys_waited: AtomicUsize::new(0),
            subscriber: redis.map(|client| Subscriber {
                client,
                waits: me.clone(),
                tx: Mutex::new(None),
            }),
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

    /// Joins the queue of `key`.
    pub(crate) fn join(&self, key: &str) -> Ticket<'_> {
        let mut map = self.map();
        let mut subscribed = None;
        if !map.contains_key(key) {
            self.keys_waited.fetch_add(1, Ordering::AcqRel);
            if let Some(sub) = &self.subscriber {
                // Sent under the map lock, so subscribe and unsubscribe of one key reach
                // the subscriber in the order the entry was made and removed.
                subscribed = sub.subscribe(release_channel(key), || channels(&map));
            }
        }
        let entry = map.entry(key.to_owned()).or_insert_with(|| Entry {
            queue: Arc::new(Semaphore::new(1)),
            notify: Arc::new(Notify::new()),
            users: 0,
        });
        entry.users += 1;
        Ticket {
            waits: self,
            key: key.to_owned(),
            queue: entry.queue.clone(),
            notify: entry.notify.clone(),
            subscribed,
        }
    }

    /// Wakes whoever waits for a release of `key`: the head of its queue, and waiters
    /// for several keys that include it. Waiters register before each try, so a wake-up
    /// between two tries is not needed (the next try sees the release).
    pub(crate) fn wake(&self, key: &str) {
        if self.keys_waited.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(entry) = self.map().get(key) {
            entry.notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for entry in self.map().values() {
            entry.notify.notify_waiters();
        }
    }
}

impl Ticket<'_> {
    /// Waits (bounded) until the release channel is subscribed, if this ticket started
    /// the subscription; a failure just leaves the waiter to polling.
    pub(crate) async fn subscribed(&mut self, limit: Duration) {
        if let Some(rx) = self.subscribed.take() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
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
                if let Some(sub) = &self.waits.subscriber {
                    sub.unsubscribe(release_channel(&self.key), || channels(&map));
                }
            }
        }
    }
}

enum Command {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// One pub/sub connection per `Locker`, driven by a background task that ends when the
/// `Locker` is dropped.
struct Subscriber {
    client: redis::Client,
    waits: Weak<Waits>,
    /// The running task's inbox; replaced when that task has ended (its runtime was
    /// shut down), so a `Locker` outlives the runtime it first waited on.
    tx: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl Subscriber {
    /// The task's inbox, starting a task (told `wanted()`, the channels waited on now)
    /// when none runs on a live runtime. Called with the waits map locked, so it must not
    /// lock it again: `wanted` reads the caller's guard.
    fn sender(
        &self,
        wanted: impl FnOnce() -> Vec<String>,
    ) -> Option<mpsc::UnboundedSender<Command>> {
        let mut slot = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
            return Some(tx.clone());
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::unbounded_channel();
        handle.spawn(drive(self.client.clone(), rx, self.waits.clone(), wanted()));
        *slot = Some(tx.clone());
        Some(tx)
    }

    fn subscribe(
        &self,
        channel: String,
        wanted: impl FnOnce() -> Vec<String>,
    ) -> Option<oneshot::Receiver<()>> {
        let (ack, done) = oneshot::channel();
        self.sender(wanted)?
            .send(Command::Subscribe(channel, ack))
            .ok()?;
        Some(done)
    }

    fn unsubscribe(&self, channel: String, wanted: impl FnOnce() -> Vec<String>) {
        if let Some(tx) = self.sender(wanted) {
            let _ = tx.send(Command::Unsubscribe(channel));
        }
    }
}

/// The release channels of every key waited on.
fn channels(map: &HashMap<String, Entry>) -> Vec<String> {
    map.keys().map(|k| release_channel(k)).collect()
}

/// How long one connection attempt of the subscriber may take, and the pause after a failure.
const SUBSCRIBER_RETRY: Duration = Duration::from_millis(500);

async fn drive(
    client: redis::Client,
    mut rx: mpsc::UnboundedReceiver<Command>,
    waits: Weak<Waits>,
    wanted: Vec<String>,
) {
    let mut wanted: HashSet<String> = wanted.into_iter().collect();
    loop {
        let connected = tokio::time::timeout(SUBSCRIBER_RETRY * 4, client.get_async_pubsub()).await;
        let Ok(Ok(pubsub)) = connected else {
            // Not connected: keep track of what is wanted, answer acks (waiters poll).
            match tokio::time::timeout(SUBSCRIBER_RETRY, rx.recv()).await {
                Ok(None) => return,
                Ok(Some(cmd)) => apply(&mut wanted, cmd),
                Err(_) => {}
            }
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut ok = true;
        for channel in &wanted {
            ok &= sink.subscribe(channel).await.is_ok();
        }
        if !ok {
            continue;
        }
        // Releases may have been missed while disconnected: let every head try again.
        if let Some(w) = waits.upgrade() {
            w.wake_all();
        }
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(Command::Subscribe(channel, ack)) => {
                        let _ = sink.subscribe(&channel).await;
                        wanted.insert(channel);
                        let _ = ack.send(());
                    }
                    Some(Command::Unsubscribe(channel)) => {
                        let _ = sink.unsubscribe(&channel).await;
                        wanted.remove(&channel);
                    }
                },
                msg = stream.next() => match msg {
                    None => break, // connection lost: reconnect and resubscribe
                    Some(msg) => {
                        let Some(w) = waits.upgrade() else { return };
                        if let Some(key) = msg.get_channel_name().strip_suffix(RELEASE_SUFFIX) {
                            w.wake(key);
                        }
                    }
                },
            }
        }
    }
}

fn apply(wanted: &mut HashSet<String>, cmd: Command) {
    match cmd {
        Command::Subscribe(channel, _ack) => {
            wanted.insert(channel);
        }
        Command::Unsubscribe(channel) => {
            wanted.remove(&channel);
        }
    }
}

/// `retry_interval` with ±20% jitter, so waiters of many processes do not poll in step.
pub(crate) fn jittered(interval: Duration, seed: u64) -> Duration {
    // splitmix64: a well-spread value from the token and attempt number.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let permille = 800 + (z % 401); // 0.800 ..= 1.200
    // Saturating: a `Duration::MAX` interval must not panic.
    interval.saturating_mul(permille as u32) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_stays_within_twenty_percent() {
        let base = Duration::from_millis(100);
        let values: Vec<Duration> = (0..200).map(|i| jittered(base, i)).collect();
        assert!(
            values
                .iter()
                .all(|d| *d >= Duration::from_millis(80) && *d <= Duration::from_millis(120))
        );
        assert!(values.iter().any(|d| *d < Duration::from_millis(95)));
        assert!(values.iter().any(|d| *d > Duration::from_millis(105)));
    }

    #[tokio::test]
    async fn ticket_last_one_out_removes_entry() {
        let waits = Waits::new(None);
        let a = waits.join("k");
        let b = waits.join("k");
        assert!(waits.has_waiters("k"));
        drop(a);
        assert!(waits.has_waiters("k"));
        drop(b);
        assert!(!waits.has_waiters("k"));
    }

    #[test]
    fn release_channel_is_key_plus_suffix() {
        assert_eq!(release_channel("lock:a"), "lock:a:released");
    }
}
