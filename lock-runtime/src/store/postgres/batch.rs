//! Group commit (issue 18): while [`MAX_OUT`] calls of a `Locker` are out, the non-waiting
//! single-key lock takes and the single-key lock releases its other tasks make queue up,
//! and go together as soon as one of those returns: the takes as one
//! `INSERT ... SELECT FROM unnest(...) ON CONFLICT ... RETURNING key, fence`, the releases
//! as one `DELETE ... WHERE (key, token) IN (SELECT * FROM unnest(...))`, pipelined on one
//! connection, each caller getting its own answer. A call made while fewer are out goes
//! straight out as the statement it has always been: no timer, no waiting for company.
//!
//! Under load this is one statement (one backend's parse, plan, WAL flush) for many callers
//! where each paid for its own, and the server's backends are where PostgreSQL's time goes.
//!
//! - Keys repeated among a batch's takes: the first take of a key is sent, the later ones
//!   lose (`Held`), as they would have one after the other (`ON CONFLICT` cannot touch a
//!   row twice in one statement). Takes and releases go in key order, so that two batches
//!   lock rows in one order.
//! - A take whose caller stopped waiting before its batch went out is not sent; one whose
//!   caller went while its batch was out is given back once its answer is in. A release
//!   always goes, waited for or not.
//! - A batched statement that fails (a deadlock with a multi-key transaction, a lost
//!   connection) took nothing (it is one statement, rolled back whole): its items are then
//!   sent one by one, each caller getting its own answer or error.
//! - Releases announce (`pg_notify`) only the locks a waiter marked `contended`, as alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio_postgres::Row;
use tokio_postgres::types::Type;

use super::store::{PostgresStore, fence};
use crate::error::{BoxError, StoreError};
use crate::store::{Attempt, Kind, Lease, Release, Request};

/// How many calls of one `Locker` may be out at once before the next ones queue for a
/// batch: two keeps the server busy while a batch's answers are handed out.
const MAX_OUT: usize = 2;

/// The queue of one store's group commit.
#[derive(Default)]
pub(super) struct Queue {
    items: Vec<Item>,
    /// Calls out now (straight or batched).
    out: usize,
    /// Batched statements sent so far (for tests).
    batches: u64,
}

/// A queued call: what to send, and where its answer goes.
struct Item {
    key: String,
    token: String,
    /// `Some((ttl_ms, fencing))` for a take, `None` for a release.
    take: Option<(u64, bool)>,
    reply: oneshot::Sender<Answer>,
}

/// One queued caller's answer.
enum Answer {
    Take(Result<Attempt, BoxError>),
    Give(Result<Release, BoxError>),
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // The queue is never left half-changed: a poisoned lock still holds a whole one.
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether a take goes through the batch: a non-waiting try of a plain lock on one key.
pub(super) fn batches(req: &Request<'_>) -> bool {
    req.kind == Kind::Lock && req.keys.len() == 1 && !req.waiting && req.intent_ms == 0
}

impl PostgresStore {
    /// Queues `item` when enough calls are out (its answer to come), else counts a call
    /// out (`None`: the caller sends it itself, holding a [`Slot`]).
    fn enter(
        &self,
        key: &str,
        token: &str,
        take: Option<(u64, bool)>,
    ) -> Option<oneshot::Receiver<Answer>> {
        let mut queue = lock(&self.queue);
        if queue.out < MAX_OUT && queue.items.is_empty() {
            queue.out += 1;
            return None;
        }
        let (reply, answer) = oneshot::channel();
        queue.items.push(Item {
            key: key.to_owned(),
            token: token.to_owned(),
            take,
            reply,
        });
        Some(answer)
    }

    /// A non-waiting single-key lock take ([`batches`]): at once, or in the next batch.
    pub(super) async fn take_batched(
        self: &Arc<Self>,
        req: &Request<'_>,
    ) -> Result<Attempt, BoxError> {
        let [key] = req.keys else {
            return self.acquire_detached(req).await;
        };
        match self.enter(key, req.token, Some((req.ttl_ms, req.fencing))) {
            None => {
                let _slot = Slot(self.clone());
                self.acquire_detached(req).await
            }
            Some(answer) => match answer.await {
                Ok(Answer::Take(out)) => out,
                _ => Err(self.gone()),
            },
        }
    }

    /// A single-key lock release: at once, or in the next batch.
    pub(super) async fn give_batched(
        self: &Arc<Self>,
        lease: Lease<'_>,
    ) -> Result<Release, BoxError> {
        let ([key], Kind::Lock) = (lease.keys, lease.kind) else {
            return self.release(lease).await;
        };
        match self.enter(key, lease.token, None) {
            None => {
                let _slot = Slot(self.clone());
                self.release(lease).await
            }
            Some(answer) => match answer.await {
                Ok(Answer::Give(out)) => out,
                _ => Err(self.gone()),
            },
        }
    }

    fn gone(&self) -> BoxError {
        StoreError::boxed(
            "PostgreSQL",
            format!(
                "postgres at {}: the batch this call queued for was dropped",
                self.host
            ),
        )
    }

    /// Sends a batch: the releases, and the takes whose callers still wait; answers each,
    /// and gives back what a caller who stopped waiting meanwhile took.
    async fn send(self: &Arc<Self>, mut batch: Vec<Item>) {
        batch.retain(|item| item.take.is_none() || !item.reply.is_closed());
        let answers = if batch.len() > 1 {
            match self.many(&batch).await {
                Ok(answers) => {
                    lock(&self.queue).batches += 1;
                    answers
                }
                // One statement failed whole, so took nothing: each item on its own.
                Err(_) => self.each(&batch).await,
            }
        } else {
            self.each(&batch).await
        };
        let mut orphans = Vec::new();
        for (item, answer) in batch.into_iter().zip(answers) {
            let taken = matches!(answer, Answer::Take(Ok(Attempt::Acquired { .. })));
            if item.reply.send(answer).is_err() && taken {
                orphans.push((item.key, item.token));
            }
        }
        for (key, token) in orphans {
            // Its caller went while the batch was out: the engine's release of the dropped
            // try may have run before this take landed, so the lock is given back here.
            let keys = [key];
            let lease = Lease {
                keys: &keys,
                token: &token,
                kind: Kind::Lock,
            };
            let _ = self.release(lease).await;
        }
    }

    /// Each item as the statement it is alone.
    async fn each(&self, batch: &[Item]) -> Vec<Answer> {
        let mut answers = Vec::with_capacity(batch.len());
        for item in batch {
            let keys = [item.key.clone()];
            answers.push(match item.take {
                Some((ttl_ms, fencing)) => {
                    let req = Request {
                        keys: &keys,
                        token: &item.token,
                        ttl_ms,
                        fencing,
                        waiting: false,
                        replicas: None,
                        kind: Kind::Lock,
                        intent_ms: 0,
                    };
                    Answer::Take(self.acquire_lock(&req).await)
                }
                None => {
                    let lease = Lease {
                        keys: &keys,
                        token: &item.token,
                        kind: Kind::Lock,
                    };
                    Answer::Give(self.release(lease).await)
                }
            });
        }
        answers
    }

    /// The answers of a batch of several items, one per item in order: the takes in one
    /// statement, the releases in another, pipelined on one connection.
    async fn many(&self, batch: &[Item]) -> Result<Vec<Answer>, BoxError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| self.error("batch", &e);
        // The first take of each key, in key order; the later ones of a key lose.
        let mut sent = HashSet::new();
        let mut takes: Vec<&Item> = batch
            .iter()
            .filter(|i| i.take.is_some() && sent.insert(i.key.as_str()))
            .collect();
        takes.sort_by(|a, b| a.key.cmp(&b.key));
        let mut gives: Vec<&Item> = batch.iter().filter(|i| i.take.is_none()).collect();
        gives.sort_by(|a, b| a.key.cmp(&b.key));

        let column = |items: &[&Item], f: fn(&Item) -> String| -> Vec<String> {
            items.iter().map(|i| f(i)).collect()
        };
        let (give_keys, give_tokens) = (
            column(&gives, |i| i.key.clone()),
            column(&gives, |i| i.token.clone()),
        );
        let (take_keys, take_tokens) = (
            column(&takes, |i| i.key.clone()),
            column(&takes, |i| i.token.clone()),
        );
        let ttls: Vec<i64> = takes
            .iter()
            .map(|i| i64::try_from(i.take.map_or(0, |t| t.0)).unwrap_or(i64::MAX))
            .collect();
        let released = async {
            if gives.is_empty() {
                return Ok(Vec::new());
            }
            client
                .query_typed(
                    &self.sql.release_batch,
                    &[
                        (&give_keys, Type::TEXT_ARRAY),
                        (&give_tokens, Type::TEXT_ARRAY),
                        (&self.channel, Type::TEXT),
                    ],
                )
                .await
        };
        let taken = async {
            if takes.is_empty() {
                return Ok(Vec::new());
            }
            client
                .query_typed(
                    &self.sql.acquire_batch,
                    &[
                        (&take_keys, Type::TEXT_ARRAY),
                        (&take_tokens, Type::TEXT_ARRAY),
                        (&ttls, Type::INT8_ARRAY),
                    ],
                )
                .await
        };
        let (released, taken) = tokio::join!(released, taken);
        let (released, taken): (Vec<Row>, Vec<Row>) =
            (released.map_err(fail)?, taken.map_err(fail)?);
        // Released: (key, token) of each live lock deleted.
        let mut live: HashSet<(String, String)> = released
            .iter()
            .filter(|r| r.get::<_, bool>(2))
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // Taken: the fence of each key taken (by the first take of that key).
        let mut fences: HashMap<String, i64> = taken.iter().map(|r| (r.get(0), r.get(1))).collect();
        drop(client);
        let mut answers = Vec::with_capacity(batch.len());
        for item in batch {
            answers.push(match item.take {
                Some((_, fencing)) => Answer::Take(Ok(match fences.remove(&item.key) {
                    Some(f) => Attempt::Acquired {
                        fence: fencing.then(|| fence(f)),
                    },
                    None => Attempt::Held { remaining: None },
                })),
                None if live.remove(&(item.key.clone(), item.token.clone())) => {
                    Answer::Give(Ok(Release::Released))
                }
                // Not released: someone else's, or gone (rare; asked alone).
                None => Answer::Give(self.foreign(&item.key, &item.token).await),
            });
        }
        Ok(answers)
    }

    /// A release that deleted nothing live: is the key someone else's?
    async fn foreign(&self, key: &str, token: &str) -> Result<Release, BoxError> {
        let client = self.client().await?;
        let keys = vec![key.to_owned()];
        let row = client
            .query_typed_one(
                &self.sql.foreign,
                &[(&keys, Type::TEXT_ARRAY), (&token, Type::TEXT)],
            )
            .await
            .map_err(|e| self.error("release", &e))?;
        Ok(if row.get::<_, i64>(0) > 0 {
            Release::Foreign
        } else {
            Release::Gone
        })
    }
}

/// One call out. When it ends it takes what queued meanwhile and sends it as the next
/// batch, from a task of its own, so the caller whose call this was returns at once.
struct Slot(Arc<PostgresStore>);

impl Drop for Slot {
    fn drop(&mut self) {
        let batch = {
            let mut queue = lock(&self.0.queue);
            if queue.items.is_empty() {
                queue.out -= 1;
                return;
            }
            std::mem::take(&mut queue.items)
        };
        // The slot passes to the task that sends the batch.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let store = self.0.clone();
                runtime.spawn(async move {
                    let slot = Slot(store);
                    slot.0.send(batch).await;
                    drop(slot);
                });
            }
            Err(_) => {
                // No runtime to send it on: its callers hear that their batch was dropped.
                lock(&self.0.queue).out -= 1;
                drop(batch);
            }
        }
    }
}
