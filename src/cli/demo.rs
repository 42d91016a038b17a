//! `shardgate demo` (waiting for the local-Postgres launcher).

use super::CliError;

pub fn run(_shards: usize, _port: u16) -> Result<(), CliError> {
    Err(CliError::Runtime("demo is not wired yet".into()))
}
