//! Raw YAML shape -> validated [`Config`]: defaults, cross-references and every rule of SPEC
//! section 3 that can be checked without reaching a server.
//!
//! This file owns the order of the checks, the defaults, and the small top-level sections
//! (`listen`, `database`, `pool`, `twopc`, `limits`, `tls`, `log_level`). The larger sections
//! have a file each: `targets` (shards, catalog), `users`, `schemes`, `tables`. Validation
//! stops at the first problem, in roughly file order, and reports it with its key path. No IO
//! happens here.

mod schemes;
mod tables;
mod targets;
mod users;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawConfig, RawLimits, RawPool, RawPoolMode, RawTls, RawTwoPc, Scalar};
use super::units::{parse_duration, parse_size};
use super::Problem;
use super::{Config, LimitsConfig, PoolConfig, PoolMode, ShardConfig, TlsConfig, TwoPcConfig};

pub(super) const DEFAULT_LISTEN: &str = "127.0.0.1:6432";
/// The database name of the admin console (SPEC section 9); clients cannot shard into it.
pub(super) const ADMIN_DATABASE: &str = "shardgate";
const DEFAULT_POOL_SIZE: u64 = 20;
const DEFAULT_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_ORPHAN_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_MERGE_ROWS: u64 = 1_000_000;
const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;
const MIN_MAX_MESSAGE_SIZE: u64 = 1 << 10;
/// Postgres itself refuses messages of 1 GiB and more.
const MAX_MAX_MESSAGE_SIZE: u64 = 1 << 30;

pub(super) fn validate(raw: RawConfig, source: &Path) -> Result<Config, Problem> {
    let shards = targets::shards(raw.shards)?;
    let listen = socket_addr("listen", raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
    let metrics_listen = match raw.metrics_listen.as_deref() {
        None => None,
        Some(text) => Some(socket_addr("metrics_listen", text)?),
    };
    if metrics_listen == Some(listen) && listen.port() != 0 {
        return Err(Problem::new("metrics_listen", "same address as listen"));
    }
    let database = database(raw.database, &shards)?;
    let auth_method = users::auth_method(raw.auth_method);
    let users = users::users(raw.users.unwrap_or_default(), auth_method)?;
    let admin = users::admin(raw.admin, &users, auth_method)?;
    let pool = pool(raw.pool)?;
    let catalog = targets::catalog(raw.catalog.as_deref(), &shards)?;
    let default_shard = match raw.default_shard.as_deref() {
        None => 0,
        Some(name) => targets::lookup(&shards, name, "default_shard")?,
    };
    let schemes = schemes::schemes(raw.schemes, &shards)?;
    let tables = tables::tables(raw.tables, &schemes)?;
    let twopc = twopc(raw.twopc)?;
    let limits = limits(raw.limits)?;
    let tls = tls(raw.tls, source)?;
    let log_level = log_level(raw.log_level)?;
    Ok(Config {
        source: source.to_path_buf(),
        listen,
        metrics_listen,
        database,
        admin,
        auth_method,
        users,
        pool,
        shards,
        catalog,
        default_shard,
        schemes,
        tables,
        twopc,
        limits,
        tls,
        log_level,
    })
}

/// Names of shards and schemes end up in metrics labels, catalog rows, CLI arguments and
/// 2PC transaction ids; a tame alphabet keeps them unambiguous there (and keeps a shard name
/// from ever looking like a `postgres://` URL in `catalog:`).
pub(super) fn valid_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} name is empty"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "{what} name \"{name}\" may contain only letters, digits, _ and -"
        ));
    }
    Ok(())
}

fn socket_addr(key: &str, text: &str) -> Result<SocketAddr, Problem> {
    text.trim().parse().map_err(|_| {
        Problem::new(
            key,
            format!(
                "\"{text}\" is not an IP address and port (for example 127.0.0.1:6432 or \"[::1]:6432\")"
            ),
        )
    })
}

fn database(raw: Option<String>, shards: &[ShardConfig]) -> Result<String, Problem> {
    match raw {
        Some(name) if name.is_empty() => Err(Problem::new("database", "database name is empty")),
        Some(name) if name == ADMIN_DATABASE => Err(Problem::new(
            "database",
            "\"shardgate\" is reserved for the admin console; choose another name",
        )),
        Some(name) => Ok(name),
        None => {
            // Validated before: there is at least one shard.
            let name = shards[0].target.dbname.clone();
            if name == ADMIN_DATABASE {
                return Err(Problem::new(
                    "database",
                    "not set, and its default, the first shard's dbname \"shardgate\", is \
                     reserved for the admin console; set database: to another name",
                ));
            }
            Ok(name)
        }
    }
}

fn duration(key: &str, value: Option<&Scalar>, default: Duration) -> Result<Duration, Problem> {
    value.map_or(Ok(default), |v| {
        parse_duration(v).map_err(|r| Problem::new(key, r))
    })
}

fn positive_duration(
    key: &str,
    value: Option<&Scalar>,
    default: Duration,
) -> Result<Duration, Problem> {
    let d = duration(key, value, default)?;
    if d.is_zero() {
        return Err(Problem::new(key, "must be longer than 0"));
    }
    Ok(d)
}

fn pool(raw: Option<RawPool>) -> Result<PoolConfig, Problem> {
    let p = raw.unwrap_or(RawPool {
        mode: None,
        size: None,
        checkout_timeout: None,
        connect_timeout: None,
        idle_timeout: None,
    });
    let size = p.size.unwrap_or(DEFAULT_POOL_SIZE);
    let size = match u32::try_from(size) {
        Ok(0) => return Err(Problem::new("pool.size", "must be at least 1")),
        Ok(n) => n,
        Err(_) => return Err(Problem::new("pool.size", format!("{size} is too large"))),
    };
    Ok(PoolConfig {
        mode: match p.mode {
            None | Some(RawPoolMode::Transaction) => PoolMode::Transaction,
            Some(RawPoolMode::Session) => PoolMode::Session,
        },
        size,
        checkout_timeout: positive_duration(
            "pool.checkout_timeout",
            p.checkout_timeout.as_ref(),
            DEFAULT_CHECKOUT_TIMEOUT,
        )?,
        connect_timeout: positive_duration(
            "pool.connect_timeout",
            p.connect_timeout.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
        )?,
        idle_timeout: duration(
            "pool.idle_timeout",
            p.idle_timeout.as_ref(),
            DEFAULT_IDLE_TIMEOUT,
        )?,
    })
}

fn twopc(raw: Option<RawTwoPc>) -> Result<TwoPcConfig, Problem> {
    let (enabled, orphan) = raw.map_or((None, None), |t| (t.enabled, t.orphan_timeout));
    Ok(TwoPcConfig {
        enabled: enabled.unwrap_or(true),
        orphan_timeout: positive_duration(
            "twopc.orphan_timeout",
            orphan.as_ref(),
            DEFAULT_ORPHAN_TIMEOUT,
        )?,
    })
}

fn limits(raw: Option<RawLimits>) -> Result<LimitsConfig, Problem> {
    let l = raw.unwrap_or(RawLimits {
        max_shards_per_query: None,
        fanout_budget_per_minute: None,
        max_merge_rows: None,
        max_message_size: None,
    });
    let small = |key: &str, v: Option<u64>| {
        u32::try_from(v.unwrap_or(0))
            .map_err(|_| Problem::new(key, format!("must be at most {}", u32::MAX)))
    };
    let max_merge_rows = l.max_merge_rows.unwrap_or(DEFAULT_MAX_MERGE_ROWS);
    if max_merge_rows == 0 {
        return Err(Problem::new(
            "limits.max_merge_rows",
            "must be at least 1 (a merge buffers rows, so it has no \"no limit\")",
        ));
    }
    let key = "limits.max_message_size";
    let size = match &l.max_message_size {
        None => DEFAULT_MAX_MESSAGE_SIZE,
        Some(v) => parse_size(v).map_err(|r| Problem::new(key, r))?,
    };
    if !(MIN_MAX_MESSAGE_SIZE..=MAX_MAX_MESSAGE_SIZE).contains(&size) {
        return Err(Problem::new(
            key,
            format!("{size} bytes is outside 1KiB-1GiB (sizes without a unit are bytes: 64MiB)"),
        ));
    }
    Ok(LimitsConfig {
        max_shards_per_query: small("limits.max_shards_per_query", l.max_shards_per_query)?,
        fanout_budget_per_minute: small(
            "limits.fanout_budget_per_minute",
            l.fanout_budget_per_minute,
        )?,
        max_merge_rows,
        // At most 1 GiB, checked above.
        max_message_size: size as usize,
    })
}

/// Relative certificate paths are read from the config file's directory, so the file works
/// wherever the proxy is started from.
fn tls(raw: Option<RawTls>, source: &Path) -> Result<Option<TlsConfig>, Problem> {
    let Some(t) = raw else { return Ok(None) };
    let base = source.parent().unwrap_or(Path::new(""));
    let resolve = |key: &str, p: &str| -> Result<PathBuf, Problem> {
        if p.is_empty() {
            return Err(Problem::new(key, "path is empty"));
        }
        Ok(base.join(p))
    };
    Ok(Some(TlsConfig {
        cert: resolve("tls.cert", &t.cert)?,
        key: resolve("tls.key", &t.key)?,
        require: t.require.unwrap_or(false),
    }))
}

fn log_level(raw: Option<String>) -> Result<Option<String>, Problem> {
    let Some(text) = raw else { return Ok(None) };
    tracing_subscriber::EnvFilter::try_new(&text)
        .map_err(|e| Problem::new("log_level", format!("invalid filter \"{text}\": {e}")))?;
    Ok(Some(text))
}
