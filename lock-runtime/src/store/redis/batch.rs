//! Group commit for one server's connection: while a command is out, the commands that
//! other tasks of the same `Locker` send meanwhile queue up, and then go together as one
//! pipeline, each with its own answer (a server error stays its own command's). A lone
//! command goes straight out: there is no timer and no waiting for company, the batch is
//! whatever queued while the connection was busy.
//!
//! Order is kept: a command sent after another (a cancelled acquisition's background
//! release after its `SET`) never overtakes it, because nothing goes straight out while
//! anything is queued or out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::oneshot;

use super::conn::NodeConn;
use super::replicas::wait_cmd;
use crate::store::Replicas;

/// The most commands one batch carries; the rest go in the next.
const MAX_BATCH: usize = 256;

/// The commands waiting for one connection, shared by every clone of its [`Batched`].
#[derive(Default)]
pub(crate) struct Queue {
    /// Commands queued or out, alone or in a batch.
    busy: AtomicUsize,
    state: Mutex<Waiting>,
}

type Answer = oneshot::Sender<Result<Value, RedisError>>;

/// A queued request: a command, or a pipeline of the cold paths, which goes alone.
enum Queued {
    One(Cmd, Answer),
    Pipe {
        pipe: Pipeline,
        offset: usize,
        count: usize,
        answer: oneshot::Sender<Result<Vec<Value>, RedisError>>,
    },
}

#[derive(Default)]
struct Waiting {
    commands: std::collections::VecDeque<Queued>,
    /// A task is sending batches; it takes what queues until the queue is empty.
    draining: bool,
}

/// A server's connection with group commit: what the node protocol drives on one server.
#[derive(Clone)]
pub(crate) struct Batched {
    conn: ConnectionManager,
    queue: Arc<Queue>,
}

impl Batched {
    pub(crate) fn new(conn: ConnectionManager, queue: Arc<Queue>) -> Self {
        Self { conn, queue }
    }

    async fn send(&mut self, cmd: &Cmd) -> Result<Value, RedisError> {
        let busy = Busy::count(&self.queue, 1);
        if busy.was_idle {
            // Nothing queued or out: no one to group with, nothing to wait for.
            return self.conn.req_packed_command(cmd).await;
        }
        let (answer, answered) = oneshot::channel();
        if !self.enqueue(busy, Queued::One(cmd.clone(), answer)) {
            return self.conn.req_packed_command(cmd).await;
        }
        match answered.await {
            Ok(answer) => answer,
            // The draining task was dropped (its runtime shut down): send it alone.
            Err(_) => {
                let _busy = Busy::count(&self.queue, 1);
                self.conn.req_packed_command(cmd).await
            }
        }
    }

    async fn send_pipeline(
        &mut self,
        pipe: &Pipeline,
        offset: usize,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        let busy = Busy::count(&self.queue, 1);
        if busy.was_idle {
            return self.conn.req_packed_commands(pipe, offset, count).await;
        }
        // Behind what is queued, so that it overtakes nothing and nothing overtakes it.
        let (answer, answered) = oneshot::channel();
        let queued = Queued::Pipe {
            pipe: pipe.clone(),
            offset,
            count,
            answer,
        };
        if !self.enqueue(busy, queued) {
            return self.conn.req_packed_commands(pipe, offset, count).await;
        }
        match answered.await {
            Ok(answer) => answer,
            Err(_) => {
                let _busy = Busy::count(&self.queue, 1);
                self.conn.req_packed_commands(pipe, offset, count).await
            }
        }
    }

    /// Queues a request counted by `busy`, starting a draining task when none runs;
    /// false if the queue cannot be used (a poisoned lock), to send it alone.
    fn enqueue(&self, busy: Busy<'_>, queued: Queued) -> bool {
        let start_draining = {
            let Ok(mut waiting) = self.queue.state.lock() else {
                return false;
            };
            waiting.commands.push_back(queued);
            !std::mem::replace(&mut waiting.draining, true)
        };
        // Counted until its batch is answered (the batch uncounts it).
        busy.hand_over();
        if start_draining {
            tokio::spawn(drain(self.conn.clone(), self.queue.clone()));
        }
        true
    }
}

/// Sends what has queued, one batch at a time, the next made of what queued while the
/// last was out, until nothing is left.
async fn drain(mut conn: ConnectionManager, queue: Arc<Queue>) {
    // If this task is dropped mid-batch, the next command to queue starts another.
    let mut draining = Draining {
        queue: &queue,
        armed: true,
    };
    loop {
        let batch = {
            let Ok(mut waiting) = queue.state.lock() else {
                return;
            };
            if waiting.commands.is_empty() {
                waiting.draining = false;
                draining.armed = false;
                return;
            }
            if let Some(Queued::Pipe { .. }) = waiting.commands.front() {
                waiting.commands.pop_front().into_iter().collect::<Vec<_>>()
            } else {
                // The commands up to the next pipeline.
                let take = waiting
                    .commands
                    .iter()
                    .take(MAX_BATCH)
                    .take_while(|q| matches!(q, Queued::One(..)))
                    .count();
                waiting.commands.drain(..take).collect::<Vec<_>>()
            }
        };
        // Counted since each request queued: uncounted once answered, or dropped.
        let _busy = Busy {
            queue: &queue,
            n: batch.len(),
            was_idle: false,
        };
        send_batch(&mut conn, batch).await;
    }
}

/// Sends one batch (commands, or one pipeline) and hands each caller its own answer.
async fn send_batch(conn: &mut ConnectionManager, mut batch: Vec<Queued>) {
    if batch.len() == 1 {
        match batch.pop() {
            Some(Queued::One(cmd, reply)) => {
                let _ = reply.send(conn.req_packed_command(&cmd).await);
            }
            Some(Queued::Pipe {
                pipe,
                offset,
                count,
                answer,
            }) => {
                let _ = answer.send(conn.req_packed_commands(&pipe, offset, count).await);
            }
            None => {}
        }
        return;
    }
    let mut pipe = Pipeline::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for queued in batch {
        // A batch of several holds commands only (a pipeline goes alone).
        if let Queued::One(cmd, reply) = queued {
            pipe.add_command(cmd);
            replies.push(reply);
        }
    }
    // Not atomic: every command's reply comes back, a server error as its own value.
    match conn.req_packed_commands(&pipe, 0, replies.len()).await {
        Ok(values) if values.len() == replies.len() => {
            for (value, reply) in values.into_iter().zip(replies) {
                let _ = reply.send(Ok(value));
            }
        }
        Ok(values) => {
            let e = RedisError::from((
                redis::ErrorKind::Client,
                "a batch was answered with the wrong number of replies",
                format!("{} for {} commands", values.len(), replies.len()),
            ));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Commands counted as queued or out, for as long as this lives.
struct Busy<'a> {
    queue: &'a Queue,
    n: usize,
    /// Nothing was queued or out when these were counted.
    was_idle: bool,
}

impl<'a> Busy<'a> {
    fn count(queue: &'a Queue, n: usize) -> Self {
        let before = queue.busy.fetch_add(n, Ordering::AcqRel);
        Self {
            queue,
            n,
            was_idle: before == 0,
        }
    }

    /// The count now belongs to the queue (the batch that sends the command uncounts it).
    fn hand_over(mut self) {
        self.n = 0;
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.queue.busy.fetch_sub(self.n, Ordering::AcqRel);
        }
    }
}

/// Marks the queue as not drained if the draining task is dropped before it is done.
struct Draining<'a> {
    queue: &'a Queue,
    armed: bool,
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Ok(mut waiting) = self.queue.state.lock()
        {
            waiting.draining = false;
        }
    }
}

impl ConnectionLike for Batched {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.send(cmd).boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.send_pipeline(pipeline, offset, count).boxed()
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

impl NodeConn for Batched {
    async fn wait_replicas(&mut self, _key: &str, r: Replicas) -> redis::RedisResult<i64> {
        wait_cmd(r).query_async(self).await
    }
}
