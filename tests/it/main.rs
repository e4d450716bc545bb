//! The behaviour and fault tests, in one binary so that the dev-dependencies link once:
//! each file is a module, its tests named `module::test` (the store-list tests
//! `module::store::test`, see `locked_test_support::on_stores!`). The tests share the
//! process's Redis Cluster, PostgreSQL and MariaDB servers (each under a prefix, a schema or
//! a database of its own); the tests that need a process of their own are binaries of their own: `global`
//! (`locked::init`), `tracing_events` (subscribers), `processes` and `model` (which start
//! their own binary again as workers), `e2e` (the built `locked` tool and HTTP example) and
//! `ui` (trybuild).

mod attribute;
mod cluster;
mod connections;
#[cfg(feature = "etcd")]
mod etcd;
mod faults;
mod holding;
mod leadership;
#[cfg(feature = "mysql")]
mod mysql;
mod partitions;
#[cfg(feature = "postgres")]
mod pgbouncer;
#[cfg(feature = "postgres")]
mod postgres;
mod primitives;
mod redis_store;
mod redlock;
mod regressions;
mod runtimes;
mod scenarios;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store_behaviour;
mod store_matrix;
mod waiting;
