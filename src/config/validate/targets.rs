//! Shards and the catalog: connection URLs -> [`PgTarget`], shard names -> [`ShardId`].
//!
//! Owns the rules for `shards:`, `catalog:` and shard-name lookups used by the other
//! validators. URL syntax itself is `tokio_postgres::Config`'s; this file only decides which of
//! its results shardgate can use. It never connects: reaching a shard is `shardgate check`'s
//! job. Reasons never quote a URL, since URLs carry passwords.

use std::error::Error as _;
use std::str::FromStr;

use tokio_postgres::config::{Host, SslMode as PgSslMode};

use super::{valid_name, Problem};
use crate::config::raw::RawShard;
use crate::config::{CatalogRef, PgTarget, ShardConfig, ShardId, SslMode};

const URL_SHAPE: &str = "postgres://user:password@host:port/dbname";

/// Validate `shards:`: at least one, names unique and well formed, URLs usable.
pub(super) fn shards(raw: Option<Vec<RawShard>>) -> Result<Vec<ShardConfig>, Problem> {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        return Err(Problem::new("shards", "at least one shard is required"));
    }
    let mut out: Vec<ShardConfig> = Vec::with_capacity(raw.len());
    for (i, shard) in raw.into_iter().enumerate() {
        valid_name(&shard.name, "shard")
            .map_err(|r| Problem::new(format!("shards[{i}].name"), r))?;
        if let Some(first) = out.iter().position(|s| s.name == shard.name) {
            return Err(Problem::new(
                format!("shards[{i}].name"),
                format!(
                    "duplicate shard name \"{}\" (also shards[{first}])",
                    shard.name
                ),
            ));
        }
        let target =
            parse_target(&shard.url).map_err(|r| Problem::new(format!("shards[{i}].url"), r))?;
        out.push(ShardConfig {
            name: shard.name,
            target,
        });
    }
    Ok(out)
}

/// `catalog:` is a shard name or a `postgres://` URL; absent, it is the first shard.
pub(super) fn catalog(raw: Option<&str>, shards: &[ShardConfig]) -> Result<CatalogRef, Problem> {
    match raw {
        None => Ok(CatalogRef::Shard(0)),
        Some(text) if is_url(text) => parse_target(text)
            .map(CatalogRef::Url)
            .map_err(|r| Problem::new("catalog", r)),
        Some(name) => lookup(shards, name, "catalog").map(CatalogRef::Shard),
    }
}

/// Resolve a shard name written at `key_path`.
pub(super) fn lookup(
    shards: &[ShardConfig],
    name: &str,
    key_path: &str,
) -> Result<ShardId, Problem> {
    shards
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| Problem::new(key_path, format!("unknown shard \"{name}\"")))
}

fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// Parse one connection URL into the fields shardgate connects with.
pub(super) fn parse_target(url: &str) -> Result<PgTarget, String> {
    if !is_url(url) {
        return Err(format!("expected a postgres:// URL ({URL_SHAPE})"));
    }
    let config = tokio_postgres::Config::from_str(url).map_err(|e| match e.source() {
        Some(cause) => format!("invalid URL: {cause}"),
        None => format!("invalid URL: {e}"),
    })?;
    let host = match config.get_hosts() {
        [] => return Err(format!("the URL names no host ({URL_SHAPE})")),
        [Host::Tcp(host)] => host.clone(),
        [Host::Unix(_)] => {
            return Err(
                "unix socket paths are not supported; give a TCP host name or address".into(),
            )
        }
        [_, ..] => return Err("the URL names several hosts; give one host per shard".into()),
    };
    let port = match config.get_ports() {
        [] => 5432,
        [port] => *port,
        [_, ..] => return Err("the URL names several ports; give one port per shard".into()),
    };
    let user = match config.get_user() {
        Some(user) if !user.is_empty() => user.to_owned(),
        _ => return Err(format!("the URL names no user ({URL_SHAPE})")),
    };
    let password = match config.get_password() {
        None => None,
        Some(bytes) => Some(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| "the password in the URL is not valid UTF-8".to_owned())?,
        ),
    };
    let dbname = match config.get_dbname() {
        Some(db) if !db.is_empty() => db.to_owned(),
        _ => user.clone(),
    };
    let sslmode = match config.get_ssl_mode() {
        PgSslMode::Disable => SslMode::Disable,
        PgSslMode::Prefer => SslMode::Prefer,
        PgSslMode::Require => SslMode::Require,
        _ => return Err("unsupported sslmode (expected disable, prefer or require)".into()),
    };
    if let Some(param) = unsupported_parameter(&config) {
        return Err(param);
    }
    Ok(PgTarget {
        url: url.to_owned(),
        host,
        port,
        dbname,
        user,
        password,
        sslmode,
    })
}

/// The URL parser understands more libpq parameters than shardgate's connections honour;
/// refuse those rather than ignore them silently. A parameter set to its default value cannot
/// be told apart from an absent one, which is harmless.
fn unsupported_parameter(config: &tokio_postgres::Config) -> Option<String> {
    let default = tokio_postgres::Config::new();
    let checks: [(&str, bool, &str); 13] = [
        (
            "hostaddr",
            !config.get_hostaddrs().is_empty(),
            "put the address in the host part",
        ),
        (
            "options",
            config.get_options().is_some(),
            "set server parameters with ALTER ROLE or ALTER DATABASE",
        ),
        (
            "application_name",
            config.get_application_name().is_some(),
            "shardgate names its own connections",
        ),
        (
            "connect_timeout",
            config.get_connect_timeout().is_some(),
            "use pool.connect_timeout",
        ),
        (
            "tcp_user_timeout",
            config.get_tcp_user_timeout().is_some(),
            "not used by shardgate",
        ),
        (
            "keepalives",
            config.get_keepalives() != default.get_keepalives(),
            "not used by shardgate",
        ),
        (
            "keepalives_idle",
            config.get_keepalives_idle() != default.get_keepalives_idle(),
            "not used by shardgate",
        ),
        (
            "keepalives_interval",
            config.get_keepalives_interval().is_some(),
            "not used by shardgate",
        ),
        (
            "keepalives_retries",
            config.get_keepalives_retries().is_some(),
            "not used by shardgate",
        ),
        (
            "target_session_attrs",
            config.get_target_session_attrs() != default.get_target_session_attrs(),
            "each shard is one primary",
        ),
        (
            "channel_binding",
            config.get_channel_binding() != default.get_channel_binding(),
            "not used by shardgate",
        ),
        (
            "load_balance_hosts",
            config.get_load_balance_hosts() != default.get_load_balance_hosts(),
            "each shard has one host",
        ),
        (
            "sslnegotiation",
            config.get_ssl_negotiation() != default.get_ssl_negotiation(),
            "not used by shardgate",
        ),
    ];
    checks
        .iter()
        .find(|(_, set, _)| *set)
        .map(|(name, _, hint)| format!("URL parameter {name} is not supported ({hint})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_parse() {
        let t = parse_target("postgres://app:secret@db1.internal:5433/app?sslmode=require")
            .expect("valid URL");
        assert_eq!(
            (t.host.as_str(), t.port, t.dbname.as_str(), t.user.as_str()),
            ("db1.internal", 5433, "app", "app")
        );
        assert_eq!(t.password.as_deref(), Some("secret"));
        assert_eq!(t.sslmode, SslMode::Require);
        assert_eq!(t.redacted_url(), "postgres://app@db1.internal:5433/app");

        let t = parse_target("postgresql://alice@10.0.0.7").expect("valid URL");
        assert_eq!(
            (t.port, t.dbname.as_str(), t.password.as_deref()),
            (5432, "alice", None)
        );
        assert_eq!(t.sslmode, SslMode::Prefer);

        let t = parse_target("postgres://u:p%40ss@[::1]:6000/d?sslmode=disable").expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("::1", 6000));
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!(t.sslmode, SslMode::Disable);
    }

    #[test]
    fn urls_that_fail() {
        let cases = [
            ("host=localhost user=app", "expected a postgres:// URL (postgres://user:password@host:port/dbname)"),
            ("postgres://app@localhost:port/app", "invalid URL: invalid value for option `port`"),
            ("postgres://app@localhost/app?sslmode=verify-full", "invalid URL: invalid value for option `sslmode`"),
            ("postgres://app@localhost/app?color=blue", "invalid URL: unknown option `color`"),
            ("postgres:///app?user=app", "the URL names no host (postgres://user:password@host:port/dbname)"),
            ("postgres://app@%2Ftmp/app", "unix socket paths are not supported; give a TCP host name or address"),
            ("postgres://app@h1,h2/app", "the URL names several hosts; give one host per shard"),
            ("postgres://localhost/app", "the URL names no user (postgres://user:password@host:port/dbname)"),
            ("postgres://app@localhost/app?connect_timeout=3", "URL parameter connect_timeout is not supported (use pool.connect_timeout)"),
            ("postgres://app@localhost/app?options=-c%20x%3D1", "URL parameter options is not supported (set server parameters with ALTER ROLE or ALTER DATABASE)"),
        ];
        for (url, want) in cases {
            assert_eq!(parse_target(url), Err(want.to_owned()), "{url}");
        }
    }
}
