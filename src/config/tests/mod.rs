//! Whole-file tests of `config::parse`: the SPEC example and other good files load with the
//! right values (here), and bad files fail with the exact message (`rejects.rs`).
//!
//! Unit tests of single pieces (durations, URLs, passwords) live beside their code.

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
fn four_shards_split_buckets_into_equal_runs() {
    let text = r#"
shards:
  - { name: s0, url: "postgres://u@h0/db" }
  - { name: s1, url: "postgres://u@h1/db" }
  - { name: s2, url: "postgres://u@h2/db" }
  - { name: s3, url: "postgres://u@h3/db" }
schemes:
  all: { type: hash }
  two: { type: hash, buckets: 8, shards: [s3, s1] }
  one: { type: hash, buckets: 1, shards: [s2] }
  legacy: { type: hash, function: md5, shards: [s1, s0, s2] }
"#;
    let c = parse_ok(text);
    assert_eq!(
        runs(&hash(&c, "all").map),
        vec![(0, 255, 0), (256, 511, 1), (512, 767, 2), (768, 1023, 3)]
    );
    assert_eq!(runs(&hash(&c, "two").map), vec![(0, 3, 3), (4, 7, 1)]);
    assert_eq!(runs(&hash(&c, "one").map), vec![(0, 0, 2)]);
    let legacy = hash(&c, "legacy");
    assert_eq!(
        (legacy.function, legacy.buckets, legacy.shards, legacy.map),
        (HashFunction::Md5, 3, vec![1, 0, 2], vec![])
    );
}

#[test]
fn explicit_bucket_map() {
    let text = format!(
        "{SHARDS}schemes:\n  h:\n    type: hash\n    buckets: 16\n    map:\n      \
         - {{ buckets: \"8-15\", shard: s0 }}\n      - {{ buckets: 0, shard: s1 }}\n      \
         - {{ buckets: \"1 - 7\", shard: s0 }}\n"
    );
    let c = parse_ok(&text);
    assert_eq!(runs(&hash(&c, "h").map), vec![(0, 0, 1), (1, 15, 0)]);
}

#[test]
fn good_variants() {
    let verifier = postgres_protocol::password::scram_sha_256(b"pw");
    let text = format!(
        r#"{SHARDS}
listen: "[::1]:7000"
database: shop
auth_method: scram-sha-256
users:
  - {{ name: alice, password: "{verifier}" }}
  - {{ name: bob, password: plain-pw }}
catalog: "postgres://cat@catalog.internal:6000/meta?sslmode=require"
default_shard: s1
pool: {{ mode: session, size: 3, checkout_timeout: 250ms, connect_timeout: 1m, idle_timeout: 0 }}
schemes:
  by_name:
    type: range
    ranges:
      - {{ below: "m", shard: s0 }}
      - {{ below: "t", shard: s1 }}
  by_id: {{ type: hash }}
  pinned: {{ type: directory, fallback: by_name }}
tables:
  Public.Accounts: {{ scheme: by_name, key: Name, key_type: VARCHAR }}
  devices: {{ scheme: by_id, key: id, key_type: uuid }}
  tenants: {{ scheme: pinned, key: slug, key_type: text }}
  small: {{ scheme: by_id, key: id, key_type: int2 }}
twopc: {{ enabled: false, orphan_timeout: 2h }}
limits: {{ max_shards_per_query: 4, max_message_size: 1MiB }}
tls: {{ cert: certs/server.crt, key: /etc/key.pem, require: true }}
log_level: "shardgate=debug,info"
"#
    );
    let c = parse_ok(&text);
    assert_eq!(c.listen.to_string(), "[::1]:7000");
    assert_eq!(c.database, "shop");
    assert!(matches!(c.users[0].password, Password::ScramVerifier(_)));
    assert_eq!(c.users[1].password, Password::Plain("plain-pw".into()));
    match &c.catalog {
        CatalogRef::Url(t) => {
            assert_eq!(
                (t.host.as_str(), t.port, t.dbname.as_str()),
                ("catalog.internal", 6000, "meta")
            );
            assert_eq!(t.sslmode, SslMode::Require);
        }
        other => panic!("catalog: {other:?}"),
    }
    assert_eq!(c.default_shard, 1);
    assert_eq!(c.pool.mode, PoolMode::Session);
    assert_eq!(c.pool.checkout_timeout, Duration::from_millis(250));
    assert_eq!(c.pool.idle_timeout, Duration::ZERO);
    let Some(Scheme::Range(r)) = c.schemes.get("by_name") else {
        panic!("by_name")
    };
    assert_eq!(
        r.ranges[1].below,
        Some(RangeBound::Text("t".into())),
        "last bound kept"
    );
    assert_eq!(
        c.tables.get("public.accounts"),
        Some(&TableConfig::Sharded {
            scheme: "by_name".into(),
            key: "name".into(),
            key_type: KeyType::Text
        })
    );
    assert!(matches!(
        c.tables.get("devices"),
        Some(TableConfig::Sharded {
            key_type: KeyType::Uuid,
            ..
        })
    ));
    assert!(matches!(
        c.tables.get("small"),
        Some(TableConfig::Sharded {
            key_type: KeyType::Bigint,
            ..
        })
    ));
    assert_eq!(
        c.twopc,
        TwoPcConfig {
            enabled: false,
            orphan_timeout: Duration::from_secs(7200)
        }
    );
    assert_eq!(
        (c.limits.max_shards_per_query, c.limits.max_message_size),
        (4, 1 << 20)
    );
    assert_eq!(
        c.tls,
        Some(TlsConfig {
            cert: "config/certs/server.crt".into(),
            key: "/etc/key.pem".into(),
            require: true
        })
    );
    assert_eq!(c.log_level.as_deref(), Some("shardgate=debug,info"));
}

#[test]
fn md5_method_accepts_md5_hashes_and_trust_accepts_anything() {
    let md5 = "md5a1d0c6e83f027327d8461063f4ac58a6";
    let c = parse_ok(&format!(
        "{SHARDS}auth_method: md5\nusers: [{{ name: app, password: {md5} }}]\n"
    ));
    assert_eq!(c.users[0].password, Password::Md5Hash(md5.into()));
    let verifier = postgres_protocol::password::scram_sha_256(b"pw");
    let c = parse_ok(&format!(
        "{SHARDS}auth_method: trust\nusers: [{{ name: a, password: {md5} }}, {{ name: b, password: \"{verifier}\" }}]\n"
    ));
    assert_eq!(c.auth_method, AuthMethod::Trust);
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

#[test]
fn range_lookup_follows_the_bounds() {
    let int = |below: Option<i64>, shard| RangeEntry {
        below: below.map(RangeBound::Int),
        shard,
    };
    let open = RangeScheme {
        ranges: vec![int(Some(10), 0), int(Some(20), 1), int(None, 2)],
    };
    let closed = RangeScheme {
        ranges: vec![int(Some(10), 0), int(Some(20), 1)],
    };
    let text = RangeScheme {
        ranges: vec![
            RangeEntry {
                below: Some(RangeBound::Text("m".into())),
                shard: 0,
            },
            RangeEntry {
                below: None,
                shard: 1,
            },
        ],
    };
    let cases: &[(&RangeScheme, RangeBound, Option<ShardId>)] = &[
        (&open, RangeBound::Int(i64::MIN), Some(0)),
        (&open, RangeBound::Int(9), Some(0)),
        (&open, RangeBound::Int(10), Some(1)),
        (&open, RangeBound::Int(19), Some(1)),
        (&open, RangeBound::Int(20), Some(2)),
        (&closed, RangeBound::Int(19), Some(1)),
        (&closed, RangeBound::Int(20), None),
        (&closed, RangeBound::Text("a".into()), None),
        (&text, RangeBound::Text("apple".into()), Some(0)),
        (&text, RangeBound::Text("m".into()), Some(1)),
        (&text, RangeBound::Text("Zebra".into()), Some(0)),
    ];
    for (scheme, key, want) in cases {
        assert_eq!(scheme.shard_for(key), *want, "{key:?} in {scheme:?}");
    }
}
