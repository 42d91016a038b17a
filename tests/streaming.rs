//! Memory stays flat while a merged ORDER BY streams over a million rows: the proxy holds one
//! row per shard, not the result. The client (in this same process) streams rows and drops
//! them, so the process's resident memory is the proxy's working set; it is sampled while the
//! rows flow.

mod common;

use std::time::Instant;

use common::proxy::{start_proxy_on, ProxyOpts};
use futures_util::TryStreamExt;

const PER_SHARD: i64 = 400_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_merge_of_a_million_rows_keeps_memory_flat() {
    let db = common::fresh_db("streaming");
    let servers = &common::cluster().servers;
    for (i, s) in servers.iter().enumerate() {
        // Each shard holds its own interleaved ids (the proxy does not check placement here:
        // the rows are loaded directly, as a bulk load would be).
        s.psql(
            &db,
            &format!(
                "create table big (id bigint primary key, pad text);
                 insert into big select g * 3 + {i}, repeat('x', 80) from generate_series(0, {}) g;
                 grant all on big to app;",
                PER_SHARD - 1
            ),
        )
        .unwrap();
    }
    let p = start_proxy_on(
        &db,
        ProxyOpts {
            shards: 3,
            extra: "schemes:\n  by_id: { type: hash, buckets: 8 }\ntables:\n  big: { scheme: by_id, key: id }\n".into(),
            ..Default::default()
        },
    )
    .await;
    let c = p.connect().await;
    let started = Instant::now();
    let before = rss_kib();
    let rows = c
        .query_raw(
            "select id, pad from big order by id",
            std::iter::empty::<i64>(),
        )
        .await
        .unwrap();
    futures_util::pin_mut!(rows);
    let (mut n, mut last, mut peak) = (0i64, -1i64, before);
    while let Some(row) = rows.try_next().await.unwrap() {
        let id: i64 = row.get(0);
        assert!(id > last, "rows out of order at {n}: {id} after {last}");
        last = id;
        n += 1;
        if n % 50_000 == 0 {
            peak = peak.max(rss_kib());
        }
    }
    let total = 3 * PER_SHARD;
    assert_eq!(n, total);
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "streamed {n} rows (~{} MiB of row data) in {:.1?}; resident memory grew by {grew_mib} MiB",
        total * 90 / (1 << 20),
        started.elapsed()
    );
    // The rows are ~100 MiB; buffering them would show. Allow for allocator and socket slack.
    assert!(
        grew_mib < 40,
        "resident memory grew by {grew_mib} MiB while streaming"
    );
}
