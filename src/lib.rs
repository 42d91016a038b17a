//! shardgate: a sharding proxy for PostgreSQL.
//!
//! Module map (see ARCHITECTURE.md for the invariants between them):
//! - [`admin`]: the admin console (database `shardgate`).
//! - [`config`]: YAML -> validated, immutable `Config` snapshot.
//! - [`protocol`]: framing and bounded decoding of Postgres protocol messages; SQLSTATEs.
//! - [`frontend`]: listener, startup/TLS/auth, and the per-client session state machine.
//! - [`backend`]: raw server connections to shards, per-shard pools.
//! - [`catalog`]: durable state in the catalog database (bucket maps, directory, 2PC decisions); directory cache.
//! - [`merge`]: fan-out answers -> one result (pure).
//! - [`pgtext`]: Postgres text forms shared by router and merge (uuid).
//! - [`localpg`]: starting throwaway local PostgreSQL servers (demo and tests).
//! - [`router`]: statement -> route (pure); shard functions.
//! - [`tls`]: rustls configuration: the client-facing acceptor, the no-verify shard connector.
//! - [`twopc`]: two-phase commit: coordinator, decision log, recovery.
//! - [`cli`]: one file per subcommand.

pub mod admin;
pub mod backend;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod frontend;
pub mod localpg;
pub mod merge;
pub mod pgtext;
pub mod protocol;
pub mod reshard;
pub mod router;
pub mod telemetry;
pub mod tls;
pub mod twopc;
