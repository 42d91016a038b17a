//! Trap tables for routing and two-phase commit tests: each shard's copy of a sharded table is
//! itself hash-partitioned with only the partitions of the buckets that shard owns, so a row
//! sent to the wrong shard fails loudly ("no partition of relation found for row").

use shardgate::router::{hash::bucket_of, KeyValue};

use super::proxy::{start_proxy_on, ProxyOpts, TestProxy};

pub const BUCKETS: u32 = 8;
pub const SHARDS: usize = 3;

/// Owner of bucket b with contiguous equal runs over 3 shards: [0,0,0,1,1,1,2,2].
pub fn owner_of_bucket(b: u32) -> usize {
    (b as usize * SHARDS) / BUCKETS as usize
}

pub fn owner(key: i64) -> usize {
    owner_of_bucket(bucket_of(&KeyValue::Int(key), BUCKETS))
}

pub const SCHEMES: &str = "schemes:
  by_user: { type: hash, buckets: 8 }
  by_event:
    type: range
    ranges:
      - { below: 1000, shard: s0 }
      - { below: 2000, shard: s1 }
      - { shard: s2 }
  by_org: { type: directory, fallback: by_user }
tables:
  users: { scheme: by_user, key: id }
  posts: { scheme: by_user, key: user_id }
  events: { scheme: by_event, key: id }
  orgs: { scheme: by_org, key: org_id, key_type: text }
  countries: { reference: true }
";

/// A fresh database with trap tables on every shard and a proxy over the three servers.
pub async fn setup(prefix: &str) -> (TestProxy, Vec<tokio_postgres::Client>) {
    setup_with(prefix, "").await
}

/// `setup` with extra top-level YAML for the proxy (e.g. `twopc: { enabled: false }`).
pub async fn setup_with(prefix: &str, extra: &str) -> (TestProxy, Vec<tokio_postgres::Client>) {
    let db = super::fresh_db(prefix);
    let mut direct = Vec::new();
    for (i, s) in super::cluster().servers.iter().enumerate() {
        let (c, conn) = tokio_postgres::connect(&s.url("app", "app", &db), tokio_postgres::NoTls)
            .await
            .expect("direct connection");
        tokio::spawn(conn);
        let mut ddl = String::from(
            "create table users (id bigint not null primary key, name text) partition by hash (id);
             create table posts (id bigint not null, user_id bigint not null, title text, primary key (user_id, id)) partition by hash (user_id);
             create table events (id bigint primary key, what text);
             create table orgs (org_id text primary key, name text);
             create table countries (code text primary key, name text);
             insert into countries values ('de', 'Germany'), ('fr', 'France');",
        );
        for b in (0..BUCKETS).filter(|&b| owner_of_bucket(b) == i) {
            ddl.push_str(&format!(
                "create table users_{b} partition of users for values with (modulus {BUCKETS}, remainder {b});
                 create table posts_{b} partition of posts for values with (modulus {BUCKETS}, remainder {b});"
            ));
        }
        c.batch_execute(&ddl).await.expect("trap tables");
        direct.push(c);
    }
    let p = start_proxy_on(
        &db,
        ProxyOpts {
            shards: SHARDS,
            extra: format!("{SCHEMES}{extra}"),
            ..Default::default()
        },
    )
    .await;
    (p, direct)
}

pub async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}
