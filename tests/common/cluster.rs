//! The per-test-binary cluster and per-test databases.
//!
//! Owns the one `LocalCluster` a test binary shares among its tests (cargo runs them as
//! threads of one process) and the naming of isolated databases, so tests can run in
//! parallel. Statics are never dropped, so cleanup after the binary exits is the watchdog's
//! job. Tests that stop or kill servers must not use the shared cluster (they would disturb
//! their neighbours): they take a [`private_cluster`]. Set `SHARDGATE_KEEP_CLUSTER=1` to keep
//! the files (logs) of test clusters for a post-mortem; servers are still stopped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use shardgate::localpg::{ClusterOptions, LocalCluster, PgBinaries, SslFiles};

/// Servers in the shared cluster.
pub const SERVERS: usize = 3;

static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The cluster shared by this test binary, started on first use: 3 servers under
/// `/tmp/sg-test-<pid>`, watchdog on.
pub fn cluster() -> &'static LocalCluster {
    CLUSTER.get_or_init(|| {
        start(
            format!("{}/sg-test-{}", scratch(), std::process::id()),
            SERVERS,
        )
    })
}

/// A cluster of its own for a test that stops, kills or reconfigures servers. Dropping it
/// removes it; the watchdog covers a panic that skips the drop.
pub fn private_cluster(servers: usize) -> LocalCluster {
    private_cluster_with(servers, None)
}

/// A private cluster whose servers accept TLS (`ssl = on`) with `ssl`'s certificate.
pub fn private_cluster_with(servers: usize, ssl: Option<SslFiles>) -> LocalCluster {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    start_with(
        format!("{}/sg-test-{}-p{n}", scratch(), std::process::id()),
        servers,
        ssl,
    )
}

fn start(root: String, servers: usize) -> LocalCluster {
    start_with(root, servers, None)
}

fn start_with(root: String, servers: usize, ssl: Option<SslFiles>) -> LocalCluster {
    let mut opts = ClusterOptions::new(root, servers);
    opts.ssl = ssl;
    opts.watchdog = true;
    opts.keep = std::env::var("SHARDGATE_KEEP_CLUSTER").is_ok_and(|v| v == "1");
    let started = Instant::now();
    let cluster =
        LocalCluster::start(&opts).unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
    eprintln!(
        "test cluster {} ({servers} servers, ports {:?}) up in {:.2?}",
        cluster.root.display(),
        cluster.servers.iter().map(|s| s.port).collect::<Vec<_>>(),
        started.elapsed()
    );
    cluster
}

/// A new database on every server of the shared cluster, owned by `app`. The name is
/// `prefix` (lowercased, non `[a-z0-9_]` as `_`) plus a counter and the pid, <= 63 bytes.
pub fn fresh_db(prefix: &str) -> String {
    let name = db_name(prefix, COUNTER.fetch_add(1, Ordering::Relaxed));
    cluster()
        .create_database(&name, "app")
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    name
}

pub fn db_name(prefix: &str, n: usize) -> String {
    let suffix = format!("_{n}_{}", std::process::id());
    let clean: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(63 - suffix.len())
        .collect();
    let clean = if clean.is_empty() {
        "db".to_string()
    } else {
        clean
    };
    format!("{clean}{suffix}")
}

/// Path of a client program (`psql`, `pgbench`): from the server binaries' dir when it is
/// there, else found on `PATH`, else the bare name (the spawn error will say it is missing).
pub fn bin_path(name: &str) -> PathBuf {
    if let Ok(bins) = PgBinaries::find() {
        let path = bins.bin(name);
        if path.is_file() {
            return path;
        }
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Where test clusters live: memory-backed `/dev/shm` when it is there (creating the ~1,000
/// files of a data directory is several times faster), else `/tmp`.
fn scratch() -> &'static str {
    if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    }
}
