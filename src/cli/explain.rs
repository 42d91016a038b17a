//! `shardgate explain SQL [--param V]...`: print the route of a statement without running
//! anything (no shard is contacted; directory keys are shown as lookups).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::CliError;
use crate::config;
use crate::router::{Params, Router};

pub fn run(path: &Path, sql: &str, params: &[String]) -> Result<(), CliError> {
    let cfg = config::load(path)?;
    let router = Router::new(Arc::new(cfg));
    let values = params.iter().map(|p| Some(p.as_bytes())).collect();
    let text = router.explain(sql, &Params::new(&[], values));
    // `println!` would panic when stdout is a closed pipe (`shardgate explain ... | head -1`).
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Runtime(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}
