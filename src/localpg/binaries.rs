//! Finding the PostgreSQL server binaries (`initdb`, `pg_ctl`, `psql`, ...) on this machine.
//!
//! Owns the search order of SPEC 14: `pg_config --bindir` when that directory holds `initdb`
//! and `pg_ctl`, else the highest version under `/usr/lib/postgresql/*/bin`. It deliberately
//! does not look at `PATH` for the server tools: Debian's `/usr/bin` only has wrapper scripts
//! for the client tools, and mixing versions would make `initdb` and `postgres` disagree.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::LocalPgError;

/// Where Debian and Ubuntu put each installed major version.
const DEBIAN_LIB_DIR: &str = "/usr/lib/postgresql";

/// A directory holding a matching set of PostgreSQL programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    pub bindir: PathBuf,
}

impl PgBinaries {
    /// Find the binaries; the error names every place that was tried.
    pub fn find() -> Result<PgBinaries, LocalPgError> {
        let mut tried = Vec::new();
        match pg_config_bindir() {
            Ok(dir) => {
                if has_server_tools(&dir) {
                    return Ok(PgBinaries { bindir: dir });
                }
                tried.push(format!(
                    "`pg_config --bindir` = {} (no initdb/pg_ctl there)",
                    dir.display()
                ));
            }
            Err(why) => tried.push(format!("`pg_config --bindir` ({why})")),
        }
        match highest_debian_bindir(Path::new(DEBIAN_LIB_DIR)) {
            Some(dir) => Ok(PgBinaries { bindir: dir }),
            None => {
                tried.push(format!(
                    "{DEBIAN_LIB_DIR}/*/bin (no version with initdb and pg_ctl)"
                ));
                Err(LocalPgError::BinariesNotFound {
                    tried: tried.join("; "),
                })
            }
        }
    }

    /// Use a known directory (for callers that have their own way of finding one).
    pub fn in_dir(bindir: impl Into<PathBuf>) -> PgBinaries {
        PgBinaries {
            bindir: bindir.into(),
        }
    }

    /// Path of the program `name` (`initdb`, `pg_ctl`, `psql`, `pgbench`, ...) in `bindir`.
    /// It may not exist: client tools such as `pgbench` ship in separate packages.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    /// The first line of `initdb --version`, e.g. `initdb (PostgreSQL) 15.18 (Debian ...)`.
    pub fn version(&self) -> Result<String, LocalPgError> {
        let initdb = self.bin("initdb");
        let out = Command::new(&initdb)
            .arg("--version")
            .output()
            .map_err(|e| LocalPgError::io("run", &initdb, e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().next() {
            Some(line) if out.status.success() && !line.trim().is_empty() => {
                Ok(line.trim().to_string())
            }
            _ => Err(LocalPgError::Command {
                command: format!("{} --version", initdb.display()),
                status: out.status.to_string(),
                stderr_tail: super::error::tail(&String::from_utf8_lossy(&out.stderr)),
                log_file: None,
                log_tail: String::new(),
            }),
        }
    }
}

fn has_server_tools(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// `pg_config --bindir`, or a short reason why it gave nothing.
fn pg_config_bindir() -> Result<PathBuf, String> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|e| format!("not runnable: {e}"))?;
    if !out.status.success() {
        return Err(format!("{}", out.status));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        return Err("empty output".into());
    }
    Ok(PathBuf::from(dir))
}

/// The `bin` dir of the highest version under `lib_dir` that has the server tools.
fn highest_debian_bindir(lib_dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(lib_dir).ok()?;
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = version_key(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            has_server_tools(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// `"15"` -> `[15]`, `"9.6"` -> `[9, 6]`; anything not numeric is not a version dir.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.')
        .map(|part| part.parse::<u32>().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_order_numerically() {
        assert!(version_key("10") > version_key("9.6"));
        assert!(version_key("16") > version_key("15"));
        assert_eq!(version_key("common"), None);
    }

    #[test]
    fn highest_version_with_tools_wins() {
        let dir = std::env::temp_dir().join(format!("sg-bins-{}", std::process::id()));
        for (version, complete) in [("9.6", true), ("14", true), ("16", false), ("x", true)] {
            let bin = dir.join(version).join("bin");
            std::fs::create_dir_all(&bin).expect("create test dir");
            std::fs::write(bin.join("initdb"), "").expect("write test file");
            if complete {
                std::fs::write(bin.join("pg_ctl"), "").expect("write test file");
            }
        }
        assert_eq!(
            highest_debian_bindir(&dir),
            Some(dir.join("14").join("bin"))
        );
        std::fs::remove_dir_all(&dir).expect("remove test dir");
    }
}
