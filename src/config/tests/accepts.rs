//! Good files beyond the SPEC example: bucket splits, explicit maps, every optional key, the
//! password kinds per auth method, and range lookups on the validated model.

use std::time::Duration;

use super::{hash, parse_ok, runs, SHARDS};
use crate::config::*;

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
