//! Cancel requests: the keys the proxy hands to clients and where a cancel must go.
//!
//! Each client gets a proxy-made (pid, secret) pair in BackendKeyData. Its session keeps the
//! list of server connections it is using right now (shard address and that server's own
//! key); a CancelRequest with a matching key is forwarded to every one of them. A handle, not
//! a global: each proxy instance owns its registry, so tests can run many proxies at once.
//!
//! Cancels go to servers in plaintext, even for shards reached over TLS: Postgres handles a
//! cancel request before it consults pg_hba.conf, and the packet carries only the server's
//! cancel key (docs/tls.md). A client's own cancel may arrive in plaintext or TLS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::protocol::build;

/// A server connection a statement may be running on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelTarget {
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
}

type Targets = Arc<Mutex<Vec<CancelTarget>>>;

#[derive(Clone, Default)]
pub struct CancelRegistry {
    sessions: Arc<Mutex<HashMap<i32, (i32, Targets)>>>,
}

/// A session's entry in the registry; removed on drop.
pub struct CancelHandle {
    pub pid: i32,
    pub secret: i32,
    targets: Targets,
    registry: CancelRegistry,
}

impl CancelRegistry {
    /// Allocate a fresh key for a new client session.
    pub fn register(&self) -> CancelHandle {
        let targets: Targets = Arc::default();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let (pid, secret) = loop {
            let pid = rand::random::<i32>() & 0x7fff_ffff;
            if pid != 0 && !sessions.contains_key(&pid) {
                break (pid, rand::random::<i32>());
            }
        };
        sessions.insert(pid, (secret, targets.clone()));
        CancelHandle {
            pid,
            secret,
            targets,
            registry: self.clone(),
        }
    }

    /// Forward a client's cancel request to the servers its session is using. Unknown keys
    /// are ignored silently, as Postgres does.
    pub fn cancel(&self, pid: i32, secret: &[u8]) {
        let targets = {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            match sessions.get(&pid) {
                Some((s, t)) if secret == s.to_be_bytes() => {
                    t.lock().unwrap_or_else(|p| p.into_inner()).clone()
                }
                _ => return,
            }
        };
        for t in targets {
            tokio::spawn(async move {
                let packet = build::cancel_request(t.pid, t.secret);
                match TcpStream::connect(t.addr).await {
                    Ok(mut s) => {
                        let _ = s.write_all(&packet).await;
                        let _ = s.shutdown().await;
                    }
                    Err(e) => tracing::warn!(addr = %t.addr, error = %e, "cannot forward cancel"),
                }
            });
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CancelHandle {
    pub fn add(&self, t: CancelTarget) {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t);
    }

    pub fn remove(&self, t: CancelTarget) {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|x| *x != t);
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        if let Ok(mut s) = self.registry.sessions.lock() {
            s.remove(&self.pid);
        }
    }
}
