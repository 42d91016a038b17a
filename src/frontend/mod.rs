//! Client side: the listener, connection opening and authentication, and the per-client
//! session that wires statements to server connections.
//!
//! [`Proxy`] is the handle every task holds: the current config snapshot, the shard pools,
//! the credential table and the cancel registry. No process-wide globals, so a test can run
//! several proxies side by side.

pub mod auth;
pub mod cancel;
mod listener;
mod session;
pub mod settings;
pub mod startup;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::backend::ShardPool;
use crate::config::Config;
use auth::Credentials;
use cancel::CancelRegistry;

/// The ParameterStatus values a client is told at login, sorted by name.
pub type LoginParams = Arc<Vec<(String, String)>>;

/// A cloneable handle to one running proxy's shared state.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<ProxyInner>,
}

struct ProxyInner {
    config: ArcSwap<Config>,
    pools: Vec<ShardPool>,
    creds: ArcSwap<Credentials>,
    cancel: CancelRegistry,
    shutdown: watch::Sender<bool>,
    clients: AtomicUsize,
    clients_gone: Notify,
    /// ParameterStatus sets seen at login, by client-settings fingerprint, so that a login
    /// only needs a server connection the first time a combination of settings is seen.
    login_params: Mutex<HashMap<u64, LoginParams>>,
}

/// A proxy that is accepting connections.
pub struct RunningProxy {
    pub addr: SocketAddr,
    proxy: Proxy,
    accept: tokio::task::JoinHandle<()>,
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
}

impl Proxy {
    pub fn new(config: Config) -> Result<Proxy, StartError> {
        let creds = Credentials::from_config(&config).map_err(StartError::Users)?;
        let pools = config
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| ShardPool::new(i, &s.name, s.target.clone(), config.pool.clone()))
            .collect();
        let (shutdown, _) = watch::channel(false);
        Ok(Proxy {
            inner: Arc::new(ProxyInner {
                config: ArcSwap::from_pointee(config),
                pools,
                creds: ArcSwap::from_pointee(creds),
                cancel: CancelRegistry::default(),
                shutdown,
                clients: AtomicUsize::new(0),
                clients_gone: Notify::new(),
                login_params: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> Arc<Config> {
        self.inner.config.load_full()
    }

    pub fn pools(&self) -> &[ShardPool] {
        &self.inner.pools
    }

    pub fn client_count(&self) -> usize {
        self.inner.clients.load(Ordering::Relaxed)
    }

    /// Bind the listener and start accepting clients.
    pub async fn start(self, listen: SocketAddr) -> Result<RunningProxy, StartError> {
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
        tracing::info!(%addr, "shardgate listening");
        Ok(RunningProxy {
            addr,
            proxy: self,
            accept,
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
