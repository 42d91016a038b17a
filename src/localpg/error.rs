//! The one error type of `localpg`, with messages meant for a person at a terminal.
//!
//! Owns the wording: which command failed, the tail of its stderr, and where the server log
//! is. It deliberately carries no SQLSTATE: these errors never reach a proxy client, only the
//! demo's user or a test's panic message.

use std::path::PathBuf;

/// How many trailing lines of stderr or of a server log an error quotes.
pub(crate) const TAIL_LINES: usize = 15;

/// Something went wrong while finding, creating, starting or driving a local server.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    /// No usable `initdb` + `pg_ctl` pair was found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; tried: {tried}. \
         Install them (Debian: apt-get install postgresql)"
    )]
    BinariesNotFound { tried: String },

    /// An external command ran and failed (or could not be started at all).
    #[error("{}", command_message(.command, .status, .stderr_tail, .log_file, .log_tail))]
    Command {
        /// The command line, shortened for reading (`pg_ctl start -D /tmp/x/s0 ...`).
        command: String,
        /// `exit status: 1`, `killed by signal 9`, or why it could not be spawned.
        status: String,
        stderr_tail: String,
        /// The server log, when the command concerned one server.
        log_file: Option<PathBuf>,
        log_tail: String,
    },

    /// A filesystem operation failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The process runs as root and there is no usable `postgres` OS user.
    #[error("running as root, so PostgreSQL must run as the OS user `postgres`: {0}")]
    PostgresUser(String),

    /// `root` exists, holds files, and was not created by `localpg`: we will not delete it.
    #[error(
        "{} exists and was not created by shardgate's localpg (no .localpg-owner file); \
         refusing to delete it. Remove it or choose another directory",
        .0.display()
    )]
    ForeignRoot(PathBuf),

    /// A server did not come up (or back) within the time allowed.
    #[error("server {name} did not accept connections on 127.0.0.1:{port} within {seconds}s; log: {}\n{log_tail}", .log_file.display())]
    NotReady {
        name: String,
        port: u16,
        seconds: u64,
        log_file: PathBuf,
        log_tail: String,
    },

    /// The caller asked for something this module cannot do.
    #[error("invalid local cluster options: {0}")]
    Options(String),
}

impl LocalPgError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LocalPgError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

fn command_message(
    command: &str,
    status: &str,
    stderr_tail: &str,
    log_file: &Option<PathBuf>,
    log_tail: &str,
) -> String {
    let mut msg = format!("`{command}` failed ({status})");
    if !stderr_tail.trim().is_empty() {
        msg.push_str(":\n");
        msg.push_str(stderr_tail.trim_end());
    }
    if let Some(log) = log_file {
        msg.push_str(&format!("\nserver log: {}", log.display()));
        if !log_tail.trim().is_empty() {
            msg.push('\n');
            msg.push_str(log_tail.trim_end());
        }
    }
    msg
}

/// The last `TAIL_LINES` lines of `text`.
pub(crate) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].join("\n")
}

/// The last lines of a log file, or a note saying why it could not be read.
pub(crate) fn log_tail(path: &std::path::Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => tail(&String::from_utf8_lossy(&bytes)),
        Err(e) => format!("(log not readable: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        let text: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(t.starts_with("line 25"));
        assert!(t.ends_with("line 39"));
    }

    #[test]
    fn command_error_names_command_stderr_and_log() {
        let e = LocalPgError::Command {
            command: "pg_ctl start -D /tmp/r/s0".into(),
            status: "exit status: 1".into(),
            stderr_tail: "pg_ctl: could not start server".into(),
            log_file: Some(PathBuf::from("/tmp/r/s0.log")),
            log_tail: "FATAL: could not bind".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("`pg_ctl start -D /tmp/r/s0` failed (exit status: 1)"));
        assert!(msg.contains("could not start server"));
        assert!(msg.contains("server log: /tmp/r/s0.log"));
        assert!(msg.contains("FATAL: could not bind"));
    }
}
