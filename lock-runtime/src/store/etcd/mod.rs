//! `EtcdStore`: locks on etcd leases, through etcd-client (tested on etcd 3.4, a cluster of
//! three members).
//!
//! ## The model
//! - A hold is an etcd lease of its ttl, granted by the acquisition. etcd counts leases in
//!   whole seconds and raises a ttl below its minimum (about 2 s with the default election
//!   timeout) to that minimum, so a ttl is rounded **up** to whole seconds: a `300ms` ttl
//!   holds the key for at least 1 s, and a crashed holder's key lingers that long (or the
//!   server's minimum). [`Store::validity`](super::Store::validity) reports the rounded
//!   figure, so the renewal watchdog renews a third of the way into the real lease.
//! - A lock is the key itself, its value the owner's token, attached to the lease. Taking it
//!   is one transaction that puts every key if none exists yet (`create_revision == 0`),
//!   with the lease; several keys are taken in the same transaction, all or nothing.
//! - The fencing token is the holder key's create revision: etcd's revision counter rises
//!   strictly with every write to the cluster, across holders, leader changes and restarts,
//!   so a later holder's fence is always greater, with no extra round trip.
//! - Renewal is one lease keep-alive; a ttl longer than the lease's moves the keys to a new
//!   lease (same create revision, so the fence stays). Release deletes the keys (compared
//!   with the token) and revokes the lease; a crashed holder's keys vanish when its lease
//!   lapses. `force_release` deletes the keys and revokes their leases, so the old holder's
//!   next renewal fails.
//! - Semaphores and read/write locks: each lease is a key `K\0m/<tag>:<token>` on its own
//!   etcd lease. A lease is taken by a transaction that compares the member range's
//!   revisions with the read it decided on, so two takers can never both fill the last
//!   permit.
//! - Waiting is first come, first served across processes, in etcd itself, as etcd's own
//!   `concurrency.Mutex` and Curator's recipes queue. A waiting call at the head of its
//!   `Locker`'s queue that is refused puts a place `K\0q/<tag>:<token>` in the key's
//!   queue, in the refusing transaction, on the lease its hold will go on; the place's
//!   create revision is its turn. A call with a place takes the key when no place is older
//!   than its own (the transaction compares it, and deletes the place); one without, only
//!   when nobody waits, so a new caller never overtakes a waiter. Semaphores: the oldest
//!   places get the free permits. Read/write locks: a reader holds when no writer holds or
//!   waits ahead of it, a writer when no one holds and it is first. Several keys: a place
//!   in every queue, put in one transaction, so the order is one for all the keys and no
//!   two calls wait on each other. A call that gives up (a timeout, a cancelled task)
//!   withdraws its places at once; a crashed one's lapse with its lease, which lasts the
//!   ttl, or three `retry_interval`s when longer (at most a minute), renewed by the call's
//!   tries. A force release leaves the queue alone.
//! - Wake-ups: every watched key has an etcd watch on the key and its companions; a delete
//!   (a release, an expiry, a force release, a place withdrawn or taken) wakes this
//!   `Locker`'s waiting head at once, in any process, and the head whose turn it is takes
//!   the key. One watch per key per `Locker`, so a release wakes one head per process,
//!   not every waiter; waiters of one `Locker` go through its own FIFO queue, whose head
//!   alone holds a place.
//!
//! ## Behavior
//! - Endpoints are `http://host:port`, comma-separated (`LOCK_ETCD_ENDPOINTS`); a bad one
//!   is a `Config` error naming it. `http://user:password@host:port` authenticates as that
//!   user; the password never appears in errors, logs or `Debug`.
//! - Connecting is bounded by 2 s and every request by 3 s, and requests need a leader: a
//!   cluster that is unreachable or has lost its quorum gives a `Backend` error naming the
//!   endpoints, in bounded time, and a holder that cannot renew is stopped (`Lost`) before
//!   its lease lapses.
//! - The etcd keys are the lock keys as they are (prefix included): `etcdctl get lock:job`
//!   shows the holder's token.
//!
//! ## Without the `etcd` feature
//! Only [`ENTRY`] is compiled: the registry still knows the store, and naming it says
//! which feature to enable.

#[cfg(feature = "etcd")]
mod conn;
#[cfg(feature = "etcd")]
mod endpoints;
#[cfg(feature = "etcd")]
mod feed;
#[cfg(feature = "etcd")]
mod layout;
#[cfg(feature = "etcd")]
mod leases;
#[cfg(feature = "etcd")]
mod ops;
#[cfg(feature = "etcd")]
mod store;

#[cfg(feature = "etcd")]
pub(crate) use store::EtcdStore;

use super::registry::{Entry, Implied};

/// The variable with the etcd endpoints, comma-separated.
pub(crate) const LOCK_ETCD_ENDPOINTS: &str = "LOCK_ETCD_ENDPOINTS";

/// The registry's entry: `LOCK_STORE=etcd` (never implied), its endpoints from
/// `LOCK_ETCD_ENDPOINTS`.
pub(crate) const ENTRY: Entry = Entry {
    name: "etcd",
    help: "etcd, locks on leases, e.g. `http://127.0.0.1:2379,http://127.0.0.1:22379`",
    schemes: &["http://"],
    url_vars: &[LOCK_ETCD_ENDPOINTS],
    other_vars: &[],
    url_example: "e.g. `http://127.0.0.1:2379,http://127.0.0.1:22379,http://127.0.0.1:32379`",
    feature: Some("etcd"),
    implied: Implied::Never,
    #[cfg(feature = "etcd")]
    open_from_env: Some(from_env),
    #[cfg(not(feature = "etcd"))]
    open_from_env: None,
};

/// The endpoints from `LOCK_ETCD_ENDPOINTS`.
#[cfg(feature = "etcd")]
fn from_env(
    _settings: &super::Settings,
    get: super::registry::Lookup<'_>,
) -> Result<super::AnyStore, crate::error::LockError> {
    let (var, endpoints) = ENTRY.require_url(get)?;
    let endpoints: Vec<&str> = endpoints.split(',').collect();
    EtcdStore::open(&endpoints)
        .map(Into::into)
        .map_err(super::registry::from_var(var))
}

/// etcd at `endpoints` (`Locker::etcd`). The endpoints are checked now; the cluster is
/// reached on first use.
#[cfg(feature = "etcd")]
pub(crate) fn open<S: AsRef<str>>(endpoints: &[S]) -> Result<EtcdStore, crate::error::LockError> {
    let endpoints: Vec<&str> = endpoints.iter().map(AsRef::as_ref).collect();
    EtcdStore::open(&endpoints)
}
