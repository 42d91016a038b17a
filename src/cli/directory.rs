//! `shardgate directory get|set|move`: read and pin entries of a directory scheme (SPEC 4.3).
//!
//! Owns the subcommand's arguments, the checks against the config (the scheme exists and is a
//! directory scheme, the shard exists, the key parses as the scheme's key type) and the
//! canonical text keys are stored under. The catalog work itself is `catalog::Catalog`'s.
//! `move` moves the key's rows online with the resharding machinery (`crate::reshard`).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{runtime, CliError, DEFAULT_CONFIG};
use crate::catalog::Catalog;
use crate::config::{self, CatalogRef, Config, KeyType, Scheme, TableConfig};
use crate::router::KeyValue;

#[derive(Subcommand, Debug)]
pub enum DirectoryCommand {
    /// Print the shard a key is pinned to.
    #[command(
        after_help = "Example:\n  shardgate directory get -c config/directory.yaml by_tenant acme"
    )]
    Get {
        /// The configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// A directory scheme of the config.
        scheme: String,
        /// The key, as text; stored as Postgres prints it (bigint `007` -> `7`, uuid lowercase).
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Pin a key that has no rows yet to a shard.
    #[command(
        after_help = "Example:\n  shardgate directory set -c config/directory.yaml by_tenant acme s2"
    )]
    Set {
        /// The configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// A directory scheme of the config.
        scheme: String,
        /// The key, as text; stored as Postgres prints it (bigint `007` -> `7`, uuid lowercase).
        #[arg(allow_hyphen_values = true)]
        key: String,
        /// A shard of the config.
        shard: String,
    },
    /// Move every row of a key (in every table of its scheme) to another shard online, then
    /// switch its entry; resumes an interrupted move of the same key.
    #[command(
        after_help = "Example:\n  shardgate directory move -c config/directory.yaml by_tenant acme --to s2 --admin-user postgres"
    )]
    Move {
        /// The configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// A directory scheme of the config.
        scheme: String,
        /// The key, as text; stored as Postgres prints it (bigint `007` -> `7`, uuid lowercase).
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[arg(long)]
        /// The shard to move the key's rows to.
        to: String,
        /// The role for publications and subscriptions (REPLICATION; superuser on PostgreSQL
        /// 15); its password is read from SHARDGATE_ADMIN_PASSWORD.
        #[arg(long)]
        admin_user: Option<String>,
    },
}

pub fn run(command: DirectoryCommand) -> Result<(), CliError> {
    match command {
        DirectoryCommand::Get {
            config,
            scheme,
            key,
        } => {
            let (cfg, key) = resolve(&config, &scheme, &key)?;
            let shard = with_catalog(&cfg, |catalog| {
                let (scheme, key) = (scheme.clone(), key.clone());
                async move { catalog.directory_get(&scheme, &key).await }
            })?;
            match shard {
                Some(shard) => println!("{shard}"),
                None => {
                    let fallback = match cfg.schemes.get(&scheme) {
                        Some(Scheme::Directory(d)) => d.fallback.as_str(),
                        _ => "?",
                    };
                    println!("no entry: key {key} is routed by fallback scheme {fallback}");
                }
            }
            Ok(())
        }
        DirectoryCommand::Set {
            config,
            scheme,
            key,
            shard,
        } => {
            let (cfg, key) = resolve(&config, &scheme, &key)?;
            if cfg.shard_id(&shard).is_none() {
                return Err(CliError::Usage(format!(
                    "unknown shard \"{shard}\" (shards: {})",
                    shard_names(&cfg)
                )));
            }
            with_catalog(&cfg, |catalog| {
                let (scheme, key, shard) = (scheme.clone(), key.clone(), shard.clone());
                async move { catalog.directory_set(&scheme, &key, &shard).await }
            })?;
            println!("{scheme} {key} -> {shard}");
            Ok(())
        }
        DirectoryCommand::Move {
            config,
            scheme,
            key,
            to,
            admin_user,
        } => {
            let (cfg, key) = resolve(&config, &scheme, &key)?;
            if cfg.shard_id(&to).is_none() {
                return Err(CliError::Usage(format!("shard \"{to}\" is not in shards:")));
            }
            let opts = crate::reshard::Options {
                admin_user,
                progress: true,
                stop_at: None,
            };
            let out = runtime()?
                .block_on(crate::reshard::move_key(&cfg, &scheme, &key, &to, &opts))
                .map_err(CliError::Runtime)?;
            if out.job == 0 {
                println!("{scheme} {key} is already on {to}");
            } else {
                println!(
                    "{scheme} {key} -> {to}: {} rows moved in {:.1} s, cutover pause {:.0} ms",
                    out.rows_copied, out.copy_secs, out.pause_ms
                );
            }
            Ok(())
        }
    }
}

/// Load the config, check `scheme` is a directory scheme and return `key` as stored.
fn resolve(path: &Path, scheme: &str, key: &str) -> Result<(Config, String), CliError> {
    let cfg = config::load(path)?;
    match cfg.schemes.get(scheme) {
        Some(Scheme::Directory(_)) => {}
        Some(_) => {
            return Err(CliError::Usage(format!(
                "scheme \"{scheme}\" is not a directory scheme (its keys are placed by a \
                 function, not by entries)"
            )))
        }
        None => {
            let directories: Vec<&str> = cfg
                .schemes
                .iter()
                .filter(|(_, s)| matches!(s, Scheme::Directory(_)))
                .map(|(n, _)| n.as_str())
                .collect();
            return Err(CliError::Usage(format!(
                "unknown scheme \"{scheme}\" in {} (directory schemes: {})",
                path.display(),
                if directories.is_empty() {
                    "none".to_owned()
                } else {
                    directories.join(", ")
                }
            )));
        }
    }
    let key_type = key_type(&cfg, scheme)?;
    let key = canonical_key(key_type, key).map_err(CliError::Usage)?;
    Ok((cfg, key))
}

/// A directory scheme's key type is that of the tables using it; they must agree.
fn key_type(cfg: &Config, scheme: &str) -> Result<KeyType, CliError> {
    let users: Vec<(&str, KeyType)> = cfg
        .tables
        .iter()
        .filter_map(|(name, t)| match t {
            TableConfig::Sharded {
                scheme: s,
                key_type,
                ..
            } if s == scheme => Some((name.as_str(), *key_type)),
            _ => None,
        })
        .collect();
    let Some(&(_, first)) = users.first() else {
        return Err(CliError::Usage(format!(
            "no table uses scheme \"{scheme}\", so the type of its keys is unknown (add the \
             table to tables: first)"
        )));
    };
    if users.iter().any(|(_, t)| *t != first) {
        let list: Vec<String> = users
            .iter()
            .map(|(n, t)| format!("{n}: {}", type_name(*t)))
            .collect();
        return Err(CliError::Usage(format!(
            "the tables of scheme \"{scheme}\" disagree on the key type ({})",
            list.join(", ")
        )));
    }
    Ok(first)
}

fn type_name(t: KeyType) -> &'static str {
    match t {
        KeyType::Bigint => "bigint",
        KeyType::Text => "text",
        KeyType::Uuid => "uuid",
    }
}

/// The text a key is stored under: what Postgres prints for the value (`007` -> `7`; a uuid
/// lowercase and hyphenated), so the proxy finds the entry whatever spelling a client used.
fn canonical_key(key_type: KeyType, text: &str) -> Result<String, String> {
    let value = match key_type {
        KeyType::Text => KeyValue::Text(text.to_owned()),
        KeyType::Bigint => text
            .trim()
            .parse::<i64>()
            .map(KeyValue::Int)
            .map_err(|_| format!("key \"{text}\" is not a bigint"))?,
        KeyType::Uuid => crate::pgtext::parse_uuid(text)
            .map(KeyValue::Uuid)
            .ok_or_else(|| format!("key \"{text}\" is not a uuid"))?,
    };
    Ok(value.canonical_text())
}

fn shard_names(cfg: &Config) -> String {
    cfg.shards
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Connect to the config's catalog, make sure its schema exists, and run `work`.
fn with_catalog<T, F, Fut>(cfg: &Config, work: F) -> Result<T, CliError>
where
    F: FnOnce(Catalog) -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::catalog::CatalogError>>,
{
    let target = match &cfg.catalog {
        CatalogRef::Shard(i) => cfg
            .shards
            .get(*i)
            .map(|s| s.target.clone())
            .ok_or_else(|| CliError::Usage("catalog: no such shard".into()))?,
        CatalogRef::Url(t) => t.clone(),
    };
    let timeout = cfg.pool.connect_timeout;
    runtime()?
        .block_on(async move {
            let catalog = Catalog::connect(&target, timeout).await?;
            catalog.ensure_schema().await?;
            work(catalog).await
        })
        .map_err(|e| CliError::Runtime(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_as_postgres_prints_them() {
        let ok = |t, s: &str| canonical_key(t, s).unwrap();
        assert_eq!(ok(KeyType::Bigint, "007"), "7");
        assert_eq!(ok(KeyType::Bigint, " -42 "), "-42");
        assert_eq!(ok(KeyType::Text, " Acme "), " Acme ");
        let u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        assert_eq!(ok(KeyType::Uuid, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), u);
        assert_eq!(
            ok(KeyType::Uuid, "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}"),
            u
        );
        assert_eq!(ok(KeyType::Uuid, "a0eebc999c0b4ef8bb6d6bb9bd380a11"), u);
        assert_eq!(
            ok(KeyType::Uuid, "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11"),
            u
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        for (t, s) in [
            (KeyType::Bigint, "7a"),
            (KeyType::Bigint, "99999999999999999999"),
            (KeyType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"),
            (KeyType::Uuid, "-a0eebc999c0b4ef8bb6d6bb9bd380a11"),
            (KeyType::Uuid, "a0eebc999c0b4ef8bb6d6bb9bd380a11-"),
            (KeyType::Uuid, "a0e-ebc999c0b4ef8bb6d6bb9bd380a11"),
            (KeyType::Uuid, "{a0eebc999c0b4ef8bb6d6bb9bd380a11"),
        ] {
            assert!(canonical_key(t, s).is_err(), "{s} accepted as {t:?}");
        }
    }
}
