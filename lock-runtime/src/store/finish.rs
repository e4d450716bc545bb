//! A store call that always runs to its end: in its caller's task while the caller waits
//! for it, and on a task of its own from the moment the caller stops waiting (a timeout, a
//! `select!`, a dropped request).
//!
//! A statement that was sent may still land after its caller is gone: a take that lands
//! then must be given back, and a connection must not be dropped between a statement and
//! its answer. Running every call on a task of its own gives both, at the price of two
//! hand-offs between tasks per call (often between threads: on a 2-core machine that was
//! a tenth of a MySQL lock cycle). [`finish`] pays that only when the caller does go away:
//! the half-done call is moved, as it is, onto a task that finishes it and then hands its
//! outcome to `orphaned` (which gives back what it took).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type Work<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Orphaned<T> = Box<dyn FnOnce(T) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Runs `work` to its end, and its outcome to the caller; if the caller stops waiting
/// first, `work` goes on on a task of its own and its outcome goes to `orphaned`.
///
/// Outside a Tokio runtime (a caller dropped while its runtime shuts down) the half-done
/// work is dropped: nothing is left to run it.
pub(crate) async fn finish<T, W, O, F>(work: W, orphaned: O) -> T
where
    T: Send + 'static,
    W: Future<Output = T> + Send + 'static,
    O: FnOnce(T) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    Finish {
        work: Some(Box::pin(work)),
        orphaned: Some(Box::new(move |out| Box::pin(orphaned(out)))),
    }
    .await
}

struct Finish<T: Send + 'static> {
    work: Option<Work<T>>,
    orphaned: Option<Orphaned<T>>,
}

impl<T: Send + 'static> Future for Finish<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(work) = self.work.as_mut() else {
            // Polled again after its end: never by `finish`, which awaits it once.
            return Poll::Pending;
        };
        let out = std::task::ready!(work.as_mut().poll(cx));
        self.work = None;
        self.orphaned = None;
        Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for Finish<T> {
    fn drop(&mut self) {
        let (Some(work), Some(orphaned)) = (self.work.take(), self.orphaned.take()) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { orphaned(work.await).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::finish;

    #[tokio::test]
    async fn a_waiting_caller_gets_the_outcome_and_orphaned_never_runs() {
        let orphans = Arc::new(AtomicUsize::new(0));
        let seen = orphans.clone();
        let out = finish(async { 7 }, move |_| async move {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .await;
        assert_eq!(out, 7);
        tokio::task::yield_now().await;
        assert_eq!(orphans.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn work_whose_caller_left_runs_to_its_end_and_its_outcome_goes_to_orphaned() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let call = finish(
            async move {
                let _ = wait.await;
                "taken"
            },
            move |out| async move {
                let _ = tx.send(out);
            },
        );
        // The caller gives up while the work is half done.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), call)
                .await
                .is_err()
        );
        go.send(()).unwrap();
        let out = tokio::time::timeout(Duration::from_secs(10), rx).await;
        assert_eq!(out.unwrap().unwrap(), "taken");
    }
}
