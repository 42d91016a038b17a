//! The list of connected clients for the admin console's `SHOW CLIENTS`.
//!
//! Each session registers itself after login and keeps its entry's state current with two
//! relaxed atomic stores per request (no lock on the request path); the entry leaves the
//! list when the session's guard drops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a client is doing, in PgBouncer's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Holds no server connection.
    Idle = 0,
    /// Holds at least one server connection (a statement or transaction is open).
    Active = 1,
    /// Waiting for a server connection.
    Waiting = 2,
}

impl ClientState {
    pub fn label(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
        }
    }
}

pub struct ClientInfo {
    /// The process id the proxy gave the client (BackendKeyData).
    pub pid: i32,
    pub user: String,
    pub database: String,
    pub addr: SocketAddr,
    pub application_name: String,
    pub connected: SystemTime,
    state: AtomicU8,
    /// Unix time in milliseconds of the client's last request.
    last_request_ms: AtomicU64,
}

impl ClientInfo {
    pub fn state(&self) -> ClientState {
        match self.state.load(Ordering::Relaxed) {
            1 => ClientState::Active,
            2 => ClientState::Waiting,
            _ => ClientState::Idle,
        }
    }

    pub fn set_state(&self, s: ClientState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// Note that a request arrived now.
    pub fn touch(&self) {
        self.last_request_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn last_request(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_millis(self.last_request_ms.load(Ordering::Relaxed))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every logged-in client of one proxy.
#[derive(Default, Clone)]
pub struct ClientList {
    map: Arc<Mutex<HashMap<i32, Arc<ClientInfo>>>>,
}

/// Keeps a client listed while it lives.
pub struct Listed {
    pub info: Arc<ClientInfo>,
    list: ClientList,
}

impl Drop for Listed {
    fn drop(&mut self) {
        if let Ok(mut m) = self.list.map.lock() {
            m.remove(&self.info.pid);
        }
    }
}

impl ClientList {
    pub fn add(
        &self,
        pid: i32,
        user: &str,
        database: &str,
        addr: SocketAddr,
        application_name: &str,
    ) -> Listed {
        let info = Arc::new(ClientInfo {
            pid,
            user: user.to_owned(),
            database: database.to_owned(),
            addr,
            application_name: application_name.to_owned(),
            connected: SystemTime::now(),
            state: AtomicU8::new(ClientState::Idle as u8),
            last_request_ms: AtomicU64::new(now_ms()),
        });
        if let Ok(mut m) = self.map.lock() {
            m.insert(pid, info.clone());
        }
        Listed {
            info,
            list: self.clone(),
        }
    }

    /// A copy of the list, oldest connection first.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self
            .map
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|c| (c.connected, c.pid));
        v
    }
}
