//! The task-local context of a running body: the keys it holds (to refuse a nested
//! acquisition of one of them) and its fencing token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::guard::LockGuard;
use crate::ticket::Ticket;

/// What the running body holds: its keys (to refuse nested acquisition), fencing token,
/// and what a hand-off of its lock would carry.
#[derive(Debug, Clone, Default)]
pub(crate) struct HoldContext {
    keys: Vec<String>,
    fence: Option<u64>,
    handoff: Option<Arc<Handoff>>,
}

/// The innermost lock of a body, as [`handoff`] hands it over.
#[derive(Debug)]
pub(crate) struct Handoff {
    ticket: Ticket,
    handed: AtomicBool,
}

impl Handoff {
    /// Whether the body handed its lock off (so it must not be released).
    pub(crate) fn handed(&self) -> bool {
        self.handed.load(Ordering::SeqCst)
    }
}

tokio::task_local! {
    pub(crate) static CONTEXT: HoldContext;
}

impl HoldContext {
    /// Whether the current task runs inside a body that holds `key`.
    pub(crate) fn holds(key: &str) -> bool {
        CONTEXT
            .try_with(|ctx| ctx.keys.iter().any(|k| k == key))
            .unwrap_or(false)
    }

    pub(crate) fn enter(guard: &LockGuard) -> Self {
        let mut ctx = CONTEXT.try_with(Clone::clone).unwrap_or_default();
        ctx.keys.extend(guard.keys().iter().cloned());
        ctx.fence = guard.fencing_token();
        ctx.handoff = Some(Arc::new(Handoff {
            ticket: guard.ticket(),
            handed: AtomicBool::new(false),
        }));
        ctx
    }

    /// The hand-off cell of this context's innermost lock.
    pub(crate) fn handoff_cell(&self) -> Option<Arc<Handoff>> {
        self.handoff.clone()
    }
}

/// The fencing token of the innermost lock the current task's body holds, when that lock
/// was taken with `fencing`; `None` outside a locked body or without fencing.
///
/// Pass it to the storage the body writes to, so that storage can refuse a write carrying
/// a token lower than one it has already seen: a holder that paused past its ttl (a long
/// GC pause, a stalled VM) and woke up after another holder took the lock can then do no
/// harm, even though it still believes it holds the lock.
///
/// Tokens of one key strictly increase across acquisitions, also after the lock key (and,
/// on Redis, the fence counter) expired and was re-created.
///
/// # Examples
///
/// A store that keeps the highest token it has seen and refuses older writers:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// use std::sync::Mutex;
///
/// #[derive(Default)]
/// struct Ledger {
///     highest_token: Mutex<u64>,
///     balance: Mutex<i64>,
/// }
///
/// impl Ledger {
///     /// Applies a write only if it carries the newest token seen so far.
///     fn write(&self, token: u64, balance: i64) -> Result<(), &'static str> {
///         let mut highest = self.highest_token.lock().unwrap();
///         if token < *highest {
///             return Err("stale lock holder: write refused");
///         }
///         *highest = token;
///         *self.balance.lock().unwrap() = balance;
///         Ok(())
///     }
/// }
///
/// let ledger = Ledger::default();
/// let locker = locked::Locker::memory();
/// let fenced = locker.options().fencing(true);
///
/// // An early holder takes its token, then stalls...
/// let stale = locker.acquire("ledger", fenced).await?.fencing_token().unwrap();
/// locker.force_release("ledger").await?; // (its lock expires meanwhile)
/// // ...a new holder writes with a newer token...
/// locker
///     .run("ledger", fenced, || async {
///         ledger.write(locked::fencing_token().unwrap(), 100).unwrap();
///     })
///     .await?;
/// // ...and the stale holder's late write is refused.
/// assert!(ledger.write(stale, 50).is_err());
/// assert_eq!(*ledger.balance.lock().unwrap(), 100);
/// # Ok(()) }
/// ```
///
/// Inside and outside a body:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// let locker = locked::Locker::memory();
/// assert_eq!(locked::fencing_token(), None);
/// let token = locker
///     .run("ledger", locker.options().fencing(true), || async { locked::fencing_token() })
///     .await?;
/// assert!(token.is_some());
/// # Ok(()) }
/// ```
pub fn fencing_token() -> Option<u64> {
    CONTEXT.try_with(|ctx| ctx.fence).ok().flatten()
}

/// Hands the lock of the running body (`run` or `#[locked]`, the innermost one) to
/// another process: returns the string for [`Locker::restore`](crate::Locker::restore), and
/// the lock is then neither released when the body ends nor renewed after it: the process
/// that restores it renews it and releases it. `None` outside a locked body.
///
/// Renewal goes on until the body ends, so hand off as the body's last step and end it
/// soon after. The string is a secret: whoever has it can release or extend the lock.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), locked::LockError> {
/// let locker = locked::Locker::memory();
/// // An HTTP handler takes the lock and hands it to a queue worker.
/// let handed = locker
///     .run("import:42", locker.options(), || async { locked::handoff() })
///     .await?
///     .expect("inside a locked body");
/// assert!(locker.is_locked("import:42").await?, "still held after the body ended");
/// // The worker (another process, on the same store) finishes the job under it.
/// let guard = locker.restore(&handed, locker.options()).await?;
/// guard.release().await?;
/// assert!(!locker.is_locked("import:42").await?);
/// # Ok(()) }
/// ```
pub fn handoff() -> Option<String> {
    CONTEXT
        .try_with(|ctx| {
            ctx.handoff.as_ref().map(|cell| {
                cell.handed.store(true, Ordering::SeqCst);
                cell.ticket.encode()
            })
        })
        .ok()
        .flatten()
}
