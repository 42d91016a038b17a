//! A pool of raw server connections for one shard.
//!
//! Owns: the cap on server connections (`pool.size`), waiting for one (`checkout_timeout`,
//! then 53300), connecting (`connect_timeout`, then 08006 naming the shard), reuse of idle
//! connections (most recently used first, with a cheap liveness probe), and the shard's
//! up/down flag. The guard returns its connection on drop when it is clean, and drops it
//! (closing the socket, so the server rolls back) when it is not.
//!
//! Why not bb8 here: a raw connection carries protocol state (prepared statements, settings,
//! a response tracker) that the session mutates between checkouts, and the SPEC needs
//! "waited too long" (53300) and "shard is down" (08006) kept apart; bb8's retrying connect
//! folds both into one timeout. bb8 still pools the tokio-postgres control connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{ConnError, ServerConn};
use crate::config::{PgTarget, PoolConfig, ShardId};
use crate::protocol::{sqlstate, PgError};

#[derive(Clone)]
pub struct ShardPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    shard: ShardId,
    name: String,
    target: PgTarget,
    cfg: PoolConfig,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<ServerConn>>,
    up: AtomicBool,
    stats: PoolStats,
}

/// Counters for the admin console and metrics.
#[derive(Default)]
pub struct PoolStats {
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub checkouts: AtomicU64,
    pub checkout_timeouts: AtomicU64,
}

/// A checked-out connection; returns itself to the pool on drop.
pub struct PooledConn {
    conn: Option<ServerConn>,
    pool: Arc<PoolInner>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for PooledConn {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        self.conn
            .as_ref()
            .expect("a PooledConn holds its connection until drop")
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn
            .as_mut()
            .expect("a PooledConn holds its connection until drop")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if conn.is_clean() {
                conn.last_used = Instant::now();
                // The lock is never held across an await; poisoning would only follow a panic
                // while pushing, and then dropping the connection is the safe choice.
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(conn);
                }
            }
        }
    }
}

impl ShardPool {
    pub fn new(shard: ShardId, name: &str, target: PgTarget, cfg: PoolConfig) -> Self {
        ShardPool {
            inner: Arc::new(PoolInner {
                shard,
                name: name.to_owned(),
                target,
                permits: Arc::new(Semaphore::new(cfg.size as usize)),
                cfg,
                idle: Mutex::new(Vec::new()),
                up: AtomicBool::new(true),
                stats: PoolStats::default(),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &PoolStats {
        &self.inner.stats
    }

    pub fn idle_count(&self) -> usize {
        self.inner.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Connections handed out right now.
    pub fn active_count(&self) -> usize {
        self.inner.cfg.size as usize - self.inner.permits.available_permits()
    }

    /// Check out a connection. Cancel-safe: dropping the future gives everything back.
    pub async fn checkout(&self) -> Result<PooledConn, PgError> {
        let inner = &self.inner;
        inner.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        let permit = match tokio::time::timeout(
            inner.cfg.checkout_timeout,
            inner.permits.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => p,
            _ => {
                inner
                    .stats
                    .checkout_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                return Err(PgError::error(
                    sqlstate::TOO_MANY_CONNECTIONS,
                    format!(
                        "no server connection to shard \"{}\" became free within {:?} (pool.size = {})",
                        inner.name, inner.cfg.checkout_timeout, inner.cfg.size
                    ),
                ));
            }
        };
        loop {
            let candidate = inner.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some(mut conn) = candidate else { break };
            let expired = !inner.cfg.idle_timeout.is_zero()
                && conn.last_used.elapsed() > inner.cfg.idle_timeout;
            if !expired && conn.looks_alive() {
                return Ok(self.wrap(conn, permit));
            }
        }
        let conn = self.connect().await?;
        Ok(self.wrap(conn, permit))
    }

    fn wrap(&self, conn: ServerConn, permit: OwnedSemaphorePermit) -> PooledConn {
        PooledConn {
            conn: Some(conn),
            pool: self.inner.clone(),
            _permit: permit,
        }
    }

    async fn connect(&self) -> Result<ServerConn, PgError> {
        let inner = &self.inner;
        inner.stats.connects.fetch_add(1, Ordering::Relaxed);
        match ServerConn::connect(inner.shard, &inner.target, inner.cfg.connect_timeout).await {
            Ok(c) => {
                inner.up.store(true, Ordering::Relaxed);
                Ok(c)
            }
            Err(e) => {
                inner.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                // A refused login is a configuration problem, not an outage: keep it visible
                // but still 08006, since the shard cannot serve this statement.
                if !matches!(e, ConnError::Server { .. }) {
                    inner.up.store(false, Ordering::Relaxed);
                }
                tracing::warn!(shard = %inner.name, error = %e, "cannot connect to shard");
                Err(PgError::error(
                    sqlstate::CONNECTION_FAILURE,
                    format!("shard \"{}\" is unavailable: {e}", inner.name),
                )
                .with_detail(format!("target {}", inner.target.redacted_url())))
            }
        }
    }

    /// Close every idle connection (used on shutdown and reload).
    pub fn drain_idle(&self) {
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.clear();
        }
    }
}
