//! `shardgate serve`: load the config, start the proxy, reload it on SIGHUP, run until SIGTERM
//! or SIGINT, then shut down gracefully (stop accepting, let open transactions finish for a
//! bounded time).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{init_logging, runtime, CliError};
use crate::config::{self, Config};
use crate::frontend::Proxy;

/// How long open transactions may run on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub fn run(
    path: &Path,
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
) -> Result<(), CliError> {
    let mut cfg = config::load(path)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if metrics_listen.is_some() {
        cfg.metrics_listen = metrics_listen;
    }
    init_logging(cfg.log_level.as_deref());
    runtime()?.block_on(serve_until_signal(cfg))
}

/// Serve `cfg` until SIGTERM or SIGINT (used by `serve` and `demo`).
pub async fn serve_until_signal(cfg: Config) -> Result<(), CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = cfg.listen;
    let proxy = Proxy::new(cfg).map_err(|e| CliError::Usage(e.to_string()))?;
    let running = proxy
        .start(listen)
        .await
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::Runtime(format!("cannot install signal handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::Runtime(format!("cannot install signal handler: {e}")))?;
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| CliError::Runtime(format!("cannot install signal handler: {e}")))?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match running.proxy().reload_from_file().await {
                Ok(r) => tracing::info!(
                    shards_added = ?r.shards_added,
                    restart_needed = ?r.restart_needed,
                    "SIGHUP: config reloaded"
                ),
                Err(e) => tracing::error!(error = %e, "SIGHUP: config not reloaded, the running config stays"),
            },
        }
    }
    tracing::info!("shutting down: no new clients; waiting for open transactions");
    let left = running.shutdown(SHUTDOWN_GRACE).await;
    if left > 0 {
        tracing::warn!(
            clients = left,
            "closing clients still connected after the grace period"
        );
    }
    Ok(())
}
