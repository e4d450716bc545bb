//! `RedlockStore`: one lock over N independent Redis masters, held while a majority
//! (N/2 + 1) holds it. Each master stores the lock in the single-server format, through the
//! node layer; this folder only adds the quorum around it.
//!
//! ## What Redlock promises, and what not
//! - A lock is granted when a quorum of masters set it within its validity: `ttl` minus the
//!   time the requests took (counted from when they were sent) minus a clock-drift
//!   allowance of 1% of `ttl` + 2 ms. It keeps working with a minority of masters down.
//! - It assumes bounded process pauses, bounded network delay and clocks that run at about
//!   the same rate. A holder paused past its validity (a GC pause, a stalled VM), a master
//!   whose clock jumps forward, or a master restarted without persistence (it forgets the
//!   locks it held, so another majority can form) can let two holders in.
//! - A semaphore of P permits needs more than a majority: each master admits at most P
//!   leases, and P + 1 holders that each won a bare majority can share the masters out
//!   between them (3 masters, 2 permits: A+B, B+C, A+C). A permit is granted by
//!   `N*P/(P+1) + 1` masters, more than P + 1 holders can find among N masters admitting
//!   P each. For one permit (and for read/write locks, whose conflicts are pairwise) that
//!   is the usual majority; with more permits it is every master or nearly, so a
//!   semaphore on Redlock tolerates fewer failed masters than a lock does.
//! - Fencing tokens cannot be made strictly increasing across independent masters, so
//!   Redlock offers none: asking for one is a `Config` error. Where a stale holder must be
//!   made harmless, use single Redis or a Cluster with fencing.
//!
//! ## Layout
//! - Here: the store type, its bound on each master's answer, and opening it (the URLs
//!   checked, no I/O).
//! - `fanout`: one request sent to every master at once, answers gathered until enough,
//!   the rest left to finish in the background.
//! - `landing`: acquisitions still landing on the slower masters, which a release or undo
//!   of the same token waits for; the undo of a failed try.
//! - `quorum`: how many masters a lease needs, counting their answers, and the error
//!   when too few answered ([`NoQuorum`](quorum::NoQuorum)).
//! - `store`: the `Store` impl: each operation on every master, decided by quorum.

mod fanout;
mod landing;
mod quorum;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::batch::Batch;
use super::feed::Feed;
use super::protocol::Node;
use super::server::{PubSub, Server};
use super::tls::TlsRoots;
use crate::error::Invalid;

/// How long one master may take to answer one request: short, so that a hung master costs
/// each call little, and far below any sensible ttl.
const MASTER_LIMIT: Duration = Duration::from_millis(250);

/// The Redlock store over N masters.
///
/// ## Behavior
/// - Acquire sends `SET NX PX` to every master at once, each bounded by
///   [`MASTER_LIMIT`], and goes on as soon as a quorum took it within its validity
///   (`ttl - drift` from the send) or can no longer take it; the other requests finish in
///   the background, so the lock still lands on every master that answers. A failed
///   attempt is released on every master before it returns, and the engine retries with
///   jitter until `timeout`.
/// - Release, extend and `is_locked` act on every master and count a quorum.
/// - Every master announces its releases; a waiter listens on every master and wakes on
///   the first announcement.
/// - Fewer than a quorum of masters answering is a `Backend` error that says how many did.
pub(crate) struct RedlockStore {
    masters: Vec<Arc<Server>>,
    /// The group commit of each master (in the order of `masters`).
    batches: Vec<Arc<Batch<ConnectionManager>>>,
    feeds: Vec<Feed<PubSub>>,
    /// Acquisitions still landing on the slower masters, by token: resolves once landed.
    late: Arc<Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>>,
}

impl RedlockStore {
    /// Checks the URLs (no I/O): at least one, each a Redis URL, no duplicates, an odd count.
    pub(crate) fn open(urls: &[String], roots: &TlsRoots) -> Result<Self, Invalid> {
        if urls.is_empty() {
            return Err(Invalid::new(
                "the list of masters is empty",
                "give an odd number of independent masters, e.g. 3",
            ));
        }
        let mut masters = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let server = Server::open_fail_fast(url, roots, MASTER_LIMIT).map_err(|e| {
                Invalid::new(
                    format!(
                        "`{}` is not a Redis URL ({e})",
                        crate::url::RedactedUrl::new(url)
                    ),
                    "write `redis://host:6379`",
                )
            })?;
            if urls[..i].contains(url) {
                return Err(Invalid::new(
                    format!("`{}` is named twice", server.url()),
                    "name each master once: each must be a separate server",
                ));
            }
            masters.push(Arc::new(server));
        }
        if urls.len().is_multiple_of(2) {
            let n = urls.len();
            return Err(Invalid::new(
                format!(
                    "{n} masters are named, an even number: a quorum is a majority, so {n} \
                     tolerate no more failures than {} would, at more cost",
                    n - 1
                ),
                format!("use an odd number of masters, e.g. {} or {}", n - 1, n + 1),
            ));
        }
        Ok(Self {
            feeds: masters.iter().map(|m| Feed::new(m.pubsub())).collect(),
            batches: masters
                .iter()
                .map(|_| Arc::new(Batch::new(Node::SINGLE.publish)))
                .collect(),
            masters,
            late: Arc::default(),
        })
    }

    fn hosts(&self) -> String {
        let urls: Vec<String> = self.masters.iter().map(|m| m.url().to_string()).collect();
        urls.join(",")
    }
}
