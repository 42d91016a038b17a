//! Two-phase commit across shards (SPEC section 7): the coordinator's phases, the durable
//! decision log (in the catalog, `catalog::decisions`), and recovery.
//!
//! Protocol, and what recovery does if the coordinator dies at each point:
//! 1. `PREPARE TRANSACTION 'gid'` on every participant, in parallel. Death here: some
//!    participants hold a prepared transaction with no decision; recovery, once it is older
//!    than `twopc.orphan_timeout`, records `abort` and rolls them back.
//! 2. The decision `commit` is written to the catalog: this is the commit point; the client
//!    is told of success only after it. Death here: recovery finds the decision and commits
//!    every participant still prepared.
//! 3. `COMMIT PREPARED 'gid'` on every participant (retried). Death here: as in 2.
//!
//! Decisions are first-writer-wins, so a coordinator racing recovery can never commit a
//! transaction that recovery has rolled back somewhere. Prepared-transaction ids begin with
//! `shardgate_` and are the decision's key, so any proxy can recover any other's.

pub mod coordinator;
pub mod recovery;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use coordinator::{commit, rollback_prepared, CommitError};

/// The prefix every shardgate prepared transaction carries.
pub const GID_PREFIX: &str = "shardgate_";

/// Ids for this process's transactions: `shardgate_<start ms>_<random>_<counter>`.
pub struct GidSource {
    stem: String,
    counter: AtomicU64,
}

impl Default for GidSource {
    fn default() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        GidSource {
            stem: format!("{GID_PREFIX}{ms:x}_{:08x}", rand::random::<u32>()),
            counter: AtomicU64::new(0),
        }
    }
}

impl GidSource {
    pub fn next(&self) -> String {
        format!(
            "{}_{}",
            self.stem,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Named points where tests make the coordinator stop as if its process died. Each fires
/// once. A handle, so every proxy in a test process has its own.
#[derive(Clone, Default)]
pub struct Failpoints {
    armed: Arc<Mutex<HashSet<String>>>,
}

/// The failpoints the coordinator checks.
pub mod points {
    /// After PREPARE succeeded on the first participant only.
    pub const AFTER_FIRST_PREPARE: &str = "twopc.after_first_prepare";
    /// After every participant prepared, before the decision is written.
    pub const AFTER_PREPARE: &str = "twopc.after_prepare";
    /// After the decision, before any COMMIT PREPARED.
    pub const AFTER_DECISION: &str = "twopc.after_decision";
    /// After COMMIT PREPARED on the first participant only.
    pub const AFTER_FIRST_COMMIT: &str = "twopc.after_first_commit";
}

impl Failpoints {
    pub fn arm(&self, name: &str) {
        if let Ok(mut a) = self.armed.lock() {
            a.insert(name.to_owned());
        }
    }

    /// Whether `name` is armed; firing disarms it.
    pub fn fire(&self, name: &str) -> bool {
        self.armed
            .lock()
            .map(|mut a| a.remove(name))
            .unwrap_or(false)
    }
}
