//! Throwaway local PostgreSQL servers for `shardgate demo` (SPEC 14) and the integration tests.
//!
//! Owns finding the server binaries ([`PgBinaries`]) and running them as the OS user
//! `postgres` when we are root. Clusters of servers come next.
//!
//! It deliberately does not manage long-lived or production servers, and does not run on the
//! async runtime: everything here is blocking std code (`std::process::Command`).

#![allow(dead_code)] // the cluster that uses `exec` lands in the next commit

mod binaries;
mod error;
mod exec;

pub use binaries::PgBinaries;
pub use error::LocalPgError;
