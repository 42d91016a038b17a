//! The proxy's side of a resharding cutover (SPEC 12 step 4): follow the catalog's holds and
//! bucket-map versions, hold new work for held shards, and acknowledge when it is drained.
//!
//! A sync task per proxy heartbeats into `shardgate.proxies`, reads the holds and the live
//! map versions (woken at once by `NOTIFY shardgate_reshard`, polled every second as a
//! backstop, every 100 ms while a hold is on), installs changed maps into the router, and
//! applies the hold set: each held shard's pool refuses checkouts that race the hold, sessions
//! wait before routing a cycle to a held shard they hold no connection to (`Session::target`),
//! and once no connection to the held shards is in use the proxy acknowledges `held`. Holds
//! are read before versions in each pass, so a hold is never lifted on the old map after the
//! switch lifted it in the catalog.
//!
//! A hold is per source shard, not per bucket: for the pause, every new transaction on a
//! source shard waits, including ones for buckets that stay. Sessions that already hold a
//! connection to a held shard (an open transaction) go on, and the drain waits for them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};

use super::Proxy;
use crate::catalog::{Catalog, RESHARD_CHANNEL};
use crate::config::{HashFunction, PgTarget, Scheme, ShardId};

/// Longest a session waits for a hold to lift before its statement fails.
pub const HOLD_WAIT_MAX: Duration = Duration::from_secs(30);
/// Longest a proxy tries to drain held shards before giving up on acknowledging.
const DRAIN_MAX: Duration = Duration::from_secs(60);

/// One hold in force: its job, its scheme, the shards it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalHold {
    job: i64,
    scheme: String,
    shards: Vec<ShardId>,
}

/// The holds in force in this proxy.
#[derive(Default)]
pub struct Holds {
    held: ArcSwap<Vec<LocalHold>>,
    changed: watch::Sender<u64>,
}

impl Holds {
    /// Whether new work for `shard` must wait.
    pub fn is_held(&self, shard: ShardId) -> bool {
        let h = self.held.load();
        !h.is_empty() && h.iter().any(|x| x.shards.contains(&shard))
    }

    pub fn any(&self) -> bool {
        !self.held.load().is_empty()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn jobs(&self) -> Vec<LocalHold> {
        self.held.load().as_ref().clone()
    }

    fn store(&self, v: Vec<LocalHold>) {
        self.held.store(Arc::new(v));
        self.changed.send_modify(|n| *n += 1);
    }
}

/// A name for this proxy instance in the catalog (host, pid, random).
pub fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "proxy".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Start the sync task (and its LISTEN connection) for a proxy whose catalog is connected.
pub fn spawn_sync(proxy: Proxy, catalog: Catalog, target: PgTarget) {
    let wake = Arc::new(Notify::new());
    tokio::spawn(listen_loop(target, wake.clone(), proxy.shutdown_signal()));
    tokio::spawn(sync_loop(proxy, catalog, wake));
}

async fn sync_loop(proxy: Proxy, catalog: Catalog, wake: Arc<Notify>) {
    let mut shutdown = proxy.shutdown_signal();
    let id = proxy.inner.instance.clone();
    let mut versions: HashMap<String, i64> = HashMap::new();
    let mut beat = tokio::time::Instant::now();
    let _ = catalog.heartbeat(&id).await;
    loop {
        if let Err(e) = sync_once(&proxy, &catalog, &mut versions).await {
            tracing::warn!(error = %e, "cannot follow resharding state in the catalog");
        }
        if beat.elapsed() >= Duration::from_secs(2) {
            beat = tokio::time::Instant::now();
            if let Err(e) = catalog.heartbeat(&id).await {
                tracing::debug!(error = %e, "proxy heartbeat failed");
            }
        }
        let every = if proxy.inner.holds.any() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {
                let _ = catalog.unregister(&id).await;
                return;
            }
        }
    }
}

/// One pass: holds first, then map versions, then apply both.
async fn sync_once(
    proxy: &Proxy,
    catalog: &Catalog,
    versions: &mut HashMap<String, i64>,
) -> Result<(), crate::catalog::CatalogError> {
    let holds = catalog.holds().await?;
    let live = catalog.map_versions().await?;
    let p = catalog.progress().await?;
    proxy.metrics().set_reshard(
        p.open_jobs,
        p.rows_copied,
        p.bytes_copied,
        p.lag_bytes,
        p.pause_ms.unwrap_or(0.0) / 1000.0,
    );
    let cfg = proxy.config();
    for (scheme, version) in live {
        if versions.get(&scheme) == Some(&version) {
            continue;
        }
        let Some(Scheme::Hash(h)) = cfg.schemes.get(&scheme) else {
            continue;
        };
        if h.function != HashFunction::Postgres {
            continue;
        }
        let Some(map) = catalog.bucket_map(&scheme).await? else {
            continue;
        };
        let ids: Option<Vec<ShardId>> = map.shards.iter().map(|s| cfg.shard_id(s)).collect();
        match ids {
            Some(ids) if ids.len() == h.buckets as usize => {
                proxy.router().set_bucket_map(&scheme, ids);
                tracing::info!(scheme, version = map.version, "bucket map installed");
                versions.insert(scheme, version);
            }
            _ => tracing::error!(
                scheme,
                version,
                "the live bucket map names a shard missing from this proxy's config, or has the wrong size; keeping the old map"
            ),
        }
    }
    let wanted: Vec<LocalHold> = holds
        .iter()
        .map(|h| LocalHold {
            job: h.job,
            scheme: h.scheme.clone(),
            shards: h.shards.iter().filter_map(|s| cfg.shard_id(s)).collect(),
        })
        .collect();
    let current = proxy.inner.holds.jobs();
    // A hold set again by a resumed cutover clears the acknowledgements: every pass
    // re-acknowledges the holds already drained (an idempotent insert).
    for h in wanted.iter().filter(|h| current.contains(h)) {
        let pools = proxy.pools();
        if h.shards
            .iter()
            .all(|&s| pools.get(s).is_none_or(|p| p.active_count() == 0))
        {
            catalog.ack(h.job, &proxy.inner.instance, "held").await?;
        }
    }
    if wanted == current {
        return Ok(());
    }
    let pools = proxy.pools();
    for (i, p) in pools.iter().enumerate() {
        p.set_held(wanted.iter().any(|h| h.shards.contains(&i)));
    }
    let id = proxy.inner.instance.clone();
    for h in &wanted {
        if current.iter().any(|c| c.job == h.job) {
            continue;
        }
        tracing::info!(job = h.job, shards = ?h.shards, "cutover hold: new work for these shards waits");
        let (proxy, catalog, shards, job, id) = (
            proxy.clone(),
            catalog.clone(),
            h.shards.clone(),
            h.job,
            id.clone(),
        );
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            loop {
                let pools = proxy.pools();
                if shards
                    .iter()
                    .all(|&s| pools.get(s).is_none_or(|p| p.active_count() == 0))
                {
                    break;
                }
                if started.elapsed() > DRAIN_MAX {
                    tracing::warn!(
                        job,
                        "cutover hold: connections to held shards still in use; not acknowledging"
                    );
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if let Err(e) = catalog.ack(job, &id, "held").await {
                tracing::warn!(job, error = %e, "cannot acknowledge the cutover hold");
            }
        });
    }
    for c in &current {
        if !wanted.iter().any(|h| h.job == c.job) {
            // A directory move switched a key's entry in the same transaction that lifted
            // the hold: drop cached entries before anything routes again.
            if matches!(cfg.schemes.get(&c.scheme), Some(Scheme::Directory(_))) {
                proxy.directory().clear();
            }
            tracing::info!(job = c.job, "cutover hold lifted");
        }
    }
    proxy.inner.holds.store(wanted);
    Ok(())
}

/// Keep a LISTEN on the resharding channel and wake the sync task on each notification.
async fn listen_loop(target: PgTarget, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let cfg = crate::catalog::pg_config(
            &target,
            Duration::from_secs(10),
            "shardgate-reshard-listener",
        );
        if let Ok((client, mut conn)) = cfg.connect(crate::tls::make_tls_connect()).await {
            let w = wake.clone();
            let pump = tokio::spawn(async move {
                let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                while let Some(Ok(m)) = messages.next().await {
                    if let tokio_postgres::AsyncMessage::Notification(_) = m {
                        w.notify_one();
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {RESHARD_CHANNEL}"))
                .await
                .is_ok()
            {
                // Anything before the LISTEN may have been missed: look now.
                wake.notify_one();
                tokio::select! {
                    _ = pump => {}
                    _ = shutdown.changed() => return,
                }
            } else {
                pump.abort();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
