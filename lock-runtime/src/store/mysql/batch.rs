//! Group commit (issue 18): while [`MAX_OUT`] calls of a `Locker` are out, the non-waiting
//! single-key lock takes and the single-key lock releases its other tasks make queue up,
//! and go together as soon as one of those returns, as one text query of several
//! statements (one round trip): the releases as a
//! `SELECT ... FOR UPDATE` of their rows and one `DELETE ... WHERE (k, token) IN (...)`,
//! the takes as one multi-row `INSERT ... ON DUPLICATE KEY UPDATE` (the single take's
//! guard: a row is taken when it has expired or is the caller's) and a `SELECT` of whose
//! each row now is. A call made while fewer are out goes straight out as the statement it
//! has always been: no timer, no waiting for company.
//!
//! Under load this is one statement (one parse, one commit) for many callers where each
//! paid for its own, and `mariadbd`'s CPU is what the server runs out of.
//!
//! - Keys repeated among a batch's takes: the first take of a key is sent, the later ones
//!   lose (`Held`), as they would have one after the other. Takes and releases go in key
//!   order, so that two batches lock rows in one order.
//! - The releases run in a transaction of their own, first: their answers are read from
//!   their rows, locked, before the `DELETE`, so `Released`, `Gone` and `Foreign` are as
//!   exact as alone. The takes follow in the same text query. Fenced takes run in a
//!   transaction that also gives their fences from the counter row (one `UPDATE` of it for
//!   every fenced take of the batch), so fences rise strictly as alone.
//! - A take whose caller stopped waiting before its batch went out is not sent; one whose
//!   caller went while its batch was out is given back once its answer is in. A release
//!   always goes, waited for or not.
//! - A batch that fails (a deadlock, a lost connection) took nothing (the releases'
//!   transaction, or the takes' `INSERT`, is rolled back whole; the server runs no
//!   statement after a failed one): its items are then sent alone, each caller getting its
//!   own answer or error. When the releases' transaction went through and the takes
//!   failed, only the takes go alone. A take found on a key held by leases is asked again
//!   alone (for its `Conflict`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tokio::sync::oneshot;

use super::setup;
use super::sql::{BatchGive, BatchTake};
use super::store::{CALL_LIMIT, Inner, MysqlStore, Op, Out, Owned};
use crate::error::BoxError;
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

/// Queues a call when enough calls are out (its answer to come), else counts a call out
/// (`None`: the caller sends it itself, holding a [`Slot`]).
fn enter(
    inner: &Inner,
    key: &str,
    token: &str,
    take: Option<(u64, bool)>,
) -> Option<oneshot::Receiver<Answer>> {
    let mut queue = lock(&inner.queue);
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

fn dropped(inner: &Inner, op: &str) -> BoxError {
    setup::failed(
        &inner.host,
        op,
        "the batch this call queued for was dropped",
    )
}

impl MysqlStore {
    /// A non-waiting single-key lock take ([`batches`]): at once, or in the next batch.
    pub(super) async fn take_batched(&self, req: &Request<'_>) -> Result<Attempt, BoxError> {
        let [key] = req.keys else {
            return self.acquire_alone(req).await;
        };
        match enter(&self.0, key, req.token, Some((req.ttl_ms, req.fencing))) {
            None => {
                let _slot = Slot(self.0.clone());
                self.acquire_alone(req).await
            }
            Some(answer) => match answer.await {
                Ok(Answer::Take(out)) => out,
                _ => Err(dropped(&self.0, "acquire")),
            },
        }
    }

    /// A single-key lock release: at once, or in the next batch.
    pub(super) async fn give_batched(&self, lease: Lease<'_>) -> Result<Release, BoxError> {
        let ([key], Kind::Lock) = (lease.keys, lease.kind) else {
            return self.release_alone(lease).await;
        };
        match enter(&self.0, key, lease.token, None) {
            None => {
                let _slot = Slot(self.0.clone());
                self.release_alone(lease).await
            }
            Some(answer) => match answer.await {
                Ok(Answer::Give(out)) => out,
                _ => Err(dropped(&self.0, "release")),
            },
        }
    }
}

/// What a batch's text query answered: each take's key's row (token, ms left), each
/// release's key's row before the `DELETE` (token, live), the last fence given, and how
/// many statements went through.
#[derive(Default)]
struct Rows {
    takes: HashMap<Vec<u8>, (Vec<u8>, i64)>,
    gives: HashMap<Vec<u8>, (Vec<u8>, bool)>,
    fence: Option<u64>,
    done: usize,
}

impl Rows {
    /// Sends `statements` as one text query and reads the result set of each (their rows
    /// tagged `t`, `r`, `f`). Each is collected in turn, since an error of a later
    /// statement (a deadlock) is only returned by the collect of its own result set.
    async fn read(
        &mut self,
        conn: &mut Conn,
        statements: Vec<String>,
    ) -> Result<(), mysql_async::Error> {
        let mut result = conn.query_iter(statements.join("; ")).await?;
        for _ in &statements {
            for row in result.collect::<Row>().await? {
                self.add(row);
            }
            self.done += 1;
        }
        result.drop_result().await
    }

    fn add(&mut self, row: Row) {
        type Tagged = (String, Vec<u8>, Vec<u8>, i64);
        match mysql_async::from_row_opt::<Tagged>(row) {
            Ok((tag, key, token, n)) if tag == "t" => {
                self.takes.insert(key, (token, n));
            }
            Ok((tag, key, token, n)) if tag == "r" => {
                self.gives.insert(key, (token, n > 0));
            }
            Ok(_) => {}
            Err(mysql_async::FromRowError(row)) => {
                if let Ok((_, fence)) = mysql_async::from_row_opt::<(String, u64)>(row) {
                    self.fence = Some(fence);
                }
            }
        }
    }
}

impl Inner {
    /// Sends a batch: the releases, and the takes whose callers still wait; answers each,
    /// and gives back what a caller who stopped waiting meanwhile took.
    async fn send(self: &Arc<Self>, mut batch: Vec<Item>) {
        batch.retain(|item| item.take.is_none() || !item.reply.is_closed());
        let answers = if batch.len() > 1 {
            match self.many(&batch).await {
                Ok(answers) => answers,
                // Rolled back whole, so took nothing: each item on its own.
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
            let _ = self.give_alone(key, token).await;
        }
    }

    /// A release on its own (a call of its own, retried as any other), announced.
    async fn give_alone(&self, key: String, token: String) -> Result<Release, BoxError> {
        let keys = vec![key];
        let out = self
            .bounded(&Op::Release(keys.clone(), token, Kind::Lock))
            .await;
        match out? {
            Out::Release(r) => {
                if r == Release::Released {
                    self.feed.released(&keys);
                }
                Ok(r)
            }
            _ => Err(setup::failed(&self.host, "release", "a mismatched answer")),
        }
    }

    /// Each item as the call it is alone, all at once.
    async fn each(&self, batch: &[Item]) -> Vec<Answer> {
        futures_util::future::join_all(batch.iter().map(|item| self.alone(item))).await
    }

    async fn alone(&self, item: &Item) -> Answer {
        let Some((ttl_ms, fencing)) = item.take else {
            return Answer::Give(self.give_alone(item.key.clone(), item.token.clone()).await);
        };
        let op = Op::Acquire(Owned {
            keys: vec![item.key.clone()],
            token: item.token.clone(),
            ttl_ms,
            fencing,
            kind: Kind::Lock,
            intent_ms: 0,
        });
        Answer::Take(match self.bounded(&op).await {
            Ok(Out::Attempt(a)) => Ok(a),
            Ok(_) => Err(setup::failed(&self.host, "acquire", "a mismatched answer")),
            Err(e) => Err(e),
        })
    }

    /// The answers of a batch of several items, one per item in order, from one text query
    /// (two for fenced takes), on one connection.
    async fn many(&self, batch: &[Item]) -> Result<Vec<Answer>, BoxError> {
        // The first take of each key, and each (key, token) released, in key order.
        let mut sent = HashSet::new();
        let mut takes: Vec<BatchTake<'_>> = batch
            .iter()
            .filter_map(|i| Some((i, i.take?)))
            .filter(|(i, _)| sent.insert(i.key.as_str()))
            .map(|(i, (ttl_ms, fencing))| BatchTake {
                key: &i.key,
                token: &i.token,
                ttl_ms,
                fencing,
            })
            .collect();
        takes.sort_by_key(|t| t.key);
        let mut released = HashSet::new();
        let mut gives: Vec<BatchGive<'_>> = batch
            .iter()
            .filter(|i| i.take.is_none() && released.insert((&i.key, &i.token)))
            .map(|i| BatchGive {
                key: &i.key,
                token: &i.token,
            })
            .collect();
        gives.sort_by_key(|g| g.key);

        let Ok(Ok(_permit)) = tokio::time::timeout(CALL_LIMIT, self.slots.acquire()).await else {
            return Err(setup::failed(&self.host, "batch", "no pooled connection"));
        };
        let work = async {
            let mut conn = match self.conn().await {
                Ok((conn, _)) => conn,
                Err(e) => return (Rows::default(), false, Err(e)),
            };
            let (rows, gives_done, outcome) = self.exchange(&mut conn, &takes, &gives).await;
            if outcome.is_ok() {
                self.give_back(conn);
            } else {
                // Whatever it began is undone before the pool has it again.
                let _ = conn.query_drop("ROLLBACK").await;
            }
            (rows, gives_done, outcome)
        };
        let Ok((rows, gives_done, outcome)) = tokio::time::timeout(CALL_LIMIT, work).await else {
            return Err(setup::failed(&self.host, "batch", "no answer in time"));
        };
        match outcome {
            Ok(()) => Ok(self.answers(batch, &takes, rows, false).await),
            // The releases went through, in a transaction of their own; the takes did
            // not (a deadlock of the `INSERT`): they go alone.
            Err(_) if gives_done => Ok(self.answers(batch, &takes, rows, true).await),
            Err(e) => Err(setup::failed(&self.host, "batch", &setup::cause(&e))),
        }
    }

    /// Sends the batch's statements (the releases', then the takes', in one text query)
    /// and reads what they answered, and whether the releases' transaction went through.
    async fn exchange(
        &self,
        conn: &mut Conn,
        takes: &[BatchTake<'_>],
        gives: &[BatchGive<'_>],
    ) -> (Rows, bool, Result<(), mysql_async::Error>) {
        let mut rows = Rows::default();
        let mut statements = self.sql.batch_gives(gives);
        let of_gives = statements.len();
        statements.extend(self.sql.batch_takes(takes));
        let outcome = self.exchange_on(conn, takes, &mut rows, statements).await;
        let gives_done = of_gives > 0 && rows.done >= of_gives;
        (rows, gives_done, outcome)
    }

    async fn exchange_on(
        &self,
        conn: &mut Conn,
        takes: &[BatchTake<'_>],
        rows: &mut Rows,
        statements: Vec<String>,
    ) -> Result<(), mysql_async::Error> {
        rows.read(conn, statements).await?;
        if !takes.iter().any(|t| t.fencing) {
            return Ok(());
        }
        // The fenced takes that took their key, in key order, each get the next fence.
        let won: Vec<&str> = takes
            .iter()
            .filter(|t| t.fencing && ours(&rows.takes, t.key, t.token))
            .map(|t| t.key)
            .collect();
        rows.read(conn, self.sql.batch_fence(&won)).await?;
        if !won.is_empty() && rows.fence.is_none() {
            // Never seen: without the counter's value no fence can be told. The takes
            // then go alone (each a fence of its own).
            return Err(mysql_async::Error::Other(
                "the batch's fence was not read back".into(),
            ));
        }
        Ok(())
    }

    /// Each item's answer from the rows its batch read; the takes' sent alone instead when
    /// `takes_alone` (their statements failed), and those of keys held by leases.
    async fn answers(
        &self,
        batch: &[Item],
        takes: &[BatchTake<'_>],
        rows: Rows,
        takes_alone: bool,
    ) -> Vec<Answer> {
        // The fences given, in key order, to the fenced takes that won.
        let won: Vec<&str> = takes
            .iter()
            .filter(|t| t.fencing && ours(&rows.takes, t.key, t.token))
            .map(|t| t.key)
            .collect();
        let first = rows
            .fence
            .unwrap_or(0)
            .saturating_sub(won.len() as u64)
            .saturating_add(1);
        let fences: HashMap<&str, u64> = won.iter().zip(first..).map(|(k, f)| (*k, f)).collect();
        let mut sent: HashSet<&str> = takes.iter().map(|t| t.key).collect();
        let mut released = HashSet::new();
        let mut freed = Vec::new();
        let mut answers: Vec<Option<Answer>> = Vec::with_capacity(batch.len());
        for item in batch {
            let key = item.key.as_str();
            let answer = match item.take {
                // A later take of a key this batch took for another: it loses.
                Some(_) if !sent.remove(key) => Answer::Take(Ok(Attempt::Held { remaining: None })),
                Some(_) if takes_alone => {
                    answers.push(None);
                    continue;
                }
                Some((_, fencing)) => match rows.takes.get(key.as_bytes()) {
                    Some((token, left)) if *left > 0 && token == item.token.as_bytes() => {
                        Answer::Take(Ok(Attempt::Acquired {
                            fence: if fencing {
                                fences.get(key).copied()
                            } else {
                                None
                            },
                        }))
                    }
                    // Held by leases: alone, for the kind they are held as.
                    Some((token, left)) if *left > 0 && token.is_empty() => {
                        answers.push(None);
                        continue;
                    }
                    Some((_, left)) => Answer::Take(Ok(Attempt::Held {
                        remaining: Some(std::time::Duration::from_millis(
                            u64::try_from(*left).unwrap_or(0),
                        )),
                    })),
                    None => Answer::Take(Ok(Attempt::Held { remaining: None })),
                },
                // A second release of the same lease in one batch: the first did it.
                None if !released.insert((key, item.token.as_str())) => {
                    Answer::Give(Ok(Release::Gone))
                }
                None => Answer::Give(Ok(match rows.gives.get(key.as_bytes()) {
                    Some((token, true)) if token == item.token.as_bytes() => {
                        freed.push(item.key.clone());
                        Release::Released
                    }
                    Some((token, true)) if token != item.token.as_bytes() => Release::Foreign,
                    _ => Release::Gone,
                })),
            };
            answers.push(Some(answer));
        }
        if !freed.is_empty() {
            self.feed.released(&freed);
        }
        let pending = batch
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.is_none())
            .map(|(item, _)| self.alone(item));
        let mut alone = futures_util::future::join_all(pending).await.into_iter();
        answers
            .into_iter()
            .map(|answer| match answer {
                Some(answer) => answer,
                None => alone
                    .next()
                    .unwrap_or_else(|| Answer::Take(Err(dropped(self, "acquire")))),
            })
            .collect()
    }
}

/// Whether the take of `key` by `token` holds its row now.
fn ours(rows: &HashMap<Vec<u8>, (Vec<u8>, i64)>, key: &str, token: &str) -> bool {
    matches!(rows.get(key.as_bytes()), Some((t, left)) if *left > 0 && t == token.as_bytes())
}

/// One call out. When it ends it takes what queued meanwhile and sends it as the next
/// batch, from a task of its own, so the caller whose call this was returns at once.
struct Slot(Arc<Inner>);

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
                let inner = self.0.clone();
                runtime.spawn(async move {
                    let slot = Slot(inner);
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
