//! The Redis stores: one server ([`RedisStore`]), a Redis Cluster ([`ClusterStore`]) and
//! Redlock over N independent masters ([`RedlockStore`]).
//!
//! The Redis node layer: companion names, the scripts, and every single-node primitive,
//! written once over any `redis` connection. The single-server and Cluster stores (and
//! Redlock, per master) are thin shells around it.
//!
//! ## Layout
//! - The shared layer, which never imports a store: `script` (the Lua scripts under
//!   `scripts/`), `naming` (hash tags, slots, companion keys and channels), `conn` (the
//!   connection the layer drives), `error`, `protocol` (a lock's primitives over one
//!   node), `shared_lease` (a semaphore's or read/write lock's), `inspect` (what a node
//!   holds), `scan` and `replicas` (the `SCAN` and `WAIT` commands), `feed` (the pub/sub
//!   wake-up feed), `server` (one server's connection), `tls`, and `deployment` (a
//!   deployment made a `Store`).
//! - The stores, built on it: `single`, `cluster` (a `Deployment` each) and `redlock` (a
//!   quorum around the same primitives).

mod cluster;
mod conn;
mod deployment;
mod error;
mod feed;
mod inspect;
mod naming;
mod protocol;
mod redlock;
mod replicas;
mod scan;
mod script;
mod server;
mod shared_lease;
mod single;
mod tls;

pub(crate) use cluster::{Cluster, ClusterStore};
pub(crate) use redlock::RedlockStore;
pub(crate) use single::{RedisStore, Single};
pub(crate) use tls::{TlsRoots, client};
