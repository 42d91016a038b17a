//! What every local server is configured with: `postgresql.conf` settings and `pg_hba.conf`.
//!
//! Owns the settings shardgate's demo and tests rely on (two-phase commit, logical
//! replication, many connections, no durability) and the authentication rules (trust for the
//! superuser, md5 for `md5user`, SCRAM for everyone else). It deliberately writes files only:
//! creating data directories and starting servers belong to the cluster. With
//! [`SslFiles`], it also installs a server certificate and key and turns `ssl` on.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::LocalPgError;

/// A certificate chain and private key (PEM) for servers that accept TLS (`ssl = on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Copy `files` into `data_dir` (the key with mode 0600, which the server insists on; the
/// cluster hands the whole directory to the server's OS user afterwards) and return the
/// settings that use them. Relative file names are read from the data directory.
pub(crate) fn install_ssl(
    data_dir: &Path,
    files: &SslFiles,
) -> Result<Vec<(String, String)>, LocalPgError> {
    let cert = data_dir.join("server.crt");
    let key = data_dir.join("server.key");
    std::fs::copy(&files.cert, &cert).map_err(|e| LocalPgError::io("copy", &files.cert, e))?;
    std::fs::copy(&files.key, &key).map_err(|e| LocalPgError::io("copy", &files.key, e))?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| LocalPgError::io("chmod", &key, e))?;
    Ok(vec![
        ("ssl".into(), "on".into()),
        ("ssl_cert_file".into(), "server.crt".into()),
        ("ssl_key_file".into(), "server.key".into()),
    ])
}

/// `pg_hba.conf` for every server. Order matters: the first matching line wins.
pub(crate) const PG_HBA: &str = "\
# Written by shardgate localpg. The first matching line wins.
local all all                     trust
host  all postgres 127.0.0.1/32   trust
host  all md5user  127.0.0.1/32   md5
host  all all      127.0.0.1/32   scram-sha-256
";

/// The roles and database every server gets, run by the superuser after the first start.
/// `password_encryption` decides how a password is stored, hence the explicit settings.
pub(crate) const SETUP_SQL: &str = "\
SET password_encryption = 'scram-sha-256';
CREATE ROLE app LOGIN CREATEDB PASSWORD 'app';
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5pass';
RESET password_encryption;
CREATE DATABASE app OWNER app;
";

/// The settings of one server, in file order (later lines win, so extras come last).
pub(crate) fn server_settings(
    port: u16,
    socket_dir: &str,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let fixed = [
        ("listen_addresses", "127.0.0.1".to_string()),
        ("port", port.to_string()),
        ("unix_socket_directories", socket_dir.to_string()),
        ("max_prepared_transactions", "100".into()),
        ("wal_level", "logical".into()),
        ("max_wal_senders", "20".into()),
        ("max_replication_slots", "20".into()),
        // Resharding runs one subscription per (source, target) pair, and each copies its
        // tables with sync workers: the defaults (4 workers) stall a move with two sources.
        ("max_worker_processes", "32".into()),
        ("max_logical_replication_workers", "16".into()),
        ("max_sync_workers_per_subscription", "4".into()),
        ("max_connections", "400".into()),
        ("fsync", "off".into()),
        ("synchronous_commit", "off".into()),
        ("full_page_writes", "off".into()),
        ("shared_buffers", "64MB".into()),
        ("logging_collector", "off".into()),
    ];
    fixed
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(extra.iter().cloned())
        .collect()
}

/// Reject setting names that could smuggle other lines into `postgresql.conf`.
pub(crate) fn validate_names(settings: &[(String, String)]) -> Result<(), LocalPgError> {
    for (name, value) in settings {
        let ok_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !ok_name {
            return Err(LocalPgError::Options(format!("bad setting name {name:?}")));
        }
        if value.contains(['\n', '\r']) {
            return Err(LocalPgError::Options(format!(
                "setting {name} has a line break in its value"
            )));
        }
    }
    Ok(())
}

/// `name = 'value'` lines; quoting every value is valid for every setting type.
pub(crate) fn conf_lines(settings: &[(String, String)]) -> String {
    let mut text = String::from("\n# --- added by shardgate localpg (later lines win) ---\n");
    for (name, value) in settings {
        text.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
    }
    text
}

/// Append `settings` to `data_dir/postgresql.conf`.
pub(crate) fn append_conf(
    data_dir: &Path,
    settings: &[(String, String)],
) -> Result<(), LocalPgError> {
    let path = data_dir.join("postgresql.conf");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| LocalPgError::io("open", &path, e))?;
    file.write_all(conf_lines(settings).as_bytes())
        .map_err(|e| LocalPgError::io("write", &path, e))
}

/// Replace `data_dir/pg_hba.conf` with [`PG_HBA`].
pub(crate) fn write_hba(data_dir: &Path) -> Result<(), LocalPgError> {
    let path = data_dir.join("pg_hba.conf");
    std::fs::write(&path, PG_HBA).map_err(|e| LocalPgError::io("write", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_come_after_fixed_settings() {
        let s = server_settings(5433, "/tmp/r/sock", &[("work_mem".into(), "8MB".into())]);
        assert_eq!(s[1], ("port".to_string(), "5433".to_string()));
        assert_eq!(s.last(), Some(&("work_mem".to_string(), "8MB".to_string())));
        let text = conf_lines(&s);
        assert!(text.contains("wal_level = 'logical'\n"));
        assert!(text.contains("max_prepared_transactions = '100'\n"));
    }

    #[test]
    fn quotes_are_doubled_and_bad_names_rejected() {
        assert!(conf_lines(&[("x".into(), "it's".into())]).contains("x = 'it''s'"));
        assert!(validate_names(&[("a\nb".into(), "1".into())]).is_err());
        assert!(validate_names(&[("a".into(), "1\nport=1".into())]).is_err());
        assert!(validate_names(&[("auto_explain.log_min_duration".into(), "0".into())]).is_ok());
    }
}
