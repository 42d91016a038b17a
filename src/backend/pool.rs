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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// Replaced on reload; read at each checkout.
    cfg: arc_swap::ArcSwap<PoolConfig>,
    permits: Arc<Semaphore>,
    /// Connections handed out right now.
    active: AtomicUsize,
    /// Checkouts past their permit but not yet handed out (connecting, probing).
    pending: AtomicUsize,
    /// Permits a smaller pool size still has to take back from connections in use.
    owed: AtomicUsize,
    /// A resharding cutover holds this shard: checkouts that race the hold are refused.
    held: AtomicBool,
    /// Checkouts waiting for a free connection: (ticket, since when).
    waiters: Mutex<Vec<(u64, Instant)>>,
    next_ticket: AtomicU64,
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
    /// Given back on drop, unless a smaller pool size still owes permits (then forgotten).
    permit: Option<OwnedSemaphorePermit>,
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
        self.pool.active.fetch_sub(1, Ordering::SeqCst);
        if take_owed(&self.pool.owed) {
            if let Some(p) = self.permit.take() {
                p.forget();
            }
        }
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

/// Take one owed permit, if any is owed.
fn take_owed(owed: &AtomicUsize) -> bool {
    owed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Un-counts a checkout's `pending` when it ends (handed out, failed or cancelled).
struct Pending<'a>(&'a PoolInner);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A checkout waiting for a permit, listed while it waits (for `cl_waiting`, `maxwait`).
struct Waiting<'a> {
    pool: &'a PoolInner,
    ticket: u64,
}

impl<'a> Waiting<'a> {
    fn new(pool: &'a PoolInner) -> Self {
        let ticket = pool.next_ticket.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut w) = pool.waiters.lock() {
            w.push((ticket, Instant::now()));
        }
        Waiting { pool, ticket }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.pool.waiters.lock() {
            w.retain(|(t, _)| *t != self.ticket);
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
                cfg: arc_swap::ArcSwap::from_pointee(cfg),
                active: AtomicUsize::new(0),
                pending: AtomicUsize::new(0),
                owed: AtomicUsize::new(0),
                waiters: Mutex::new(Vec::new()),
                held: AtomicBool::new(false),
                next_ticket: AtomicU64::new(0),
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
        self.inner.active.load(Ordering::SeqCst)
    }

    /// Checkouts waiting for a connection now, and how long the oldest has waited.
    pub fn waiting(&self) -> (usize, std::time::Duration) {
        let w = self
            .inner
            .waiters
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        let longest = w.iter().map(|(_, t)| t.elapsed()).max().unwrap_or_default();
        (w.len(), longest)
    }

    /// Set or lift a cutover hold on this shard.
    pub fn set_held(&self, held: bool) {
        self.inner.held.store(held, Ordering::SeqCst);
    }

    /// Connections in use or about to be: what a cutover drain waits for.
    pub fn busy_count(&self) -> usize {
        self.inner.pending.load(Ordering::SeqCst) + self.inner.active.load(Ordering::SeqCst)
    }

    /// The pool settings in force.
    pub fn config(&self) -> Arc<PoolConfig> {
        self.inner.cfg.load_full()
    }

    /// Apply new pool settings (a reload). A larger size takes effect at once; a smaller one
    /// takes free permits away now and the rest as connections come back (no client loses
    /// its connection). A later increase first cancels what is still owed.
    pub fn reconfigure(&self, cfg: PoolConfig) {
        let inner = &self.inner;
        let old = inner.cfg.load().size as usize;
        let new = cfg.size as usize;
        inner.cfg.store(Arc::new(cfg));
        if new > old {
            let mut grow = new - old;
            while grow > 0 && take_owed(&inner.owed) {
                grow -= 1;
            }
            inner.permits.add_permits(grow);
        } else if new < old {
            let mut shrink = old - new;
            while shrink > 0 {
                match inner.permits.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        shrink -= 1;
                    }
                    Err(_) => break,
                }
            }
            inner.owed.fetch_add(shrink, Ordering::SeqCst);
        }
    }

    /// Check out a connection. Cancel-safe: dropping the future gives everything back.
    pub async fn checkout(&self) -> Result<PooledConn, PgError> {
        let inner = &self.inner;
        let cfg = inner.cfg.load_full();
        inner.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        let permit = match inner.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(Ok(p)),
            Err(_) => {
                let _waiting = Waiting::new(inner);
                tokio::time::timeout(cfg.checkout_timeout, inner.permits.clone().acquire_owned())
                    .await
            }
        };
        let permit = match permit {
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
                        inner.name, cfg.checkout_timeout, cfg.size
                    ),
                ));
            }
        };
        // Counted busy from here: a cutover drain that starts while this checkout connects
        // waits for it, and `handed_out` then sees the hold.
        inner.pending.fetch_add(1, Ordering::SeqCst);
        let _pending = Pending(inner);
        loop {
            let candidate = inner.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some(mut conn) = candidate else { break };
            let expired =
                !cfg.idle_timeout.is_zero() && conn.last_used.elapsed() > cfg.idle_timeout;
            if !expired && conn.looks_alive() {
                return self.handed_out(self.wrap(conn, permit));
            }
        }
        let conn = self.connect().await?;
        self.handed_out(self.wrap(conn, permit))
    }

    /// The last check before a connection leaves the pool. Sessions wait for a cutover hold
    /// before routing; one that routed just before the hold began is refused here (retryable
    /// 40001), because the hold's drain may already have counted this pool empty. The
    /// connection is counted active before the flag is read (both SeqCst), so either the
    /// drain sees it or this check sees the hold.
    fn handed_out(&self, conn: PooledConn) -> Result<PooledConn, PgError> {
        if self.inner.held.load(Ordering::SeqCst) {
            drop(conn);
            return Err(PgError::error(
                "40001",
                format!(
                    "shard \"{}\" is paused for a resharding cutover; retry the transaction",
                    self.inner.name
                ),
            ));
        }
        Ok(conn)
    }

    fn wrap(&self, conn: ServerConn, permit: OwnedSemaphorePermit) -> PooledConn {
        self.inner.active.fetch_add(1, Ordering::SeqCst);
        PooledConn {
            conn: Some(conn),
            pool: self.inner.clone(),
            permit: Some(permit),
        }
    }

    async fn connect(&self) -> Result<ServerConn, PgError> {
        let inner = &self.inner;
        inner.stats.connects.fetch_add(1, Ordering::Relaxed);
        let timeout = inner.cfg.load().connect_timeout;
        match ServerConn::connect(inner.shard, &inner.target, timeout).await {
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

    /// One health pass: drop idle connections that are closed or sent something unasked;
    /// when the pool is marked down, or holds no connection at all, connect once to learn
    /// whether the shard is up (a success stays in the pool as an idle connection).
    /// Returns whether the shard is up afterwards.
    pub async fn health_check(&self) -> bool {
        let inner = &self.inner;
        let idle = inner
            .idle
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        let before = idle.len();
        let alive: Vec<ServerConn> = idle
            .into_iter()
            .filter_map(|mut c| c.looks_alive().then_some(c))
            .collect();
        let dropped = before - alive.len();
        let have = alive.len();
        if let Ok(mut v) = inner.idle.lock() {
            // Connections returned meanwhile are newer: keep them on top (LIFO).
            let newer = std::mem::replace(&mut *v, alive);
            v.extend(newer);
        }
        if dropped > 0 {
            tracing::info!(shard = %inner.name, dropped, "closed broken idle server connections");
        }
        let probe = !self.is_up() || (have == 0 && self.active_count() == 0);
        if probe {
            let Ok(permit) = inner.permits.clone().try_acquire_owned() else {
                return self.is_up();
            };
            if let Ok(conn) = self.connect().await {
                drop(self.wrap(conn, permit));
            }
        }
        self.is_up()
    }

    /// Close every idle connection (used on shutdown and reload).
    pub fn drain_idle(&self) {
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.clear();
        }
    }
}

#[cfg(test)]
mod resize_tests {
    use super::*;

    fn pool(size: u32) -> ShardPool {
        let cfg = crate::config::parse(
            "shards:\n  - { name: s0, url: \"postgres://a@127.0.0.1:1/db\" }\n",
            std::path::Path::new("x.yaml"),
        )
        .unwrap();
        let mut pc = cfg.pool.clone();
        pc.size = size;
        ShardPool::new(0, "s0", cfg.shards[0].target.clone(), pc)
    }

    fn with(p: &ShardPool, size: u32) {
        let mut c = (*p.config()).clone();
        c.size = size;
        p.reconfigure(c);
    }

    #[tokio::test]
    async fn shrinking_then_growing_keeps_the_capacity_asked_for() {
        let p = pool(4);
        // Two permits in use (as if two connections were checked out).
        let a = p.inner.permits.clone().try_acquire_owned().unwrap();
        let b = p.inner.permits.clone().try_acquire_owned().unwrap();
        with(&p, 1); // two free permits taken now, one owed by the connections in use
        assert_eq!(p.inner.permits.available_permits(), 0);
        assert_eq!(p.inner.owed.load(Ordering::SeqCst), 1);
        with(&p, 3); // +2: one cancels the debt, one is added
        assert_eq!(p.inner.owed.load(Ordering::SeqCst), 0);
        assert_eq!(p.inner.permits.available_permits(), 1);
        drop((a, b));
        assert_eq!(p.inner.permits.available_permits(), 3);
    }
}
