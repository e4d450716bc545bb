//! A Redis store's wake-up feed: one subscription connection per `Locker`, driven by a
//! background task, that turns release announcements into wake-ups of that `Locker`'s
//! waiters. Written once over a [`Source`]: classic pub/sub on one server, sharded pub/sub
//! on a cluster.
//!
//! ## Behavior
//! - The connection is opened when the first key is watched, and each channel is
//!   subscribed while at least one waiter watches its key (counted per key).
//! - A lost connection is reopened and every watched channel subscribed again; since
//!   releases may have been missed meanwhile, every waiter is then woken to try again.
//! - The task ends with the `Locker`, and is started again (with the channels watched
//!   now) when the runtime it ran on has shut down.
//! - A failure only costs wake-ups: waiters still poll.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::{mpsc, oneshot};

use super::naming::release_channel;
use crate::error::BoxError;
use crate::store::WakeTarget;

/// What a subscription connection reports.
pub(crate) enum Event {
    /// A message arrived on this channel.
    Message(String),
    /// The connection subscribed this channel again by itself (after a reconnect).
    Resubscribed(String),
}

/// Where a feed's connection comes from.
pub(crate) trait Source: Send + Sync + 'static {
    type Sink: Sink;
    /// Opens a subscription connection: the half that subscribes, and its events.
    fn connect(
        &self,
    ) -> impl Future<Output = Result<(Self::Sink, BoxStream<'static, Event>), BoxError>> + Send;
}

/// The half of a subscription connection that subscribes and unsubscribes.
pub(crate) trait Sink: Send + 'static {
    fn subscribe(&mut self, channel: &str) -> impl Future<Output = Result<(), BoxError>> + Send;
    fn unsubscribe(&mut self, channel: &str) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// How long one connection attempt of the feed may take, and the pause after a failure.
const RETRY: Duration = Duration::from_millis(500);

enum Command {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// What the feed and its task share: which key each subscribed channel belongs to, and
/// whom to wake.
struct FeedState {
    /// channel -> (key, watchers).
    channels: Mutex<HashMap<String, (String, usize)>>,
    target: OnceLock<Weak<dyn WakeTarget>>,
}

impl FeedState {
    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, usize)>> {
        // Every critical section is one insert, remove or counter change.
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self, channel: &str) {
        let key = self.channels().get(channel).map(|(key, _)| key.clone());
        if let (Some(key), Some(target)) = (key, self.target.get().and_then(Weak::upgrade)) {
            target.wake(&key);
        }
    }

    fn wake_all(&self) {
        if let Some(target) = self.target.get().and_then(Weak::upgrade) {
            target.wake_all();
        }
    }
}

/// The wake-up feed of one Redis store.
pub(crate) struct Feed<S: Source> {
    source: Arc<S>,
    shared: Arc<FeedState>,
    /// The running task's inbox; replaced when that task has ended (its runtime was shut
    /// down), so a `Locker` outlives the runtime it first waited on.
    tx: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl<S: Source> Feed<S> {
    pub(crate) fn new(source: S) -> Self {
        Self {
            source: Arc::new(source),
            shared: Arc::new(FeedState {
                channels: Mutex::new(HashMap::new()),
                target: OnceLock::new(),
            }),
            tx: Mutex::new(None),
        }
    }

    pub(crate) fn attach(&self, target: Weak<dyn WakeTarget>) {
        let _ = self.shared.target.set(target);
    }

    /// Counts one more watcher of `key`; the first subscribes its channel.
    pub(crate) fn watch(&self, key: &str) -> Option<oneshot::Receiver<()>> {
        let channel = release_channel(key);
        // Sent under the map lock, so subscribe and unsubscribe of one channel reach the
        // task in the order the counts changed.
        let mut channels = self.shared.channels();
        let entry = channels
            .entry(channel.clone())
            .or_insert_with(|| (key.to_owned(), 0));
        entry.1 += 1;
        if entry.1 > 1 {
            return None;
        }
        let (ack, done) = oneshot::channel();
        let wanted = || channels.keys().cloned().collect();
        self.sender(wanted)?
            .send(Command::Subscribe(channel, ack))
            .ok()?;
        Some(done)
    }

    /// Counts one watcher of `key` less; the last unsubscribes its channel.
    pub(crate) fn unwatch(&self, key: &str) {
        let channel = release_channel(key);
        let mut channels = self.shared.channels();
        let Some(entry) = channels.get_mut(&channel) else {
            return;
        };
        entry.1 -= 1;
        if entry.1 > 0 {
            return;
        }
        channels.remove(&channel);
        let wanted = || channels.keys().cloned().collect();
        if let Some(tx) = self.sender(wanted) {
            let _ = tx.send(Command::Unsubscribe(channel));
        }
    }

    /// The task's inbox, starting a task (told `wanted()`, the channels watched now) when
    /// none runs on a live runtime.
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
        handle.spawn(drive(
            self.source.clone(),
            rx,
            Arc::downgrade(&self.shared),
            wanted(),
        ));
        *slot = Some(tx.clone());
        Some(tx)
    }
}

async fn drive<S: Source>(
    source: Arc<S>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    shared: Weak<FeedState>,
    wanted: Vec<String>,
) {
    let mut wanted: HashSet<String> = wanted.into_iter().collect();
    loop {
        let connected = tokio::time::timeout(RETRY * 4, source.connect()).await;
        let Ok(Ok((mut sink, mut events))) = connected else {
            // Not connected: keep track of what is wanted, answer acks (waiters poll).
            match tokio::time::timeout(RETRY, rx.recv()).await {
                Ok(None) => return,
                Ok(Some(cmd)) => apply(&mut wanted, cmd),
                Err(_) => {}
            }
            continue;
        };
        let mut ok = true;
        for channel in &wanted {
            ok &= sink.subscribe(channel).await.is_ok();
        }
        if !ok {
            tokio::time::sleep(RETRY).await;
            continue;
        }
        // Releases may have been missed while disconnected: let every waiter try again.
        match shared.upgrade() {
            Some(s) => s.wake_all(),
            None => return,
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
                event = events.next() => {
                    let Some(s) = shared.upgrade() else { return };
                    match event {
                        None => break, // connection lost: reconnect and resubscribe
                        Some(Event::Message(channel)) => s.wake(&channel),
                        // A release may have been missed while the client reconnected.
                        Some(Event::Resubscribed(channel)) => s.wake(&channel),
                    }
                }
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
