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
//!
//! Fencing: while a resharding job is open, a proxy that has not completed a sync pass for
//! `STALE_AFTER` (shorter than the 10 s after which the tool stops waiting for a silent
//! proxy) treats every shard as held, so a proxy cut off from the catalog cannot route on a
//! map the rest of the cluster has left. A hold is never lifted while the map that goes with
//! it could not be installed (a shard missing from this proxy's config), and a proxy that
//! does not know a job's target shards does not acknowledge its hold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Longest a sync pass (a few catalog queries) may take before it counts as failed.
const PASS_TIMEOUT: Duration = Duration::from_secs(5);
/// With a job open, a proxy whose last good pass is older than this holds every shard.
const STALE_AFTER: Duration = Duration::from_secs(7);

/// The holds in force in this proxy.
pub struct Holds {
    held: ArcSwap<Vec<LocalHold>>,
    changed: watch::Sender<u64>,
    /// Whether the last good pass saw an open resharding job.
    jobs_open: AtomicBool,
    /// Milliseconds since `epoch` of the last good pass.
    last_ok_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Holds {
    fn default() -> Self {
        Holds {
            held: ArcSwap::default(),
            changed: watch::Sender::default(),
            jobs_open: AtomicBool::new(false),
            last_ok_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Holds {
    /// A job is open and this proxy has lost track of the catalog: hold everything.
    fn stale(&self) -> bool {
        self.jobs_open.load(Ordering::Relaxed) && {
            let now = self.epoch.elapsed().as_millis() as u64;
            now.saturating_sub(self.last_ok_ms.load(Ordering::Relaxed))
                > STALE_AFTER.as_millis() as u64
        }
    }

    /// Whether new work for `shard` must wait.
    pub fn is_held(&self, shard: ShardId) -> bool {
        let h = self.held.load();
        (!h.is_empty() && h.iter().any(|x| x.shards.contains(&shard))) || self.stale()
    }

    pub fn any(&self) -> bool {
        !self.held.load().is_empty() || self.stale()
    }

    fn holds_job(&self, job: i64) -> bool {
        self.held.load().iter().any(|h| h.job == job)
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

    fn pass_ok(&self, jobs_open: bool) {
        self.jobs_open.store(jobs_open, Ordering::Relaxed);
        self.last_ok_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        // Sessions waiting on a stale hold look again.
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

/// Start following the catalog (once per proxy): one pass now, so the proxy never serves on
/// a map older than the catalog's, then the sync task and its LISTEN connection.
pub async fn start_sync(proxy: &Proxy, catalog: Catalog, target: PgTarget) {
    if proxy.inner.sync_started.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut versions = HashMap::new();
    let _ = catalog.heartbeat(&proxy.inner.instance).await;
    if let Err(e) = sync_pass(proxy, &catalog, &mut versions).await {
        tracing::warn!(error = %e, "cannot read resharding state from the catalog at start");
    }
    let wake = Arc::new(Notify::new());
    tokio::spawn(listen_loop(target, wake.clone(), proxy.shutdown_signal()));
    tokio::spawn(sync_loop(proxy.clone(), catalog, wake, versions));
}

async fn sync_loop(
    proxy: Proxy,
    catalog: Catalog,
    wake: Arc<Notify>,
    mut versions: HashMap<String, i64>,
) {
    let id = proxy.inner.instance.clone();
    let mut beat = tokio::time::Instant::now();
    loop {
        if let Err(e) = sync_pass(&proxy, &catalog, &mut versions).await {
            tracing::warn!(error = %e, "cannot follow resharding state in the catalog");
        }
        if beat.elapsed() >= Duration::from_secs(2) {
            beat = tokio::time::Instant::now();
            let hb = tokio::time::timeout(PASS_TIMEOUT, catalog.heartbeat(&id)).await;
            if !matches!(hb, Ok(Ok(()))) {
                tracing::debug!("proxy heartbeat failed");
            }
        }
        // Shut down with no client left: stop heartbeating (the tool stops waiting for this
        // proxy 10 s later). Clients finishing during the grace period are still covered.
        if *proxy.shutdown_signal().borrow() && proxy.client_count() == 0 {
            let _ = catalog.unregister(&id).await;
            return;
        }
        let every = if proxy.inner.holds.any() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn sync_pass(
    proxy: &Proxy,
    catalog: &Catalog,
    versions: &mut HashMap<String, i64>,
) -> Result<(), String> {
    match tokio::time::timeout(PASS_TIMEOUT, sync_once(proxy, catalog, versions)).await {
        Ok(Ok(open)) => {
            proxy.inner.holds.pass_ok(open);
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer from the catalog within {PASS_TIMEOUT:?}"
        )),
    }
}

/// Whether every held shard's pool is drained (nothing checked out or being checked out).
fn drained(proxy: &Proxy, shards: &[ShardId]) -> bool {
    let pools = proxy.pools();
    shards
        .iter()
        .all(|&s| pools.get(s).is_none_or(|p| p.busy_count() == 0))
}

/// One pass: holds first, then map versions, then apply both. Returns whether a resharding
/// job is open.
async fn sync_once(
    proxy: &Proxy,
    catalog: &Catalog,
    versions: &mut HashMap<String, i64>,
) -> Result<bool, crate::catalog::CatalogError> {
    let holds = catalog.holds().await?;
    let live = catalog.map_versions().await?;
    let progress = catalog.progress().await;
    let open = progress.as_ref().map(|p| p.open_jobs > 0).unwrap_or(true);
    if let Ok(p) = &progress {
        proxy.metrics().set_reshard(
            p.open_jobs,
            p.rows_copied,
            p.bytes_copied,
            p.lag_bytes,
            p.pause_ms.unwrap_or(0.0) / 1000.0,
        );
    }
    // Installing a map and a reload's copying of maps into its new router must not interleave.
    let _reload = proxy.inner.reload_lock.lock().await;
    let cfg = proxy.config();
    let mut stuck: Vec<String> = Vec::new();
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
            _ => {
                tracing::error!(
                    scheme,
                    version,
                    "the live bucket map names a shard missing from this proxy's config, or has the wrong size; add the shard and reload"
                );
                stuck.push(scheme);
            }
        }
    }
    let current = proxy.inner.holds.jobs();
    let mut wanted: Vec<LocalHold> = holds
        .iter()
        .map(|h| LocalHold {
            job: h.job,
            scheme: h.scheme.clone(),
            shards: h.shards.iter().filter_map(|s| cfg.shard_id(s)).collect(),
        })
        .collect();
    // A hold whose map could not be installed stays: lifting it would route on the old map.
    for c in &current {
        if stuck.contains(&c.scheme) && !wanted.iter().any(|w| w.job == c.job) {
            wanted.push(c.clone());
        }
    }
    let known = |h: &crate::catalog::Hold| h.targets.iter().all(|t| cfg.shard_id(t).is_some());
    // A hold set again by a resumed cutover clears the acknowledgements: every pass
    // re-acknowledges the holds already drained (an idempotent insert).
    for h in holds.iter() {
        let Some(local) = current.iter().find(|c| c.job == h.job) else {
            continue;
        };
        if known(h) && drained(proxy, &local.shards) {
            catalog.ack(h.job, &proxy.inner.instance, "held").await?;
        }
    }
    if wanted == current {
        return Ok(open);
    }
    let pools = proxy.pools();
    for (i, p) in pools.iter().enumerate() {
        p.set_held(wanted.iter().any(|h| h.shards.contains(&i)));
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
    // Stored before the drain tasks start: they stop as soon as their hold is gone.
    proxy.inner.holds.store(wanted.clone());
    let id = proxy.inner.instance.clone();
    for h in &wanted {
        if current.iter().any(|c| c.job == h.job) {
            continue;
        }
        let Some(row) = holds.iter().find(|r| r.job == h.job) else {
            continue;
        };
        if !known(row) {
            tracing::error!(job = h.job, targets = ?row.targets, "cutover hold names shards this proxy does not know; not acknowledging (add them and reload)");
        }
        tracing::info!(job = h.job, shards = ?h.shards, "cutover hold: new work for these shards waits");
        let (proxy, catalog, shards, job, id, known) = (
            proxy.clone(),
            catalog.clone(),
            h.shards.clone(),
            h.job,
            id.clone(),
            known(row),
        );
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            loop {
                if !proxy.inner.holds.holds_job(job) {
                    return;
                }
                if drained(&proxy, &shards) {
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
            if known && proxy.inner.holds.holds_job(job) {
                if let Err(e) = catalog.ack(job, &id, "held").await {
                    tracing::warn!(job, error = %e, "cannot acknowledge the cutover hold");
                }
            }
        });
    }
    Ok(open)
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
