//! Shared helpers for the integration tests: real PostgreSQL servers, one cluster per binary.
//!
//! Owns what every test file reaches for (`cluster()`, `fresh_db()`, `bin_path()`); the
//! details of starting servers live in `shardgate::localpg`, so the demo and the tests share
//! one implementation. It deliberately holds no proxy helpers yet: those arrive with the proxy.
//! Not every test binary uses every helper, hence `dead_code` is allowed module-wide.
#![allow(dead_code)]

pub mod cluster;

pub use cluster::{bin_path, cluster, db_name, fresh_db, private_cluster};
