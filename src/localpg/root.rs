//! The cluster's root directory: claiming it, marking it as ours, and its socket directory.
//!
//! Owns the rule that `localpg` only ever deletes a directory it created: a root carries an
//! owner file (`.localpg-owner`) with a token unique to the cluster that made it. A root with
//! that file is a leftover of an earlier cluster and may be cleaned; a non-empty root without
//! it is refused. It deliberately does not create data directories or start servers.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::error::LocalPgError;
use super::exec::{RunAs, Tools};
use super::server::path_arg;

/// Marks a root as created by `localpg`; holds the creator's token for the watchdog.
pub(crate) const OWNER_FILE: &str = ".localpg-owner";

/// Unix socket paths must fit `sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Make `root` an empty directory we own. A root left by an earlier cluster (it has the
/// owner file) has its servers stopped and is removed; anything else non-empty is refused.
pub(crate) fn claim_root(tools: &Tools, root: &Path) -> Result<(), LocalPgError> {
    if root.join(OWNER_FILE).is_file() {
        stop_leftovers(tools, root);
        std::fs::remove_dir_all(root).map_err(|e| LocalPgError::io("remove", root, e))?;
    } else if let Ok(mut entries) = std::fs::read_dir(root) {
        if entries.next().is_some() {
            return Err(LocalPgError::ForeignRoot(root.to_path_buf()));
        }
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(root)
        .map_err(|e| LocalPgError::io("create directory", root, e))?;
    check_reachable(tools, root)
}

/// As root, the servers run as `postgres`, which must be able to reach `root`: a parent
/// directory of mode 0700 (root's home, a `mktemp -d` dir) would make `pg_ctl` fail with a
/// bare "Permission denied". Say what is wrong instead.
fn check_reachable(tools: &Tools, root: &Path) -> Result<(), LocalPgError> {
    if tools.run_as == RunAs::Me {
        return Ok(());
    }
    let reachable = tools
        .run_as
        .command(Path::new("test"), &["-x".to_owned(), path_arg(root)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if reachable {
        Ok(())
    } else {
        Err(LocalPgError::Options(format!(
            "the OS user postgres (which runs the servers when started as root) cannot reach {}: \
             a parent directory is not searchable by it (mode 0700?); run from a directory it \
             can read, for example under /tmp or /srv",
            root.display()
        )))
    }
}

/// Stop servers still running from an earlier cluster in `root` (after a crash of its
/// creator with no watchdog). Best effort: removal reports what really matters.
fn stop_leftovers(tools: &Tools, root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let dir = entry.path();
        if dir.join("postmaster.pid").is_file() {
            let args = ["stop", "-D", &path_arg(&dir), "-m", "immediate", "-w"].map(String::from);
            let _ = tools.run_pg("pg_ctl", &args, None);
        }
    }
}

/// A random-enough token: the watchdog acts only while the owner file still holds it.
pub(crate) fn owner_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// `root/sock`, or `""` (no unix socket, TCP only) when socket paths there would be too long.
pub(crate) fn socket_dir(root: &Path) -> Result<String, LocalPgError> {
    let dir = root.join("sock");
    let longest_socket = path_arg(&dir).len() + "/.s.PGSQL.65535".len();
    if longest_socket > MAX_SOCKET_PATH {
        return Ok(String::new());
    }
    DirBuilder::new()
        .mode(0o755)
        .create(&dir)
        .map_err(|e| LocalPgError::io("create directory", &dir, e))?;
    Ok(path_arg(&dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_roots_get_no_unix_socket() {
        let long = std::path::PathBuf::from(format!("/tmp/{}", "d".repeat(100)));
        assert_eq!(socket_dir(&long).ok(), Some(String::new()));
    }

    #[test]
    fn foreign_non_empty_roots_are_refused() {
        let dir = std::env::temp_dir().join(format!("sg-foreign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create test dir");
        std::fs::write(dir.join("precious"), "data").expect("write test file");
        let tools = Tools {
            bins: super::super::PgBinaries::in_dir("/nonexistent"),
            run_as: super::super::exec::RunAs::Me,
        };
        let err = claim_root(&tools, &dir).expect_err("must refuse");
        assert!(matches!(err, LocalPgError::ForeignRoot(_)), "{err}");
        assert!(dir.join("precious").exists());
        std::fs::remove_dir_all(&dir).expect("remove test dir");
    }
}
