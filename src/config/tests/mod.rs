//! Whole-file tests of `config::parse`: the SPEC example and the defaults (here), other good
//! files (`accepts.rs`), and bad files with their exact messages (`rejects.rs`).
//!
//! Unit tests of single pieces (durations, URLs, passwords) live beside their code.

mod accepts;
mod rejects;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// Two shards, enough for most cases; tests append the section they exercise.
const SHARDS: &str = r#"
shards:
  - { name: s0, url: "postgres://app:app@127.0.0.1:5433/app" }
  - { name: s1, url: "postgres://app:app@127.0.0.1:5434/app" }
"#;

fn source() -> &'static Path {
    Path::new("config/shardgate.yaml")
}

fn parse_ok(text: &str) -> Config {
    match parse(text, source()) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got: {e}\n{text}"),
    }
}

fn hash(config: &Config, name: &str) -> HashScheme {
    match config.schemes.get(name) {
        Some(Scheme::Hash(h)) => h.clone(),
        other => panic!("{name} is not a hash scheme: {other:?}"),
    }
}

/// `map` as runs `(first, last, shard)`, easier to compare than 1024 entries.
fn runs(map: &[ShardId]) -> Vec<(usize, usize, ShardId)> {
    let mut out: Vec<(usize, usize, ShardId)> = Vec::new();
    for (bucket, &shard) in map.iter().enumerate() {
        match out.last_mut() {
            Some(run) if run.2 == shard => run.1 = bucket,
            _ => out.push((bucket, bucket, shard)),
        }
    }
    out
}

#[test]
fn spec_example_loads_as_it_stands() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/shardgate.yaml");
    let c = load(&path).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(c.source, path);
    assert_eq!(c.listen.to_string(), "127.0.0.1:6432");
    assert_eq!(
        c.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9930")
    );
    assert_eq!(c.database, "app", "defaults to the first shard's dbname");
    assert_eq!(
        c.admin,
        Some(AdminConfig {
            user: "admin".into(),
            password: "admin".into()
        })
    );
    assert_eq!(c.auth_method, AuthMethod::ScramSha256);
    assert_eq!(
        c.users,
        vec![UserConfig {
            name: "app".into(),
            password: Password::Plain("app".into())
        }]
    );
    assert_eq!(
        c.pool,
        PoolConfig {
            mode: PoolMode::Transaction,
            size: 20,
            checkout_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
        }
    );

    let names: Vec<&str> = c.shards.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["s0", "s1"]);
    let s1 = &c.shards[1].target;
    assert_eq!(
        (
            s1.host.as_str(),
            s1.port,
            s1.dbname.as_str(),
            s1.user.as_str(),
            s1.password.as_deref()
        ),
        ("127.0.0.1", 5434, "app", "app", Some("app"))
    );
    assert_eq!(s1.sslmode, SslMode::Prefer);
    assert_eq!(c.catalog, CatalogRef::Shard(0));
    assert_eq!(c.default_shard, 0);

    let by_user = hash(&c, "by_user");
    assert_eq!(by_user.function, HashFunction::Postgres);
    assert_eq!(by_user.buckets, 1024);
    assert_eq!(by_user.shards, vec![0, 1]);
    assert_eq!(runs(&by_user.map), vec![(0, 511, 0), (512, 1023, 1)]);

    assert_eq!(
        c.schemes.get("by_event"),
        Some(&Scheme::Range(RangeScheme {
            ranges: vec![
                RangeEntry {
                    below: Some(RangeBound::Int(1_000_000)),
                    shard: 0
                },
                RangeEntry {
                    below: None,
                    shard: 1
                },
            ]
        }))
    );
    assert_eq!(
        c.schemes.get("by_org"),
        Some(&Scheme::Directory(DirectoryScheme {
            fallback: "by_user".into()
        }))
    );

    let sharded = |scheme: &str, key: &str, key_type| TableConfig::Sharded {
        scheme: scheme.into(),
        key: key.into(),
        key_type,
    };
    let want = [
        ("comments", sharded("by_user", "user_id", KeyType::Bigint)),
        ("countries", TableConfig::Reference),
        ("events", sharded("by_event", "id", KeyType::Bigint)),
        ("orgs", sharded("by_org", "org_id", KeyType::Text)),
        ("posts", sharded("by_user", "user_id", KeyType::Bigint)),
        ("users", sharded("by_user", "id", KeyType::Bigint)),
    ];
    let got: Vec<(&str, TableConfig)> = c
        .tables
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    assert_eq!(
        got,
        want.iter()
            .map(|(n, t)| (*n, t.clone()))
            .collect::<Vec<_>>()
    );

    assert_eq!(
        c.twopc,
        TwoPcConfig {
            enabled: true,
            orphan_timeout: Duration::from_secs(60)
        }
    );
    assert_eq!(
        c.limits,
        LimitsConfig {
            max_shards_per_query: 0,
            fanout_budget_per_minute: 0,
            max_merge_rows: 1_000_000,
            max_message_size: 64 << 20,
        }
    );
    assert_eq!(c.tls, None);
    assert_eq!(c.log_level, None);
}

#[test]
fn a_file_with_only_shards_gets_every_default() {
    let c = parse_ok(SHARDS);
    assert_eq!(c.listen.to_string(), "127.0.0.1:6432");
    assert_eq!(c.metrics_listen, None);
    assert_eq!(c.database, "app");
    assert_eq!(c.admin, None);
    assert_eq!(c.auth_method, AuthMethod::ScramSha256);
    assert!(c.users.is_empty() && c.schemes.is_empty() && c.tables.is_empty());
    assert_eq!(c.pool.size, 20);
    assert_eq!(c.pool.idle_timeout, Duration::from_secs(600));
    assert_eq!(
        (c.catalog.clone(), c.default_shard),
        (CatalogRef::Shard(0), 0)
    );
    assert!(c.twopc.enabled);
    assert_eq!(c.limits.max_message_size, 64 << 20);
}

#[test]
fn unreadable_file_names_the_file() {
    let err = load(Path::new("/nonexistent/shardgate.yaml")).expect_err("no such file");
    assert_eq!(err.key_path, "");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/shardgate.yaml: cannot read file: "),
        "{err}"
    );
}
