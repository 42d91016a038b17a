//! Criterion micro-benchmarks of the pure parts of the hot path (issue 8): parse + route of
//! typical statements (plan from the cache and plan from scratch, then decide with bound
//! parameters), the shard hash functions, and the fan-out merge's throughput in rows/s.
//!
//!     cargo bench --bench micro                 # measure
//!     cargo test --bench micro                  # run each benchmark once (a smoke test)
//!
//! It deliberately measures no IO: the end-to-end numbers (sockets, Postgres, PgBouncer) come
//! from bench/run.sh. One file, so that `cargo test --all-targets` links one more binary only.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use shardgate::merge::value::oid::{INT4, INT8, TEXT};
use shardgate::merge::{Merger, Progress};
use shardgate::router::hash::{bucket_of, md5_index};
use shardgate::router::rewrite::rewrite_fanout;
use shardgate::router::{Decision, KeyValue, NoDirectory, Params, Router};

const CONFIG: &str = "
listen: 127.0.0.1:6432
users: [{ name: app, password: app }]
shards:
  - { name: s0, url: \"postgres://app:app@127.0.0.1:5433/app\" }
  - { name: s1, url: \"postgres://app:app@127.0.0.1:5434/app\" }
  - { name: s2, url: \"postgres://app:app@127.0.0.1:5435/app\" }
  - { name: s3, url: \"postgres://app:app@127.0.0.1:5436/app\" }
schemes:
  by_aid: { type: hash, buckets: 1024 }
tables:
  pgbench_accounts: { scheme: by_aid, key: aid }
  pgbench_history: { scheme: by_aid, key: aid }
  users: { scheme: by_aid, key: id }
  posts: { scheme: by_aid, key: user_id }
  countries: { reference: true }
";

fn router() -> Router {
    let cfg = shardgate::config::parse(CONFIG, Path::new("<bench>")).expect("bench config");
    Router::new(Arc::new(cfg))
}

/// Typical statements: (name, text, one text-format parameter or none).
const STATEMENTS: &[(&str, &str, Option<&[u8]>)] = &[
    (
        "pgbench -S, extended",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
        Some(b"4242"),
    ),
    (
        "pgbench -S, simple (literal)",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;",
        None,
    ),
    (
        "update by key",
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;",
        None,
    ),
    (
        "co-located join",
        "SELECT u.id, p.id FROM users u JOIN posts p ON p.user_id = u.id WHERE u.id = 42 ORDER BY p.id",
        None,
    ),
    ("unsharded", "SELECT bbalance FROM pgbench_branches WHERE bid = 1", None),
    ("BEGIN", "BEGIN", None),
];

fn route(c: &mut Criterion) {
    let r = router();
    let mut g = c.benchmark_group("route");
    for &(name, sql, param) in STATEMENTS {
        let params = match param {
            Some(p) => Params::new(&[], vec![Some(p)]),
            None if sql.contains("$2") => Params::new(&[], vec![Some(b"7"), Some(b"4242")]),
            None => Params::new(&[], vec![]),
        };
        // Fail loudly if a statement stops routing the way the bench assumes.
        let d = r.decide(&r.plan(sql), &params, &NoDirectory);
        assert!(!matches!(d, Decision::Refuse(_)), "{name}: {d:?}");
        g.bench_function(format!("cached plan + decide: {name}"), |b| {
            b.iter(|| {
                let plan = r.plan(black_box(sql));
                black_box(r.decide(&plan, &params, &NoDirectory))
            })
        });
        g.bench_function(format!("uncached plan + decide: {name}"), |b| {
            // A fresh router per batch: its plan cache is empty, so every plan is analysed.
            b.iter_batched(
                router,
                |fresh| {
                    let plan = fresh.plan(black_box(sql));
                    black_box(fresh.decide(&plan, &params, &NoDirectory))
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn hash(c: &mut Criterion) {
    let mut g = c.benchmark_group("hash");
    let int = KeyValue::Int(1_234_567);
    let text = KeyValue::Text("customer-000042@example.com".into());
    let uuid = KeyValue::Uuid(*b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x12\x34\x56\x78\x9a\xbc\xde\xf0");
    for (name, key) in [("bigint", &int), ("text 27 bytes", &text), ("uuid", &uuid)] {
        g.bench_function(format!("bucket_of {name}"), |b| {
            b.iter(|| bucket_of(black_box(key), 1024))
        });
        g.bench_function(format!("md5_index {name}"), |b| {
            b.iter(|| md5_index(black_box(key), 4))
        });
    }
    g.finish();
}

/// A RowDescription body for text-format columns.
fn row_description(cols: &[(&str, u32)]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(cols.len() as i16);
    for (name, oid) in cols {
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_u32(16_384);
        b.put_i16(1);
        b.put_u32(*oid);
        b.put_i16(-1);
        b.put_i32(-1);
        b.put_i16(0);
    }
    b.to_vec()
}

/// A DataRow body of text fields.
fn data_row(fields: &[&str]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(fields.len() as i16);
    for f in fields {
        b.put_i32(f.len() as i32);
        b.put_slice(f.as_bytes());
    }
    b.to_vec()
}

const SHARDS: usize = 4;
const ROWS_PER_SHARD: usize = 25_000;

/// Each shard's rows, sorted by the first column (as `ORDER BY` makes the shards send them),
/// keys interleaved across shards; the second column cycles through 100 groups.
fn shard_rows() -> Vec<Vec<Vec<u8>>> {
    (0..SHARDS)
        .map(|s| {
            (0..ROWS_PER_SHARD)
                .map(|i| {
                    let aid = (i * SHARDS + s) as i64;
                    let bid = (aid % 100).to_string();
                    data_row(&[&aid.to_string(), &bid, "-4242", "filler text"])
                })
                .collect()
        })
        .collect()
}

/// Feed every shard's rows when the merger asks for them, until it is done.
fn drive(mut m: Merger, rows: &[Vec<Vec<u8>>]) -> usize {
    let mut next = vec![0usize; rows.len()];
    let mut out = BytesMut::with_capacity(1 << 16);
    loop {
        match m.drain(&mut out).expect("merge") {
            Progress::Done => break,
            Progress::NeedInput => {
                let wanted: Vec<usize> = m.wants().collect();
                for s in wanted {
                    match rows[s].get(next[s]) {
                        Some(r) => {
                            m.push_row(s, r).expect("row");
                            next[s] += 1;
                        }
                        None => m.finish_shard(s).expect("finish"),
                    }
                }
            }
        }
        out.clear();
    }
    next.iter().sum()
}

fn merge(c: &mut Criterion) {
    let rows = shard_rows();
    let total = (SHARDS * ROWS_PER_SHARD) as u64;
    let cols = [
        ("aid", INT8),
        ("bid", INT4),
        ("abalance", INT4),
        ("filler", TEXT),
    ];
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(total));
    for (name, sql) in [
        (
            "ORDER BY k-way",
            "SELECT aid, bid, abalance, filler FROM t ORDER BY aid",
        ),
        (
            "GROUP BY count/sum",
            "SELECT bid, count(*), sum(abalance) FROM t GROUP BY bid",
        ),
        ("concatenate", "SELECT aid, bid, abalance, filler FROM t"),
    ] {
        let rewrite = rewrite_fanout(sql).expect("a mergeable statement");
        // What the shards answer to the rewritten SQL: the grouped plan reads bid, a count
        // and a sum per row; the others read the four columns as they are.
        let (desc, rows) = if sql.contains("GROUP BY") {
            let grouped: Vec<Vec<Vec<u8>>> = rows
                .iter()
                .map(|shard| {
                    (0..ROWS_PER_SHARD)
                        .map(|i| data_row(&[&(i % 100).to_string(), "1", &shard.len().to_string()]))
                        .collect()
                })
                .collect();
            let desc = row_description(&[("bid", INT4), ("count", INT8), ("sum", INT8)]);
            (desc, grouped)
        } else {
            (row_description(&cols), rows.clone())
        };
        let width = rows[0][0].len();
        let plan = rewrite
            .plan
            .resolve(if sql.contains("GROUP BY") { 3 } else { 4 })
            .expect("plan fits the rows")
            .for_engine();
        g.bench_function(
            format!("{name}, {SHARDS} shards, rows of ~{width} bytes"),
            |b| {
                b.iter_batched(
                    || Merger::new(plan.clone(), &desc, SHARDS, 10_000_000).expect("merger"),
                    |m| black_box(drive(m, &rows)),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(benches, route, hash, merge);
criterion_main!(benches);
