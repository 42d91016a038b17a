//! Shared helpers for the integration tests: real PostgreSQL servers, one cluster per binary.
//!
//! Owns what every test file reaches for (`cluster()`, `fresh_db()`, `bin_path()`); the
//! details of starting servers live in `shardgate::localpg`, so the demo and the tests share
//! one implementation. `proxy` starts shardgate in-process in front of the cluster and
//! drives clients (tokio-postgres, psql, pgbench, raw sockets) against it.
//! Not every test binary uses every helper, hence `dead_code` is allowed module-wide.
#![allow(dead_code)]

pub mod cluster;
pub mod proxy;
pub mod trap;

#[allow(unused_imports)]
pub use cluster::{bin_path, cluster, db_name, fresh_db, private_cluster, private_cluster_with};
