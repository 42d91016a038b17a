//! A large move, measured (opt-in): `SHARDGATE_RESHARD_ROWS=3000000 cargo test --release
//! --test reshard_big -- --ignored --nocapture`. Loads the rows onto two shards of a private
//! cluster, moves a third of the buckets to a third shard with `reshard::run` (about a third
//! of the rows), and in the same run copies the same rows between the same two servers with a
//! plain binary `COPY ... TO STDOUT` piped into `COPY ... FROM STDIN`, for comparison.

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use shardgate::config::{self, KeyType};
use shardgate::frontend::Proxy;
use shardgate::reshard;

const BUCKETS: u32 = 1024;

async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with SHARDGATE_RESHARD_ROWS and --ignored --nocapture"]
async fn large_move_against_plain_copy() {
    let rows: i64 = std::env::var("SHARDGATE_RESHARD_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let cluster = common::private_cluster(3);
    let url = |i: usize| cluster.servers[i].url("app", "app", "app");
    let mut shards = String::new();
    for i in 0..3 {
        shards.push_str(&format!("  - {{ name: s{i}, url: \"{}\" }}\n", url(i)));
    }
    let yaml = format!(
        "listen: 127.0.0.1:0\ndatabase: app\nusers:\n  - {{ name: app, password: app }}\n\
         shards:\n{shards}default_shard: s0\n\
         schemes:\n  by_acct: {{ type: hash, buckets: {BUCKETS}, shards: [s0, s1] }}\n\
         tables:\n  accounts: {{ scheme: by_acct, key: id }}\n"
    );
    let cfg = config::parse(&yaml, std::path::Path::new("big.yaml")).unwrap();
    let expr = shardgate::router::hash::bucket_sql("g", KeyType::Bigint, BUCKETS);
    let loaded = Instant::now();
    for i in 0..2 {
        let (lo, hi) = if i == 0 { (0, 511) } else { (512, 1023) };
        client(&url(i))
            .await
            .batch_execute(&format!(
                "create table accounts (id bigint primary key, balance bigint not null, owner text not null, opened date not null);
                 insert into accounts select g, g % 10000, 'owner ' || g, date '2020-01-01' + (g % 1000)::int
                   from generate_series(0, {}) g where ({expr})::int between {lo} and {hi};
                 analyze accounts;",
                rows - 1
            ))
            .await
            .unwrap();
    }
    eprintln!("loaded {rows} rows in {:.1?}", loaded.elapsed());
    // The proxy seeds the bucket map and follows the cutover.
    let running = Proxy::new(cfg.clone())
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // First, the plain way, in the same run: the rows that will move, copied from each
    // source to the target with binary COPY TO STDOUT piped into COPY FROM STDIN.
    let catalog = reshard::open_catalog(&cfg).await.unwrap();
    let live = catalog.bucket_map("by_acct").await.unwrap().unwrap();
    let targets: Vec<String> = vec!["s0".into(), "s1".into(), "s2".into()];
    let moves = reshard::plan::plan(&live.shards, &targets).unwrap();
    let dst = client(&url(2)).await;
    dst.batch_execute(
        "create table plain_copy (id bigint primary key, balance bigint not null, owner text not null, opened date not null)",
    )
    .await
    .unwrap();
    let (mut plain_rows, began) = (0u64, Instant::now());
    for (i, from) in ["s0", "s1"].iter().enumerate() {
        let list: Vec<String> = moves
            .iter()
            .filter(|m| m.from == *from)
            .map(|m| m.bucket.to_string())
            .collect();
        let filter = format!(
            "({})::int = ANY('{{{}}}'::int[])",
            shardgate::router::hash::bucket_sql("id", KeyType::Bigint, BUCKETS),
            list.join(",")
        );
        let src = client(&url(i)).await;
        let reader = src
            .copy_out(&format!(
                "COPY (SELECT * FROM accounts WHERE {filter}) TO STDOUT (FORMAT binary)"
            ))
            .await
            .unwrap();
        let writer = dst
            .copy_in("COPY plain_copy FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        futures_util::pin_mut!(reader);
        futures_util::pin_mut!(writer);
        while let Some(chunk) = reader.next().await {
            writer.send(chunk.unwrap()).await.unwrap();
        }
        plain_rows += writer.finish().await.unwrap();
    }
    let plain = began.elapsed();
    dst.batch_execute("drop table plain_copy").await.unwrap();

    let opts = reshard::Options {
        admin_user: Some("postgres".into()),
        progress: false,
        stop_at: None,
    };
    let started = Instant::now();
    let out = reshard::run(&cfg, "by_acct", &targets, &opts)
        .await
        .unwrap();
    let total = started.elapsed();
    assert!(out.done);
    assert_eq!(out.rows_copied as u64, plain_rows);
    eprintln!(
        "plain binary COPY (s0, s1 -> s2, one after the other): {plain_rows} rows in {:.2} s ({:.0} rows/s)",
        plain.as_secs_f64(),
        plain_rows as f64 / plain.as_secs_f64()
    );
    eprintln!(
        "reshard: {} buckets, {} rows; copy + catch-up {:.2} s ({:.0} rows/s); cutover pause {:.0} ms; whole run (schema, copy, cutover, cleanup) {:.1?}",
        out.buckets_moved,
        out.rows_copied,
        out.copy_secs,
        out.rows_copied as f64 / out.copy_secs,
        out.pause_ms,
        total
    );
    running.shutdown(Duration::from_secs(1)).await;
}
