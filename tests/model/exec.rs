//! Runs a task's operations on a locker, recording every body and call.

use std::time::Duration;

use locked::{LockError, LockGuard, LockOptions, Locker};

use crate::history::{Class, Outcome, Recorder, now};
use crate::schedule::{Entry, Op, RW_KEY, SEM_KEY, Target, Then};

/// One task's view of a run: its locker, the run's key names and its recorder.
#[derive(Clone)]
pub struct Task {
    pub locker: Locker,
    /// The run's hash tag, e.g. `{r42}:`, in front of every key (one slot on a Cluster).
    pub space: String,
    pub permits: u32,
    pub rec: Recorder,
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl Task {
    fn key(&self, short: &str) -> String {
        format!("{}{short}", self.space)
    }

    pub async fn run_all(&self, ops: &[Op]) {
        for op in ops {
            self.run_op(op).await;
        }
    }

    async fn run_op(&self, op: &Op) {
        match op {
            Op::Burst(calls) => {
                // Each call a task of its own, so that they race on every worker thread.
                let tasks: Vec<_> = calls
                    .iter()
                    .cloned()
                    .map(|c| {
                        let task = self.clone();
                        tokio::spawn(async move { task.run_single(&c).await })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            }
            op => self.run_single(op).await,
        }
    }

    /// Any operation but a burst.
    async fn run_single(&self, op: &Op) {
        match op {
            Op::Burst(_) => {}
            Op::Idle(v) => tokio::time::sleep(ms(*v)).await,
            Op::IsLocked(k) => {
                let start = now();
                let out = self.locker.is_locked(&self.key(k)).await;
                self.other_call("is_locked", k, start, out.err());
            }
            Op::ForceRelease(k) => {
                let start = now();
                let out = self.locker.force_release(&self.key(k)).await;
                self.other_call("force_release", k, start, out.err());
            }
            Op::Misuse => {
                let start = now();
                let opts = self.locker.options().fencing(true);
                let out = self
                    .locker
                    .semaphore(&self.key(SEM_KEY), self.permits)
                    .try_acquire(opts)
                    .await;
                let outcome = match out {
                    Ok(_) => Outcome::Other("fencing on a semaphore was accepted".into()),
                    Err(e) => Outcome::of(&e),
                };
                let keys = [SEM_KEY.to_owned()];
                self.rec.call(
                    0,
                    Class::None,
                    &keys,
                    "misuse",
                    start,
                    &outcome,
                    0,
                    0,
                    "misuse",
                );
            }
            Op::Hold {
                target,
                entry,
                body_ms,
                ttl_ms,
                timeout_ms,
                cancel_us,
            } => {
                let opts = self
                    .locker
                    .options()
                    .ttl(ms(*ttl_ms))
                    .timeout(ms(*timeout_ms))
                    .retry_interval(ms(50))
                    .fencing(matches!(target, Target::Lock { fenced: true, .. }));
                let (class, keys) = match target {
                    Target::Lock { keys, .. } => {
                        (Class::Lock, keys.iter().map(|k| k.to_string()).collect())
                    }
                    Target::Permit => (Class::Permit, vec![SEM_KEY.to_owned()]),
                    Target::Read => (Class::Read, vec![RW_KEY.to_owned()]),
                    Target::Write => (Class::Write, vec![RW_KEY.to_owned()]),
                };
                let mode = match entry {
                    Entry::TryRun | Entry::TryAcquire(_) => "try",
                    Entry::Attribute { try_mode: true } => "try",
                    _ => "wait",
                };
                let what = format!("{entry:?} {target:?} body {body_ms} ms");
                let id = self.rec.id();
                let start = now();
                self.rec.began(id, class, &keys, start, *ttl_ms);
                let hold = self.hold(id, class, &keys, *entry, *body_ms, opts, start);
                let (outcome, error) = match cancel_us {
                    Some(c) => match tokio::time::timeout(Duration::from_micros(*c), hold).await {
                        Ok(o) => o,
                        Err(_) => (Outcome::Cancelled, None),
                    },
                    None => hold.await,
                };
                let what = match error {
                    Some(e) => format!("{what} | {}", e.replace(['\t', '\n'], " ")),
                    None => what,
                };
                self.rec.call(
                    id,
                    class,
                    &keys,
                    mode,
                    start,
                    &outcome,
                    *timeout_ms,
                    *ttl_ms,
                    &what,
                );
            }
        }
    }

    fn other_call(&self, what: &str, key: &str, start: u64, err: Option<LockError>) {
        let outcome = err.as_ref().map_or(Outcome::Ok, Outcome::of);
        self.rec.call(
            0,
            Class::None,
            &[key.to_owned()],
            "other",
            start,
            &outcome,
            0,
            0,
            what,
        );
    }

    /// A body: records its span, sleeps `body_ms`.
    #[allow(clippy::too_many_arguments)]
    async fn body(
        &self,
        id: u64,
        class: Class,
        keys: &[String],
        asked: u64,
        renewed: bool,
        opts: LockOptions,
        body_ms: u64,
    ) {
        let _inside = self.rec.enter(
            id,
            class,
            keys,
            locked::fencing_token(),
            asked,
            renewed,
            opts.ttl_value().as_millis() as u64,
            false,
        );
        tokio::time::sleep(ms(body_ms)).await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        id: u64,
        class: Class,
        keys: &[String],
        entry: Entry,
        body_ms: u64,
        opts: LockOptions,
        asked: u64,
    ) -> (Outcome, Option<String>) {
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let sem = self.locker.semaphore(&full[0], self.permits);
        let rw = self.locker.rw(&full[0]);
        let body = || self.body(id, class, keys, asked, true, opts, body_ms);
        let result: Result<bool, LockError> = match entry {
            Entry::Run => match class {
                Class::Lock => self.locker.run_all(&full, opts, body).await.map(|_| true),
                Class::Permit => sem.run(opts, body).await.map(|_| true),
                Class::Read => rw.read(opts, body).await.map(|_| true),
                _ => rw.write(opts, body).await.map(|_| true),
            },
            Entry::TryRun => match class {
                Class::Lock => self.locker.try_run(&full[0], opts, body).await,
                Class::Permit => sem.try_run(opts, body).await,
                Class::Read => rw.try_read(opts, body).await,
                _ => rw.try_write(opts, body).await,
            }
            .map(|o| o.is_some()),
            Entry::Attribute { try_mode } => {
                crate::attribute::call(class, &full[0], try_mode, body).await
            }
            Entry::Acquire(then) | Entry::TryAcquire(then) => {
                let wait = matches!(entry, Entry::Acquire(_));
                let guard = match (class, wait) {
                    (Class::Lock, true) => self.locker.acquire_all(&full, opts).await.map(Some),
                    (Class::Lock, false) => self.locker.try_acquire(&full[0], opts).await,
                    (Class::Permit, true) => sem.acquire(opts).await.map(Some),
                    (Class::Permit, false) => sem.try_acquire(opts).await,
                    (Class::Read, true) => rw.acquire_read(opts).await.map(Some),
                    (Class::Read, false) => rw.try_acquire_read(opts).await,
                    (_, true) => rw.acquire_write(opts).await.map(Some),
                    (_, false) => rw.try_acquire_write(opts).await,
                };
                match guard {
                    Ok(Some(g)) => self
                        .use_guard(id, class, keys, g, then, body_ms, opts, asked)
                        .await
                        .map(|_| true),
                    Ok(None) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Entry::Handoff => self
                .handoff(id, keys, &full, body_ms, opts, asked)
                .await
                .map(|_| true),
            Entry::Lead => self
                .locker
                .election(&full[0])
                .options(opts)
                .timeout(opts.timeout_value())
                .lead(|_term| body())
                .await
                .map(|_| true),
        };
        match result {
            Ok(true) => (Outcome::Ok, None),
            Ok(false) => (Outcome::Busy, None),
            Err(e) => (Outcome::of(&e), Some(e.to_string())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn use_guard(
        &self,
        id: u64,
        class: Class,
        keys: &[String],
        guard: LockGuard,
        then: Then,
        body_ms: u64,
        opts: LockOptions,
        asked: u64,
    ) -> Result<(), LockError> {
        let ttl_ms = opts.ttl_value().as_millis() as u64;
        let renewed = then == Then::AutoRenew;
        let guard = if renewed { guard.auto_renew() } else { guard };
        let inside = self.rec.enter(
            id,
            class,
            keys,
            guard.fencing_token(),
            asked,
            renewed,
            ttl_ms,
            false,
        );
        match then {
            Then::AutoRenew => {
                // Held past its ttl by renewal; stops if renewal reports a loss.
                let lost = tokio::select! {
                    lost = guard.lost() => Some(lost),
                    _ = tokio::time::sleep(ms(body_ms)) => None,
                };
                drop(inside);
                if let Some(lost) = lost {
                    drop(guard);
                    return Err(lost);
                }
                guard.release().await
            }
            Then::ExtendThenRelease => {
                tokio::time::sleep(ms(body_ms / 2)).await;
                let sent = now();
                let extended = guard.extend(opts.ttl_value()).await;
                if extended.is_ok() {
                    self.rec.extended(id, sent);
                }
                tokio::time::sleep(ms(body_ms / 2)).await;
                drop(inside);
                extended?;
                guard.release().await
            }
            Then::Release => {
                tokio::time::sleep(ms(body_ms)).await;
                drop(inside);
                guard.release().await
            }
            Then::Drop => {
                tokio::time::sleep(ms(body_ms)).await;
                drop(inside);
                drop(guard);
                Ok(())
            }
        }
    }

    async fn handoff(
        &self,
        id: u64,
        keys: &[String],
        full: &[String],
        body_ms: u64,
        opts: LockOptions,
        asked: u64,
    ) -> Result<(), LockError> {
        let ttl_ms = opts.ttl_value().as_millis() as u64;
        let guard = self.locker.acquire(&full[0], opts).await?;
        let fence = guard.fencing_token();
        let inside = self
            .rec
            .enter(id, Class::Lock, keys, fence, asked, false, ttl_ms, false);
        tokio::time::sleep(ms(body_ms / 2)).await;
        drop(inside);
        let handed = guard.handoff();
        let guard = self.locker.restore(&handed, opts.renew(false)).await?;
        let restored = self.rec.id();
        let inside = self.rec.enter(
            restored,
            Class::Lock,
            keys,
            guard.fencing_token(),
            asked,
            false,
            ttl_ms,
            true,
        );
        tokio::time::sleep(ms(body_ms / 2)).await;
        drop(inside);
        guard.release().await
    }
}
