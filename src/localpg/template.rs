//! A freshly `initdb`-ed data directory to copy for each server, made once and cached.
//!
//! Owns the `initdb` invocation and the template cache. `initdb` costs about a second, a copy
//! a quarter of that, and the tests start one cluster per test binary, so the template is
//! kept across runs in `$TMPDIR/shardgate-initdb-<euid>/<version>-<hash>`. The cache is used
//! only when it is safe: its directory must be ours (owned by our euid, not a symlink, not
//! writable by group or others), and entries appear by an atomic `rename` of a finished build,
//! so concurrent test binaries never copy a half-written template. Anything odd falls back to
//! an uncached `initdb` under the cluster root. Setting `SHARDGATE_INITDB_CACHE=0` disables
//! the cache. This module deliberately writes no server settings: those are per server and
//! belong to the cluster.

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::LocalPgError;
use super::exec::Tools;

/// Bump when the `initdb` arguments change, so old cache entries are not reused.
const TEMPLATE_FORMAT: &str = "v1";

/// `initdb` arguments after `-D dir`. C collation: byte order, the same in every shard and
/// in the proxy's merge, whatever the machine's locale.
const INITDB_ARGS: &[&str] = &[
    "-U",
    "postgres",
    "--auth=trust",
    "-E",
    "UTF8",
    "--locale=C",
    "--no-instructions",
];

/// A data directory to copy from, and whether it is a cache entry (to be left alone) or a
/// private one under the cluster root (to be removed once copied).
#[derive(Debug)]
pub(crate) struct Template {
    pub(crate) dir: PathBuf,
    pub(crate) cached: bool,
}

/// Get a template: the cached one if possible, else a fresh `initdb` into `root/template`.
pub(crate) fn obtain(tools: &Tools, root: &Path) -> Result<Template, LocalPgError> {
    if let Some(dir) = cached(tools) {
        return Ok(Template { dir, cached: true });
    }
    let dir = root.join("template");
    initdb_into(tools, &dir, false)?;
    Ok(Template { dir, cached: false })
}

/// The cached template, building it if missing; `None` when caching is off or unsafe, or
/// the build failed (the caller then does an uncached `initdb` and reports its errors).
fn cached(tools: &Tools) -> Option<PathBuf> {
    if std::env::var("SHARDGATE_INITDB_CACHE").is_ok_and(|v| v == "0") {
        return None;
    }
    let base = cache_base()?;
    let version = tools.bins.version().ok()?;
    let entry = base.join(cache_key(&version, &tools.bins.bindir));
    if is_data_dir(&entry) {
        return Some(entry);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let build = base.join(format!("build-{}-{nanos}", std::process::id()));
    // The cache outlives this run, so it is synced to disk (no --no-sync) before it is
    // published by the rename.
    if initdb_into(tools, &build, true).is_err() {
        let _ = std::fs::remove_dir_all(&build);
        return None;
    }
    if std::fs::rename(&build, &entry).is_err() {
        // Another process published the same entry first; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&build);
    }
    is_data_dir(&entry).then_some(entry)
}

/// `$TMPDIR/shardgate-initdb-<euid>`, created 0755 if needed, if it is safely ours.
fn cache_base() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let base = std::env::temp_dir().join(format!("shardgate-initdb-{euid}"));
    // 0755 rather than 0700: as root, `initdb` runs as `postgres` and must reach its build
    // dir inside. Nobody but us can write here, which is what makes the entries trustworthy.
    match DirBuilder::new().mode(0o755).create(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let meta = std::fs::symlink_metadata(&base).ok()?;
    let safe = meta.is_dir() && meta.uid() == euid && meta.mode() & 0o022 == 0;
    safe.then_some(base)
}

/// `15.18-<hash>`: the version for people listing the dir, the hash for exactness.
fn cache_key(version_line: &str, bindir: &Path) -> String {
    let short: String = version_line
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("pg")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let identity = format!(
        "{TEMPLATE_FORMAT}\n{version_line}\n{}\n{}",
        bindir.display(),
        INITDB_ARGS.join(" ")
    );
    format!("{short}-{:016x}", fnv1a(identity.as_bytes()))
}

/// FNV-1a: a hash that stays the same across Rust releases, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn is_data_dir(dir: &Path) -> bool {
    dir.join("PG_VERSION").is_file() && dir.join("global").is_dir()
}

/// Run `initdb` into `dir`, which must not exist yet.
fn initdb_into(tools: &Tools, dir: &Path, sync: bool) -> Result<(), LocalPgError> {
    DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| LocalPgError::io("create directory", dir, e))?;
    tools.run_as.chown(dir)?;
    let mut args = vec!["-D".to_string(), dir.to_string_lossy().into_owned()];
    args.extend(INITDB_ARGS.iter().map(|a| a.to_string()));
    if !sync {
        args.push("--no-sync".into());
    }
    tools.run_pg("initdb", &args, None).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_is_stable_and_readable() {
        let line = "initdb (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)";
        let a = cache_key(line, Path::new("/usr/lib/postgresql/15/bin"));
        let b = cache_key(line, Path::new("/usr/lib/postgresql/15/bin"));
        let c = cache_key(line, Path::new("/opt/pg/bin"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("15.18-"), "{a}");
    }

    #[test]
    fn fnv_known_value() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
