//! Client side: the listener, connection opening and authentication, and the per-client
//! session that wires statements to server connections.
//!
//! [`Proxy`] is the handle every task holds: the current config snapshot, the shard pools,
//! the credential table and the cancel registry. No process-wide globals, so a test can run
//! several proxies side by side.

pub mod auth;
pub mod cancel;
pub mod clients;
pub mod holds;
mod limits;
mod listener;
pub mod reload;
mod session;
pub mod settings;
pub mod startup;
pub mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::backend::ShardPool;
use crate::catalog::{Catalog, DirectoryCache};
use crate::config::{CatalogRef, Config, HashFunction, Scheme};
use crate::router::Router;
use crate::telemetry::TwoPcOutcome;
use auth::Credentials;
use cancel::CancelRegistry;
use startup::ClientTls;

/// The ParameterStatus values a client is told at login, sorted by name.
pub type LoginParams = Arc<Vec<(String, String)>>;

/// A cloneable handle to one running proxy's shared state.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<ProxyInner>,
}

/// What a reload replaces as one: the config, the router built for it (tables, plan cache,
/// live bucket maps) and one pool per shard. Shards are only ever appended, so a session
/// holding an older snapshot can move to a newer one at any time.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub router: Router,
    pub pools: Vec<ShardPool>,
}

struct ProxyInner {
    state: ArcSwap<Snapshot>,
    /// Set by `start` when the config has schemes that need it (hash bucket maps, directory).
    catalog: std::sync::OnceLock<Catalog>,
    directory: DirectoryCache,
    /// Serialises connecting the catalog lazily.
    catalog_init: tokio::sync::Mutex<()>,
    failpoints: crate::twopc::Failpoints,
    gids: crate::twopc::GidSource,
    creds: ArcSwap<Credentials>,
    /// TLS towards clients (`tls:`), loaded from the files when the config is taken in, so a
    /// reload can swap it like the credentials; `None` answers SSLRequest with `N`.
    tls: ArcSwapOption<ClientTls>,
    cancel: CancelRegistry,
    shutdown: watch::Sender<bool>,
    clients: AtomicUsize,
    clients_gone: Notify,
    /// ParameterStatus sets seen at login, by client-settings fingerprint, so that a login
    /// only needs a server connection the first time a combination of settings is seen.
    login_params: Mutex<HashMap<u64, LoginParams>>,
    metrics: crate::telemetry::Metrics,
    limits: limits::Budgets,
    client_list: clients::ClientList,
    /// PAUSE: sessions wait before taking a server connection while this is true.
    paused: watch::Sender<bool>,
    /// Resharding cutover holds in force here (`holds`).
    holds: holds::Holds,
    /// This proxy's name in the catalog (heartbeats, cutover acknowledgements).
    instance: String,
    /// Reloads run one at a time.
    reload_lock: tokio::sync::Mutex<()>,
    /// Whether the resharding sync task runs (started once, by start or a reload).
    sync_started: std::sync::atomic::AtomicBool,
    /// Whether the directory listener runs (started once, by start or a reload).
    directory_listener: std::sync::atomic::AtomicBool,
}

/// A proxy that is accepting connections.
pub struct RunningProxy {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    proxy: Proxy,
    accept: tokio::task::JoinHandle<()>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Users(String),
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("{0}")]
    Tls(String),
}

/// How many directory entries the proxy keeps in memory.
const DIRECTORY_CACHE_SIZE: usize = 100_000;
/// How often the directory cache is dropped as a backstop against lost notifications.
const DIRECTORY_BACKSTOP: Duration = Duration::from_secs(60);

impl Proxy {
    pub fn new(config: Config) -> Result<Proxy, StartError> {
        let tls = match &config.tls {
            None => None,
            Some(t) => Some(Arc::new(ClientTls {
                acceptor: crate::tls::acceptor(t)
                    .map_err(|e| StartError::Tls(format!("{}: {e}", config.source.display())))?,
                require: t.require,
            })),
        };
        let creds = Credentials::from_config(&config).map_err(StartError::Users)?;
        let pools = config
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| ShardPool::new(i, &s.name, s.target.clone(), config.pool.clone()))
            .collect();
        let (shutdown, _) = watch::channel(false);
        let config = Arc::new(config);
        let state = Snapshot {
            router: Router::new(config.clone()),
            config,
            pools,
        };
        Ok(Proxy {
            inner: Arc::new(ProxyInner {
                state: ArcSwap::from_pointee(state),
                catalog: std::sync::OnceLock::new(),
                directory: DirectoryCache::new(DIRECTORY_CACHE_SIZE),
                catalog_init: tokio::sync::Mutex::new(()),
                failpoints: crate::twopc::Failpoints::default(),
                gids: crate::twopc::GidSource::default(),
                creds: ArcSwap::from_pointee(creds),
                tls: ArcSwapOption::new(tls),
                cancel: CancelRegistry::default(),
                shutdown,
                clients: AtomicUsize::new(0),
                clients_gone: Notify::new(),
                login_params: Mutex::new(HashMap::new()),
                metrics: crate::telemetry::Metrics::new(),
                limits: limits::Budgets::default(),
                client_list: clients::ClientList::default(),
                paused: watch::channel(false).0,
                holds: holds::Holds::default(),
                instance: holds::instance_id(),
                reload_lock: tokio::sync::Mutex::new(()),
                directory_listener: std::sync::atomic::AtomicBool::new(false),
                sync_started: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    pub fn config(&self) -> Arc<Config> {
        self.inner.state.load().config.clone()
    }

    /// The config, router and pools in force (replaced as one by a reload).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.state.load_full()
    }

    pub fn pools(&self) -> Vec<ShardPool> {
        self.inner.state.load().pools.clone()
    }

    pub fn router(&self) -> Router {
        self.inner.state.load().router.clone()
    }

    pub fn catalog(&self) -> Option<&Catalog> {
        self.inner.catalog.get()
    }

    pub fn directory(&self) -> &DirectoryCache {
        &self.inner.directory
    }

    pub fn failpoints(&self) -> &crate::twopc::Failpoints {
        &self.inner.failpoints
    }

    pub fn gids(&self) -> &crate::twopc::GidSource {
        &self.inner.gids
    }

    /// The catalog, connecting it on first use when routing did not need it at start.
    pub async fn catalog_for_twopc(&self) -> Result<Catalog, crate::protocol::PgError> {
        if let Some(c) = self.inner.catalog.get() {
            return Ok(c.clone());
        }
        let _guard = self.inner.catalog_init.lock().await;
        if let Some(c) = self.inner.catalog.get() {
            return Ok(c.clone());
        }
        let cfg = self.config();
        let target = match &cfg.catalog {
            CatalogRef::Shard(i) => cfg.shards[*i].target.clone(),
            CatalogRef::Url(t) => t.clone(),
        };
        let fail = |e: crate::catalog::CatalogError| {
            crate::protocol::PgError::error(
                crate::protocol::sqlstate::CONNECTION_FAILURE,
                format!("two-phase commit needs the catalog, which is unavailable: {e}"),
            )
        };
        let catalog = Catalog::connect(&target, cfg.pool.connect_timeout)
            .await
            .map_err(fail)?;
        catalog.ensure_schema().await.map_err(fail)?;
        let _ = self.inner.catalog.set(catalog.clone());
        Ok(catalog)
    }

    /// Connect the catalog when the config needs it: load (or seed) every hash scheme's live
    /// bucket map, and keep the directory cache fresh. Routing by a stale map would send
    /// statements to the wrong shard, so a proxy that cannot do this does not start.
    async fn open_catalog(&self) -> Result<(), StartError> {
        let cfg = self.config();
        let needs = cfg.schemes.values().any(|s| {
            matches!(s, Scheme::Directory(_))
                || matches!(s, Scheme::Hash(h) if h.function == HashFunction::Postgres)
        });
        if !needs {
            return Ok(());
        }
        let target = match &cfg.catalog {
            CatalogRef::Shard(i) => cfg.shards[*i].target.clone(),
            CatalogRef::Url(t) => t.clone(),
        };
        let err = |e: crate::catalog::CatalogError| StartError::Catalog(e.to_string());
        let catalog = Catalog::connect(&target, cfg.pool.connect_timeout)
            .await
            .map_err(err)?;
        catalog.ensure_schema().await.map_err(err)?;
        for (name, scheme) in &cfg.schemes {
            let Scheme::Hash(h) = scheme else { continue };
            if h.function != HashFunction::Postgres {
                continue;
            }
            let seed: Vec<String> = h.map.iter().map(|&s| cfg.shards[s].name.clone()).collect();
            let live = catalog.seed_bucket_map(name, &seed).await.map_err(err)?;
            if live.shards.len() != h.buckets as usize {
                return Err(StartError::Catalog(format!(
                    "the live bucket map of scheme {name} has {} buckets, the config says {}",
                    live.shards.len(),
                    h.buckets
                )));
            }
            let mut map = Vec::with_capacity(live.shards.len());
            for shard in &live.shards {
                map.push(cfg.shard_id(shard).ok_or_else(|| {
                    StartError::Catalog(format!(
                        "the live bucket map of scheme {name} names shard \"{shard}\", which is not in shards:"
                    ))
                })?);
            }
            self.router().set_bucket_map(name, map);
        }
        let _ = self.inner.catalog.set(catalog.clone());
        holds::start_sync(self, catalog, target).await;
        if cfg
            .schemes
            .values()
            .any(|s| matches!(s, Scheme::Directory(_)))
        {
            self.ensure_directory_listener(&cfg);
        }
        Ok(())
    }

    /// Keep the directory cache fresh from the catalog's notifications (started once).
    fn ensure_directory_listener(&self, cfg: &Config) {
        if self.inner.directory_listener.swap(true, Ordering::SeqCst) {
            return;
        }
        let target = match &cfg.catalog {
            CatalogRef::Shard(i) => cfg.shards[*i].target.clone(),
            CatalogRef::Url(t) => t.clone(),
        };
        crate::catalog::spawn_directory_listener(
            target,
            self.inner.directory.clone(),
            DIRECTORY_BACKSTOP,
        );
    }

    pub fn metrics(&self) -> &crate::telemetry::Metrics {
        &self.inner.metrics
    }

    /// The Prometheus page: counters as they stand, state gauges read from the pools now.
    pub fn render_metrics(&self) -> String {
        let pools = self.pools();
        let samples: Vec<crate::telemetry::ShardSample> = pools
            .iter()
            .map(|p| crate::telemetry::ShardSample {
                name: p.name(),
                up: p.is_up(),
                active: p.active_count(),
                idle: p.idle_count(),
            })
            .collect();
        self.inner.metrics.render(self.client_count(), &samples)
    }

    /// Count an error the proxy itself reports to a client and write it to `out`.
    pub(crate) fn error_out(&self, out: &mut bytes::BytesMut, e: &crate::protocol::PgError) {
        self.inner.metrics.error(&e.code);
        crate::protocol::build::error(out, e);
    }

    pub fn holds(&self) -> &holds::Holds {
        &self.inner.holds
    }

    /// This proxy's instance name in the catalog.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    pub fn clients(&self) -> &clients::ClientList {
        &self.inner.client_list
    }

    /// PAUSE (true) or RESUME (false): paused, no session takes a new server connection.
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.send_replace(paused);
    }

    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    fn paused_signal(&self) -> watch::Receiver<bool> {
        self.inner.paused.subscribe()
    }

    pub fn client_count(&self) -> usize {
        self.inner.clients.load(Ordering::Relaxed)
    }

    /// Bind the listener and start accepting clients.
    pub async fn start(self, listen: SocketAddr) -> Result<RunningProxy, StartError> {
        self.open_catalog().await?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;
        let accept = tokio::spawn(listener::accept_loop(self.clone(), listener));
        let cfg = self.config();
        let (metrics_addr, metrics_task) = match cfg.metrics_listen {
            Some(m) => {
                let me = self.clone();
                let render: crate::telemetry::http::Render = Arc::new(move || me.render_metrics());
                match crate::telemetry::http::serve(m, render).await {
                    Ok((a, t)) => (Some(a), Some(t)),
                    Err(source) => {
                        accept.abort();
                        return Err(StartError::Listen { addr: m, source });
                    }
                }
            }
            None => (None, None),
        };
        if cfg.twopc.enabled && cfg.shards.len() > 1 {
            tokio::spawn(recovery_loop(self.clone()));
        }
        tokio::spawn(health_loop(self.clone()));

        tracing::info!(%addr, "shardgate listening");
        if let Some(m) = metrics_addr {
            tracing::info!(addr = %m, "metrics at http://{m}/metrics");
        }
        Ok(RunningProxy {
            addr,
            metrics_addr,
            proxy: self,
            accept,
            metrics_task,
        })
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Count a client in; the guard counts it out.
    fn client_guard(&self) -> ClientGuard {
        self.inner.clients.fetch_add(1, Ordering::Relaxed);
        ClientGuard(self.clone())
    }
}

struct ClientGuard(Proxy);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if self.0.inner.clients.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.inner.clients_gone.notify_waiters();
        }
    }
}

impl RunningProxy {
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Stop accepting, tell idle clients to go, and wait up to `grace` for clients in a
    /// transaction to finish. Returns the number of clients still connected at the end.
    pub async fn shutdown(self, grace: Duration) -> usize {
        let _ = self.proxy.inner.shutdown.send(true);
        self.accept.abort();
        if let Some(t) = &self.metrics_task {
            t.abort();
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.proxy.client_count() > 0 {
            let gone = self.proxy.inner.clients_gone.notified();
            if tokio::time::timeout_at(deadline, gone).await.is_err() {
                break;
            }
        }
        for p in self.proxy.pools() {
            p.drain_idle();
        }
        self.proxy.client_count()
    }
}

/// How often each shard's pool is checked (idle connections probed, a down shard retried).
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Check every shard's pool periodically until shutdown, so that `shardgate_shard_up` and
/// `SHOW SHARDS` follow a shard going down and coming back even without traffic; and fold the
/// metrics' histogram samples, which otherwise pile up until a scrape.
async fn health_loop(proxy: Proxy) {
    let mut shutdown = proxy.shutdown_signal();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        proxy.metrics().upkeep();
        let pools = proxy.pools();
        let checks = pools.iter().map(|p| async move {
            let was = p.is_up();
            let now = p.health_check().await;
            if was != now {
                if now {
                    tracing::info!(shard = %p.name(), "shard is back up");
                } else {
                    tracing::warn!(shard = %p.name(), "shard is down");
                }
            }
        });
        futures_util::future::join_all(checks).await;
    }
}

/// Settle in-doubt two-phase transactions at start and then periodically, until shutdown.
async fn recovery_loop(proxy: Proxy) {
    let mut shutdown = proxy.shutdown_signal();
    let cfg = proxy.config();
    let every = (cfg.twopc.orphan_timeout / 2).max(Duration::from_secs(5));
    loop {
        match proxy.catalog_for_twopc().await {
            Ok(catalog) => match crate::twopc::recovery::recover(&cfg, &catalog).await {
                Ok(r) => {
                    let m = proxy.metrics();
                    m.twopc(TwoPcOutcome::RecoveredCommit, r.committed as u64);
                    m.twopc(TwoPcOutcome::RecoveredRollback, r.rolled_back as u64);
                    m.set_in_doubt(r.waiting);
                    if r.committed + r.rolled_back > 0 {
                        tracing::info!(
                            committed = r.committed,
                            rolled_back = r.rolled_back,
                            "recovered in-doubt transactions"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "two-phase commit recovery failed"),
            },
            Err(e) => tracing::debug!(error = %e, "recovery waits for the catalog"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}
