//! One local PostgreSQL server: its address, URLs, and stop/kill/start/status via `pg_ctl`.
//!
//! Owns what can be done to a single data directory once it exists. It deliberately does not
//! create data directories, write settings or create roles (that is the cluster's job), and
//! holds no state beyond names and paths: every method asks `pg_ctl` or the server itself, so
//! a `&LocalServer` shared between test threads stays truthful.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{log_tail, LocalPgError};
use super::exec::{run_with_stdin, Tools};

/// How long `pg_ctl` may wait for a start or stop.
pub(crate) const PG_CTL_WAIT_SECS: u64 = 60;

/// A server in a [`super::LocalCluster`], listening on `127.0.0.1:port`.
#[derive(Debug)]
pub struct LocalServer {
    /// `s0`, `s1`, ... (`name_prefix` + index); also the data directory's name.
    pub name: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    tools: Arc<Tools>,
}

impl LocalServer {
    pub(crate) fn new(
        name: String,
        port: u16,
        data_dir: PathBuf,
        log_file: PathBuf,
        tools: Arc<Tools>,
    ) -> LocalServer {
        LocalServer {
            name,
            port,
            data_dir,
            log_file,
            tools,
        }
    }

    /// `postgres://user:password@127.0.0.1:port/db`, with user and password percent-encoded.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            encode(user),
            encode(password),
            self.port,
            encode(db)
        )
    }

    /// The URL of the superuser `postgres`, which needs no password over 127.0.0.1.
    pub fn superuser_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, encode(db))
    }

    /// Run `sql` with `psql` as the superuser, over TCP; returns what it printed (unaligned,
    /// tuples only). Statements run one by one, as in a script, so `CREATE DATABASE` works;
    /// the first error stops the script and is returned with psql's stderr.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, LocalPgError> {
        let psql = self.tools.client_bin("psql");
        let url = format!("{}?connect_timeout=10", self.superuser_url(db));
        let mut cmd = Command::new(&psql);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(&url)
            .args(["-f", "-"])
            // Settings from the caller's environment would change what the SQL means.
            .env_remove("PGOPTIONS")
            .env_remove("PGSERVICE")
            .env_remove("PGSSLMODE")
            .stdin(Stdio::null());
        let display = format!("psql -d {url} <<< {}", abbreviate(sql));
        let out = run_with_stdin(cmd, display, Some(sql), None)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stop with `pg_ctl stop -m fast` (clients are disconnected, transactions rolled back,
    /// prepared transactions kept). Stopping a stopped server is not an error.
    pub fn stop(&self) -> Result<(), LocalPgError> {
        self.pg_ctl_stop("fast")
    }

    /// Stop with `pg_ctl stop -m immediate`: no shutdown checkpoint, as after a crash; the
    /// next start runs crash recovery. Killing a stopped server is not an error.
    ///
    /// The servers run with `synchronous_commit=off`, so commits from the last moments
    /// (up to about 3 x `wal_writer_delay`) can be lost, exactly as in a real crash with that
    /// setting. `PREPARE TRANSACTION` and `COMMIT PREPARED` always flush. A test that checks
    /// what survives a kill sets `synchronous_commit = on` in its session (or cluster-wide
    /// through `ClusterOptions::extra_settings`).
    pub fn kill(&self) -> Result<(), LocalPgError> {
        self.pg_ctl_stop("immediate")
    }

    /// Start again on the same port; returns once the server accepts connections.
    pub fn start(&self) -> Result<(), LocalPgError> {
        let args = vec![
            "start".to_string(),
            "-D".to_string(),
            path_arg(&self.data_dir),
            "-l".to_string(),
            path_arg(&self.log_file),
            "-w".to_string(),
            "-t".to_string(),
            PG_CTL_WAIT_SECS.to_string(),
        ];
        self.tools.run_pg("pg_ctl", &args, Some(&self.log_file))?;
        self.wait_accepting(Duration::from_secs(PG_CTL_WAIT_SECS))
    }

    /// Whether a postmaster runs on this data directory (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        let args = vec![
            "status".to_string(),
            "-D".to_string(),
            path_arg(&self.data_dir),
        ];
        self.tools.run_pg("pg_ctl", &args, None).is_ok()
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), LocalPgError> {
        if !self.is_running() {
            return Ok(());
        }
        let args = vec![
            "stop".to_string(),
            "-D".to_string(),
            path_arg(&self.data_dir),
            "-m".to_string(),
            mode.to_string(),
            "-w".to_string(),
            "-t".to_string(),
            PG_CTL_WAIT_SECS.to_string(),
        ];
        match self.tools.run_pg("pg_ctl", &args, Some(&self.log_file)) {
            Ok(_) => Ok(()),
            // It may have stopped between the status check and the stop.
            Err(_) if !self.is_running() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `pg_ctl -w` already waits for the postmaster to report "ready"; this also checks that
    /// the TCP port answers, which is what callers actually rely on.
    fn wait_accepting(&self, limit: Duration) -> Result<(), LocalPgError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + limit;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LocalPgError::NotReady {
                    name: self.name.clone(),
                    port: self.port,
                    seconds: limit.as_secs(),
                    log_file: self.log_file.clone(),
                    log_tail: log_tail(&self.log_file),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(crate) fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first line of `sql`, cut to a readable length, for error messages.
fn abbreviate(sql: &str) -> String {
    let first = sql.trim().lines().next().unwrap_or("");
    let mut short: String = first.chars().take(80).collect();
    if short.len() < sql.trim().len() {
        short.push_str(" ...");
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localpg::exec::RunAs;
    use crate::localpg::PgBinaries;

    fn server() -> LocalServer {
        let tools = Arc::new(Tools {
            bins: PgBinaries::in_dir("/nonexistent"),
            run_as: RunAs::Me,
        });
        LocalServer::new(
            "s0".into(),
            5999,
            "/tmp/r/s0".into(),
            "/tmp/r/s0.log".into(),
            tools,
        )
    }

    #[test]
    fn urls() {
        let s = server();
        assert_eq!(
            s.url("app", "app", "app"),
            "postgres://app:app@127.0.0.1:5999/app"
        );
        assert_eq!(
            s.url("u", "p@ss:w/rd", "my db"),
            "postgres://u:p%40ss%3Aw%2Frd@127.0.0.1:5999/my%20db"
        );
        assert_eq!(
            s.superuser_url("postgres"),
            "postgres://postgres@127.0.0.1:5999/postgres"
        );
    }

    #[test]
    fn sql_is_abbreviated_in_messages() {
        assert_eq!(abbreviate("select 1"), "select 1");
        assert_eq!(abbreviate("select 1;\nselect 2"), "select 1; ...");
    }
}
