//! Group commit on one server (issue 18): while [`MAX_OUT`] calls of a `Locker` are out,
//! the single-key takes and releases its other tasks make queue up, and go together as one
//! `batch.lua` call as soon as one of those returns, each caller getting its own answer (a
//! key of the wrong type fails its own item only). A call made while fewer are out goes
//! straight out as the command it has always been (`SET NX PX`, `release_one.lua`; a fenced
//! take as `batch.lua` with one item, which takes its fencing token in the same script):
//! no timer, no waiting for company, so a lone caller pays a lock of an uncontended mutex.
//!
//! Under load this sends one script call for many callers where each used to pay for a
//! command of its own in the client (its encoding, a channel send, a reply to parse), which
//! is where a multiplexed connection spends its time: on two cores, client and server
//! share them.
//!
//! Safety: a take whose caller stopped waiting before its batch went out is not sent (no
//! lock is taken for nobody); one whose caller went while its batch was out is given back
//! by the batch once its answer is in, since the engine's own release of the dropped try
//! may have run first (a batch runs in a task of its own, and the client re-sends a script
//! the server did not know). A release always goes, waited for or not. Items go out in the
//! order they queued, and a batch is one script, so it is never split. A batch that fails
//! fails every caller in it with the same error; each caller's engine then treats it as any
//! failed try (a try whose answer is lost is released by its token).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::{ErrorKind, RedisError, RedisResult, Value};
use tokio::sync::oneshot;

use super::conn::NodeConn;
use super::script::SCRIPTS;

/// How many calls of one `Locker` may be out at once before the next ones queue for a
/// batch: two keeps the connection busy while a batch's answers are handed out.
const MAX_OUT: usize = 2;

/// How long a queued call waits for its batch's answer: the call it waits behind, then
/// its own, each bounded by the connection's timeouts.
const QUEUED_LIMIT: Duration = Duration::from_secs(3);

/// One caller's take or release.
#[derive(Clone, Copy)]
pub(crate) enum Op<'a> {
    /// `SET key token NX PX ttl_ms`: 1 taken, 0 held; with `fencing`, the token of a
    /// take (from the key's fence counter and the server clock, in the same script), 0
    /// held.
    Take {
        key: &'a str,
        token: &'a str,
        ttl_ms: u64,
        fencing: bool,
    },
    /// `release_one.lua`: 1 released (and announced), 0 another token's, -1 no lock.
    Give { key: &'a str, token: &'a str },
}

/// A queued call: what to send, and where its answer goes.
struct Item {
    key: String,
    token: String,
    /// `Some((ttl_ms, fencing))` for a take.
    take: Option<(u64, bool)>,
    reply: oneshot::Sender<RedisResult<i64>>,
}

#[derive(Default)]
struct Queue {
    items: Vec<Item>,
    /// Calls out now (straight or batched).
    out: usize,
    /// Batch calls sent so far (for tests and the benchmark's report).
    batches: AtomicU64,
}

/// The group commit of one server's store.
pub(crate) struct Batch<C> {
    queue: Arc<Mutex<Queue>>,
    /// `PUBLISH`, or empty where releases are not announced.
    publish: &'static str,
    conn: PhantomData<fn() -> C>,
}

impl<C: NodeConn + Clone + Sync + 'static> Batch<C> {
    pub(crate) fn new(publish: &'static str) -> Self {
        Self {
            queue: Arc::default(),
            publish,
            conn: PhantomData,
        }
    }

    /// How many batch calls it has sent.
    #[cfg(test)]
    pub(crate) fn batches(&self) -> u64 {
        lock(&self.queue).batches.load(Ordering::Relaxed)
    }

    /// Runs `op` on `conn`: at once when few calls are out, else in the next batch.
    pub(crate) async fn run(&self, conn: C, op: Op<'_>) -> RedisResult<i64> {
        let queued = {
            let mut queue = lock(&self.queue);
            if queue.out < MAX_OUT && queue.items.is_empty() {
                queue.out += 1;
                None
            } else {
                let (reply, answer) = oneshot::channel();
                queue.items.push(item(op, reply));
                Some(answer)
            }
        };
        let Some(answer) = queued else {
            // Handed on when this call ends, however it ends (a dropped caller too).
            let mut slot = Slot {
                queue: &self.queue,
                conn: Some(conn),
                publish: self.publish,
            };
            return match slot.conn.as_mut() {
                Some(conn) => one(conn, op, self.publish).await,
                None => Err(gone()),
            };
        };
        match tokio::time::timeout(QUEUED_LIMIT, answer).await {
            Ok(Ok(out)) => out,
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err(RedisError::from((
                ErrorKind::Io,
                "no answer in time",
                format!("the batch this call queued for did not return within {QUEUED_LIMIT:?}"),
            ))),
        }
    }
}

fn gone() -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "the batch this call queued for was dropped",
        "the runtime is shutting down".to_owned(),
    ))
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // The queue is never left half-changed: a poisoned lock still holds a whole one.
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Item {
    fn op(&self) -> Op<'_> {
        match self.take {
            Some((ttl_ms, fencing)) => Op::Take {
                key: &self.key,
                token: &self.token,
                ttl_ms,
                fencing,
            },
            None => Op::Give {
                key: &self.key,
                token: &self.token,
            },
        }
    }
}

fn item(op: Op<'_>, reply: oneshot::Sender<RedisResult<i64>>) -> Item {
    let (key, token, take) = match op {
        Op::Take {
            key,
            token,
            ttl_ms,
            fencing,
        } => (key, token, Some((ttl_ms, fencing))),
        Op::Give { key, token } => (key, token, None),
    };
    Item {
        key: key.to_owned(),
        token: token.to_owned(),
        take,
        reply,
    }
}

/// One call out. When it ends it takes what queued meanwhile and sends it as the next
/// batch, from a task of its own, so the caller whose call this was returns at once.
struct Slot<'a, C: NodeConn + Clone + Sync + 'static> {
    queue: &'a Arc<Mutex<Queue>>,
    conn: Option<C>,
    publish: &'static str,
}

impl<C: NodeConn + Clone + Sync + 'static> Drop for Slot<'_, C> {
    fn drop(&mut self) {
        let batch = {
            let mut queue = lock(self.queue);
            if queue.items.is_empty() {
                queue.out -= 1;
                return;
            }
            std::mem::take(&mut queue.items)
        };
        // The slot passes to the task that sends the batch.
        match (tokio::runtime::Handle::try_current(), self.conn.take()) {
            (Ok(runtime), Some(conn)) => {
                let (queue, publish) = (self.queue.clone(), self.publish);
                runtime.spawn(async move {
                    let mut slot = Slot {
                        queue: &queue,
                        conn: Some(conn),
                        publish,
                    };
                    if let Some(conn) = slot.conn.as_mut()
                        && send(conn, batch, publish).await
                    {
                        lock(&queue).batches.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(slot);
                });
            }
            _ => {
                // No runtime to send it on: its callers hear that their batch was dropped.
                lock(self.queue).out -= 1;
                drop(batch);
            }
        }
    }
}

/// One caller's command, as it has always been sent.
async fn one<C: NodeConn>(conn: &mut C, op: Op<'_>, publish: &str) -> RedisResult<i64> {
    match op {
        Op::Take {
            key,
            token,
            ttl_ms,
            fencing: true,
        } => {
            // SET NX, INCR and TIME in one script: the batch's, with one item.
            let mut call = SCRIPTS.batch.prepare_invoke();
            call.arg(publish)
                .key(key)
                .arg(token)
                .arg(spec(Some((ttl_ms, true))));
            let mut answers = call.invoke_async::<Vec<Value>>(conn).await?;
            match (answers.pop(), answers.is_empty()) {
                (Some(answer), true) => answer_of(answer),
                _ => Err(mismatch(1, answers.len() + 1)),
            }
        }
        Op::Take {
            key, token, ttl_ms, ..
        } => {
            let set: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(conn)
                .await?;
            Ok(i64::from(set.is_some()))
        }
        Op::Give { key, token } => {
            SCRIPTS
                .release_one
                .key(key)
                .arg(token)
                .arg(publish)
                .invoke_async(conn)
                .await
        }
    }
}

/// Sends the releases, and the takes whose callers still wait (one alone as its own
/// command), answers each, and gives back what a caller who stopped waiting meanwhile may
/// have taken; whether it sent a batch call. A release goes whether or not its caller
/// still waits: a dropped release is still wanted.
async fn send<C: NodeConn>(conn: &mut C, mut batch: Vec<Item>, publish: &str) -> bool {
    batch.retain(|item| item.take.is_none() || !item.reply.is_closed());
    let batched = batch.len() > 1;
    let answers = match batch.as_slice() {
        [] => return false,
        [item] => vec![one(conn, item.op(), publish).await],
        _ => many(conn, &batch, publish).await,
    };
    let mut orphans = Vec::new();
    for (item, answer) in batch.into_iter().zip(answers) {
        let taken = item.take.is_some() && !matches!(answer, Ok(0));
        let Item {
            key, token, reply, ..
        } = item;
        if reply.send(answer).is_err() && taken {
            // Its caller went after the batch was sent (and the client may have sent the
            // script twice, after a `NOSCRIPT`): the engine's own release of the dropped
            // try may have run before this take landed, so the lock is given back here,
            // after it. Releases compare tokens: one that finds nothing is harmless.
            orphans.push((key, token));
        }
    }
    for (key, token) in orphans {
        let give = Op::Give {
            key: &key,
            token: &token,
        };
        let _ = one(conn, give, publish).await;
    }
    batched
}

/// The answers of a batch of several items, one per item in order (the same error for
/// each when the call fails).
async fn many<C: NodeConn>(conn: &mut C, batch: &[Item], publish: &str) -> Vec<RedisResult<i64>> {
    let mut call = SCRIPTS.batch.prepare_invoke();
    call.arg(publish);
    for item in batch {
        call.key(&item.key).arg(&item.token).arg(spec(item.take));
    }
    let failed = |e: RedisError| batch.iter().map(|_| Err(e.clone())).collect();
    match call.invoke_async::<Vec<Value>>(conn).await {
        Ok(answers) if answers.len() == batch.len() => answers.into_iter().map(answer_of).collect(),
        Ok(answers) => failed(mismatch(batch.len(), answers.len())),
        Err(e) => failed(e),
    }
}

/// What `batch.lua` reads of an item: its ttl for a take, `f` and the ttl for a fenced
/// one, nothing for a release.
fn spec(take: Option<(u64, bool)>) -> String {
    match take {
        Some((ttl_ms, false)) => ttl_ms.to_string(),
        Some((ttl_ms, true)) => format!("f{ttl_ms}"),
        None => String::new(),
    }
}

fn mismatch(calls: usize, answers: usize) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "a batch's answer did not match it",
        format!("{answers} answers for {calls} calls"),
    ))
}

/// One item's answer in a batch's reply: a number, or its own command's error (as text,
/// since an error inside an array would fail the whole reply).
fn answer_of(answer: Value) -> RedisResult<i64> {
    match answer {
        Value::Int(n) => Ok(n),
        Value::BulkString(message) => Err(RedisError::from((
            ErrorKind::Extension,
            "the server refused the command",
            String::from_utf8_lossy(&message).into_owned(),
        ))),
        other => Err(RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "a batch answer of the wrong kind",
            format!("{other:?}"),
        ))),
    }
}

#[cfg(test)]
use locked_test_support as support;

#[cfg(test)]
mod tests {
    use super::*;
    use redis::aio::ConnectionManager;

    async fn setup() -> (
        support::RedisServer,
        ConnectionManager,
        Arc<Batch<ConnectionManager>>,
    ) {
        let server = support::RedisServer::start();
        let client = redis::Client::open(server.url()).unwrap();
        // Answers may take as long as the tests' write pauses.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .unwrap();
        (server, conn, Arc::new(Batch::new("PUBLISH")))
    }

    /// Many callers at once, on their own keys and on one shared key: each gets its own
    /// answer, one of the shared key's takers wins, and the calls did go in batches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_get_their_own_answers_in_batches() {
        let (_server, conn, batch) = setup().await;
        let mut tasks = Vec::new();
        for i in 0..64 {
            let (conn, batch) = (conn.clone(), batch.clone());
            tasks.push(tokio::spawn(async move {
                let (own, token) = (format!("b:own:{i}"), format!("t{i}"));
                let take = Op::Take {
                    key: &own,
                    token: &token,
                    ttl_ms: 30_000,
                    fencing: false,
                };
                let took = batch.run(conn.clone(), take).await.unwrap();
                let shared = Op::Take {
                    key: "b:shared",
                    token: &token,
                    ttl_ms: 30_000,
                    fencing: false,
                };
                let won = batch.run(conn.clone(), shared).await.unwrap();
                let gave = batch
                    .run(
                        conn.clone(),
                        Op::Give {
                            key: &own,
                            token: &token,
                        },
                    )
                    .await;
                let again = batch
                    .run(
                        conn,
                        Op::Give {
                            key: &own,
                            token: &token,
                        },
                    )
                    .await;
                (took, won, gave.unwrap(), again.unwrap())
            }));
        }
        let mut winners = 0;
        for task in tasks {
            let (took, won, gave, again) = task.await.unwrap();
            assert_eq!((took, gave, again), (1, 1, -1));
            winners += won;
        }
        assert_eq!(winners, 1, "one taker of the shared key wins");
        assert!(
            batch.batches() > 0,
            "64 callers at once went out one by one"
        );
    }

    /// Fenced takes, batched and alone, from tasks that take turns on one key: each holder's
    /// token is greater than the one before, starts from the server clock, and the
    /// counter is the key's `:fence` companion.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fenced_takes_in_batches_hand_out_rising_tokens() {
        let (server, conn, batch) = setup().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (conn, batch, seen) = (conn.clone(), batch.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let token = format!("f{i}");
                let mut held = 0;
                while held < 5 {
                    let take = Op::Take {
                        key: "b:fenced",
                        token: &token,
                        ttl_ms: 30_000,
                        fencing: true,
                    };
                    let fence = batch.run(conn.clone(), take).await.unwrap();
                    if fence == 0 {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    // Inside: the order of this list is the order of the holders.
                    seen.lock().unwrap().push(fence);
                    held += 1;
                    let give = Op::Give {
                        key: "b:fenced",
                        token: &token,
                    };
                    assert_eq!(batch.run(conn.clone(), give).await.unwrap(), 1);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 80);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(
            seen[0] >= 1_000_000_000_000_000,
            "not from the clock: {}",
            seen[0]
        );
        let counter: Option<i64> = redis::cmd("GET")
            .arg(super::super::naming::fence_key("b:fenced"))
            .query(&mut server.client())
            .unwrap();
        assert!(
            counter.is_some(),
            "the counter is not at the key's fence companion"
        );
    }

    /// One batch that takes, gives back and takes one key again, fenced, within the
    /// clock's microsecond or not: each take's token is greater than the one before.
    #[tokio::test]
    async fn one_batch_taking_a_key_again_hands_out_a_greater_token() {
        let (_server, mut conn, _batch) = setup().await;
        let item = |token: &str, take: Option<(u64, bool)>| Item {
            key: "b:again".to_owned(),
            token: token.to_owned(),
            take,
            reply: oneshot::channel().0,
        };
        let mut items = Vec::new();
        for round in 0..4 {
            let token = format!("t{round}");
            items.push(item(&token, Some((30_000, true))));
            items.push(item(&token, None));
        }
        let answers: Vec<i64> = many(&mut conn, &items, "PUBLISH")
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let fences: Vec<i64> = answers.iter().step_by(2).copied().collect();
        assert!(fences.windows(2).all(|w| w[0] < w[1]), "{answers:?}");
        assert!(
            answers.iter().skip(1).step_by(2).all(|&gave| gave == 1),
            "{answers:?}"
        );
        // The next batch goes on above the last token.
        let next = many(&mut conn, &items[..1], "PUBLISH").await;
        assert!(
            next[0].as_ref().unwrap() > &fences[3],
            "{next:?} after {fences:?}"
        );
    }

    /// A write pause holds the first calls out; the calls made meanwhile queue. One whose
    /// caller gives up is not sent; the others are, each with its own answer, and a key of
    /// another type fails only its own item.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_call_given_up_is_not_sent_and_a_bad_item_fails_alone() {
        let (server, mut conn, batch) = setup().await;
        let _: () = redis::cmd("ZADD")
            .arg("b:zset")
            .arg(1)
            .arg("m")
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(2000)
            .arg("WRITE")
            .query_async(&mut conn)
            .await
            .unwrap();
        let first: Vec<_> = (0..MAX_OUT)
            .map(|i| {
                let (conn, batch) = (conn.clone(), batch.clone());
                tokio::spawn(async move {
                    let key = format!("b:first:{i}");
                    batch
                        .run(
                            conn,
                            Op::Take {
                                key: &key,
                                token: "t",
                                ttl_ms: 30_000,
                                fencing: false,
                            },
                        )
                        .await
                })
            })
            .collect();
        // Wait until both are out (paused at the server), then queue three more.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while lock(&batch.queue).out < MAX_OUT {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the first calls never went out"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let queued = |key: &'static str, give: bool| {
            let (conn, batch) = (conn.clone(), batch.clone());
            tokio::spawn(async move {
                let op = if give {
                    Op::Give { key, token: "t" }
                } else {
                    Op::Take {
                        key,
                        token: "t",
                        ttl_ms: 30_000,
                        fencing: false,
                    }
                };
                batch.run(conn, op).await
            })
        };
        let given_up = queued("b:given-up", false);
        let kept = queued("b:kept", false);
        let wrong = queued("b:zset", true);
        while lock(&batch.queue).items.len() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the calls never queued"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        given_up.abort();
        for task in first {
            assert_eq!(task.await.unwrap().unwrap(), 1);
        }
        assert_eq!(kept.await.unwrap().unwrap(), 1);
        let e = wrong.await.unwrap().unwrap_err();
        assert!(e.to_string().contains("WRONGTYPE"), "{e}");
        let mut check = server.client();
        let left: Option<String> = redis::cmd("GET")
            .arg("b:given-up")
            .query(&mut check)
            .unwrap();
        assert_eq!(left, None, "the abandoned take was sent");
        let kept: Option<String> = redis::cmd("GET").arg("b:kept").query(&mut check).unwrap();
        assert_eq!(kept.as_deref(), Some("t"));
        assert_eq!(batch.batches(), 1, "the queued calls went as one batch");
        assert_eq!(lock(&batch.queue).out, 0, "a slot was not given back");
    }
}
