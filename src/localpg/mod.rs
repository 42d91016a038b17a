//! Throwaway local PostgreSQL servers for `shardgate demo` (SPEC 14) and the integration tests.
//!
//! Owns finding the server binaries ([`PgBinaries`]), creating and starting a set of servers
//! under one root directory ([`LocalCluster`], [`ClusterOptions`]), driving each one
//! ([`LocalServer`]: URLs, `psql`, stop/kill/start), and cleaning up, including after a crash
//! of the creating process (a watchdog). Every server gets the settings shardgate needs
//! (`max_prepared_transactions`, `wal_level=logical`, ...), trust auth for the superuser
//! `postgres` over 127.0.0.1, and the roles `app` (SCRAM) and `md5user` (md5); optionally
//! `ssl = on` with a given certificate ([`SslFiles`]).
//!
//! It deliberately does not: manage long-lived or production servers (durability is off),
//! create shardgate schemas or sample data (the demo and tests do), or run on the async
//! runtime. Everything here is blocking std code (`std::process::Command`); it is never on a
//! hot path. As root, `initdb` and `pg_ctl` run as the OS user `postgres`.
//!
//! Layout: `binaries` (search), `exec` (running as `postgres`), `template` (initdb + cache),
//! `settings` (postgresql.conf, pg_hba.conf, roles), `root` (claiming the directory),
//! `server`, `cluster`, `watchdog`.

mod binaries;
mod cluster;
mod error;
mod exec;
mod root;
mod server;
mod settings;
mod template;
mod watchdog;

pub use binaries::PgBinaries;
pub use cluster::{ClusterOptions, LocalCluster};
pub use error::LocalPgError;
pub use server::LocalServer;
pub use settings::SslFiles;
