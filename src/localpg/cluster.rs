//! A set of throwaway local servers under one root directory: create, start, clean up.
//!
//! Owns the life of a cluster: claiming the root (an owner token file marks it as ours),
//! copying the `initdb` template into `root/<name>`, choosing free ports, writing settings,
//! starting servers in parallel, creating the standard roles, and cleaning up on `Drop` or,
//! through the watchdog, after the creator died. It deliberately knows nothing about shards,
//! schemas or the proxy: the demo and the tests build those on top.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::binaries::PgBinaries;
use super::error::{log_tail, LocalPgError};
use super::exec::{run, RunAs, Tools};
use super::root::{claim_root, owner_token, socket_dir, OWNER_FILE};
use super::server::LocalServer;
use super::settings;
use super::template;
use super::watchdog::{Plan, Watchdog};

/// How many times a server start is retried on a fresh port when its port was taken.
const PORT_ATTEMPTS: usize = 5;

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Everything lives here: data dirs, logs, sockets. Keep it short (socket paths).
    pub root: PathBuf,
    pub servers: usize,
    /// Servers are named `<prefix>0`, `<prefix>1`, ...
    pub name_prefix: String,
    /// Start a watchdog that cleans up if this process dies without dropping the cluster.
    pub watchdog: bool,
    /// More `postgresql.conf` settings; they override the standard ones.
    pub extra_settings: Vec<(String, String)>,
    /// Leave `root` on disk when the cluster is dropped (servers are still stopped).
    pub keep: bool,
    /// Accept TLS connections with this certificate and key (`ssl = on`); off when `None`.
    pub ssl: Option<settings::SslFiles>,
}

impl ClusterOptions {
    /// `servers` servers under `root`, named `s0`.., no watchdog, no extra settings.
    pub fn new(root: impl Into<PathBuf>, servers: usize) -> ClusterOptions {
        ClusterOptions {
            root: root.into(),
            servers,
            name_prefix: "s".into(),
            watchdog: false,
            extra_settings: Vec::new(),
            keep: false,
            ssl: None,
        }
    }
}

/// Running local servers. Dropping it stops them (immediately) and removes `root` unless
/// `keep` is set.
#[derive(Debug)]
pub struct LocalCluster {
    pub servers: Vec<LocalServer>,
    pub root: PathBuf,
    pub keep: bool,
    tools: Arc<Tools>,
    watchdog: Option<Watchdog>,
}

impl LocalCluster {
    /// Create and start the servers; returns once each accepts connections and has the
    /// roles `app` (SCRAM, password `app`), `md5user` (md5, `md5pass`) and database `app`.
    pub fn start(opts: &ClusterOptions) -> Result<LocalCluster, LocalPgError> {
        let root = check_options(opts)?;
        let tools = Arc::new(Tools {
            bins: PgBinaries::find()?,
            run_as: RunAs::detect()?,
        });
        claim_root(&tools, &root)?;
        let token = owner_token();
        let owner_file = root.join(OWNER_FILE);
        std::fs::write(&owner_file, &token)
            .map_err(|e| LocalPgError::io("write", &owner_file, e))?;

        // From here on, an early return drops `cluster`, which stops what was started.
        let mut cluster = LocalCluster {
            servers: Vec::new(),
            root: root.clone(),
            keep: opts.keep,
            tools: tools.clone(),
            watchdog: None,
        };
        let names: Vec<String> = (0..opts.servers)
            .map(|i| format!("{}{i}", opts.name_prefix))
            .collect();
        let data_dirs: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
        if opts.watchdog {
            cluster.watchdog = Some(Watchdog::spawn(&Plan {
                creator_pid: std::process::id(),
                root: &root,
                owner_file: &owner_file,
                token: &token,
                data_dirs: data_dirs.iter().map(PathBuf::as_path).collect(),
                pg_ctl: &tools.bins.bin("pg_ctl"),
                run_as: &tools.run_as,
                keep: opts.keep,
            })?);
        }

        let socket_dir = socket_dir(&root)?;
        let template = template::obtain(&tools, &root)?;
        let ports = free_ports(opts.servers)?;
        for ((name, data_dir), port) in names.into_iter().zip(data_dirs).zip(ports) {
            let log_file = root.join(format!("{name}.log"));
            let server = LocalServer::new(name, port, data_dir, log_file, tools.clone());
            cluster.servers.push(server);
        }
        // Before the data dirs exist, so this is quick; each is handed over after its copy.
        tools.run_as.chown(&root)?;

        // Creating files is the slow part (about 1,000 per data dir), so each server is
        // copied, configured and started in its own thread.
        let setup = |server: &mut LocalServer| {
            copy_dir(&template.dir, &server.data_dir)?;
            settings::write_hba(&server.data_dir)?;
            let mut conf =
                settings::server_settings(server.port, &socket_dir, &opts.extra_settings);
            if let Some(files) = &opts.ssl {
                // Before the extras, so that a test can still override what this sets.
                let at = conf.len() - opts.extra_settings.len();
                let ssl = settings::install_ssl(&server.data_dir, files)?;
                conf.splice(at..at, ssl);
            }
            settings::append_conf(&server.data_dir, &conf)?;
            tools.run_as.chown(&server.data_dir)?;
            first_start(server)
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = cluster
                .servers
                .iter_mut()
                .map(|server| scope.spawn(|| setup(server)))
                .collect();
            join_all(handles)
        })?;
        if !template.cached {
            std::fs::remove_dir_all(&template.dir)
                .map_err(|e| LocalPgError::io("remove", &template.dir, e))?;
        }
        Ok(cluster)
    }

    /// The binaries the servers run from (for `psql`, `pgbench`, ...).
    pub fn bins(&self) -> &PgBinaries {
        &self.tools.bins
    }

    /// Stop every server (`-m fast`); the first error is returned after trying them all.
    pub fn stop_all(&self) -> Result<(), LocalPgError> {
        let results: Vec<_> = self.servers.iter().map(LocalServer::stop).collect();
        results.into_iter().collect()
    }

    /// Create database `name` owned by role `owner` on every server, in parallel.
    pub fn create_database(&self, name: &str, owner: &str) -> Result<(), LocalPgError> {
        let sql = format!(
            "CREATE DATABASE {} OWNER {};",
            quote_ident(name),
            quote_ident(owner)
        );
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .servers
                .iter()
                .map(|server| scope.spawn(|| server.psql("postgres", &sql).map(|_| ())))
                .collect();
            join_all(handles)
        })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Errors cannot be reported from drop. If a server would not stop, its directory and
        // the watchdog are left alone: the watchdog tries again when this process exits.
        let stopped: Vec<bool> = self.servers.iter().map(|s| s.kill().is_ok()).collect();
        if stopped.contains(&false) {
            return;
        }
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.cancel();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Validate options; returns the absolute root.
fn check_options(opts: &ClusterOptions) -> Result<PathBuf, LocalPgError> {
    if opts.servers == 0 {
        return Err(LocalPgError::Options("servers must be at least 1".into()));
    }
    let prefix_ok = !opts.name_prefix.is_empty()
        && opts
            .name_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !prefix_ok {
        return Err(LocalPgError::Options(format!(
            "name_prefix {:?} must be letters, digits, _ or -",
            opts.name_prefix
        )));
    }
    settings::validate_names(&opts.extra_settings)?;
    let root =
        std::path::absolute(&opts.root).map_err(|e| LocalPgError::io("resolve", &opts.root, e))?;
    if root.to_str().is_none() || root.parent().is_none() {
        return Err(LocalPgError::Options(format!(
            "root {} must be valid UTF-8 and not /",
            root.display()
        )));
    }
    Ok(root)
}

/// `n` distinct free ports: bind them all on port 0 at once, read them, release them.
fn free_ports(n: usize) -> Result<Vec<u16>, LocalPgError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LocalPgError::io("bind a port on", "127.0.0.1", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LocalPgError::io("read the port of", "127.0.0.1", e))
}

/// `cp -a`: keeps modes and owners, which `postgres` insists on for data directories.
fn copy_dir(from: &Path, to: &Path) -> Result<(), LocalPgError> {
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg(from).arg(to);
    let display = format!("cp -a {} {}", from.display(), to.display());
    run(cmd, display, None).map(|_| ())
}

/// Start a new server and create the standard roles. The port was free a moment ago but
/// another process may have taken it since; then the server moves to a fresh port.
fn first_start(server: &mut LocalServer) -> Result<(), LocalPgError> {
    let mut attempt = 1;
    loop {
        match server.start() {
            Ok(()) => break,
            Err(_) if attempt < PORT_ATTEMPTS && port_taken(&server.log_file) => {
                let port = free_ports(1)?
                    .pop()
                    .expect("free_ports(1) returns one port");
                let line = [("port".to_string(), port.to_string())];
                settings::append_conf(&server.data_dir, &line)?;
                server.port = port;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
    server.psql("postgres", settings::SETUP_SQL).map(|_| ())
}

fn port_taken(log_file: &Path) -> bool {
    let log = log_tail(log_file);
    log.contains("could not bind") || log.contains("Address already in use")
}

/// Wait for every thread (none is left running with work half done) and return the first
/// error. A panic in one is a bug in this module, so it is passed on.
fn join_all(
    handles: Vec<std::thread::ScopedJoinHandle<'_, Result<(), LocalPgError>>>,
) -> Result<(), LocalPgError> {
    let mut first = Ok(());
    for handle in handles {
        let result = handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if first.is_ok() {
            first = result;
        }
    }
    first
}

/// Quote an SQL identifier: `"name"`, with embedded `"` doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        assert!(check_options(&ClusterOptions::new("/tmp/x", 0)).is_err());
        let mut o = ClusterOptions::new("/tmp/x", 1);
        o.name_prefix = "a b".into();
        assert!(check_options(&o).is_err());
        assert!(check_options(&ClusterOptions::new("/", 1)).is_err());
        assert_eq!(
            check_options(&ClusterOptions::new("/tmp/x", 2)).ok(),
            Some("/tmp/x".into())
        );
    }

    #[test]
    fn ports_are_distinct() {
        let ports = free_ports(5).expect("bind ports");
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 5);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
