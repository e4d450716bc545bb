//! The `LISTEN`/`NOTIFY` driver: one listening connection per `Locker`, its notifications
//! turned into wake-ups, its reconnects.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_postgres::{AsyncMessage, NoTls};

use super::setup::behind_pooler;
use super::store::PostgresStore;
use crate::store::WakeTarget;

/// The pause before the listener connects again.
const LISTEN_RETRY: Duration = Duration::from_millis(500);

/// The `LISTEN` connection of one `Locker`: started on the first wait, kept while the
/// `Locker` lives, reconnected (waking every waiter) when it drops.
#[derive(Default)]
pub(super) struct Listener {
    state: Arc<Mutex<ListenState>>,
    /// Dropped with the store: ends the task.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

#[derive(Default)]
struct ListenState {
    target: Option<Weak<dyn WakeTarget>>,
    started: bool,
    listening: bool,
    /// The listening connection failed or was lost (an unreachable listen URL, a server
    /// restart): waiters poll meanwhile instead of waiting for it.
    down: bool,
    /// Waiters to tell once `LISTEN` is in place (or once it failed).
    pending: Vec<oneshot::Sender<()>>,
}

fn lock(state: &Mutex<ListenState>) -> std::sync::MutexGuard<'_, ListenState> {
    // Every critical section is a few field writes.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Listener {
    pub(super) fn attach(&self, target: Weak<dyn WakeTarget>) {
        lock(&self.state).target = Some(target);
    }

    /// Starts the task on first use; a receiver that resolves once `LISTEN` is in place,
    /// or `None` when it is already.
    pub(super) fn start(&self, store: &PostgresStore) -> Option<oneshot::Receiver<()>> {
        let mut state = lock(&self.state);
        if state.listening || state.down {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        state.pending.push(tx);
        if !state.started {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return Some(rx);
            };
            state.started = true;
            let (stop, stopped) = oneshot::channel();
            *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop);
            let listen = store.listen_sql();
            runtime.spawn(listen_loop(
                store.listen.clone(),
                listen,
                self.state.clone(),
                stopped,
            ));
        }
        Some(rx)
    }
}

/// Listens until the store is dropped: connect, `LISTEN`, turn each notification into a
/// wake-up of its key; on a lost connection, wake everyone (releases may have been
/// missed) and connect again.
async fn listen_loop(
    config: tokio_postgres::Config,
    listen: String,
    state: Arc<Mutex<ListenState>>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let session = listen_once(&config, &listen, &state);
        let ended = tokio::select! {
            _ = &mut stopped => return,
            ended = session => ended,
        };
        let target = {
            let mut s = lock(&state);
            s.listening = false;
            // Until `LISTEN` is back (never, behind a pooler), `start` answers `None`.
            s.down = true;
            // Those waiting for `LISTEN` go on polling rather than wait out their deadline.
            for waiter in s.pending.drain(..) {
                let _ = waiter.send(());
            }
            s.target.clone()
        };
        if let Session::Pooled = ended {
            tracing::info!(
                "locked: the PostgreSQL listening connection goes through a pooler \
                 (PgBouncer), where LISTEN hears nothing: waiters poll every retry_interval; \
                 give `listen_url` (LOCK_DATABASE_LISTEN_URL) a direct URL for prompt wake-ups"
            );
            return;
        }
        match target.and_then(|t| t.upgrade()) {
            Some(t) => t.wake_all(),
            None => return,
        }
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(LISTEN_RETRY) => {}
        }
    }
}

/// How a listening connection ended.
enum Session {
    /// It failed, or was lost: connect again.
    Lost,
    /// It goes through a pooler: no `LISTEN` (see [`behind_pooler`]).
    Pooled,
}

/// One listening connection, until it fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    listen: &str,
    state: &Mutex<ListenState>,
) -> Session {
    let Ok((client, mut connection)) = config.connect(NoTls).await else {
        return Session::Lost;
    };
    let (tx, mut keys) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(n.payload().to_owned());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    let work = async {
        match behind_pooler(&client).await {
            Ok(false) => {}
            Ok(true) => return Session::Pooled,
            Err(_) => return Session::Lost,
        }
        if client.batch_execute(listen).await.is_err() {
            return Session::Lost;
        }
        let target = {
            let mut s = lock(state);
            s.listening = true;
            s.down = false;
            for waiter in s.pending.drain(..) {
                let _ = waiter.send(());
            }
            s.target.clone()
        };
        // A (re)connect may have missed releases: every waiter tries again.
        if let Some(t) = target.as_ref().and_then(Weak::upgrade) {
            t.wake_all();
        }
        while let Some(key) = keys.recv().await {
            match target.as_ref().and_then(Weak::upgrade) {
                Some(t) => t.wake(&key),
                None => return Session::Lost,
            }
        }
        Session::Lost
    };
    tokio::select! {
        () = driver => Session::Lost,
        ended = work => ended,
    }
}
