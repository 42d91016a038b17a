//! The cost of two-phase commit, measured side by side (not a pass/fail test; it prints):
//! a transfer transaction (two UPDATEs) whose rows live on one shard, against one whose rows
//! live on two shards and so commits with PREPARE / decision / COMMIT PREPARED.
//!
//!     cargo test --release --test twopc_cost -- --ignored --nocapture
//!
//! Rounds alternate between the two kinds so machine noise hits both alike.

mod common;

use std::time::{Duration, Instant};

use common::trap::{owner, setup_with};

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn two_shard_commit_latency_vs_one_shard() {
    let (p, _direct) = setup_with("twopc_cost", "").await;
    let c = p.connect().await;
    let on = |s: usize, skip: usize| (1..).filter(|&k| owner(k) == s).nth(skip).unwrap();
    let (a0, b0, a1) = (on(0, 0), on(0, 1), on(1, 0));
    for k in [a0, b0, a1] {
        c.execute("insert into users (id, name) values ($1, '0')", &[&k])
            .await
            .unwrap();
    }
    let transfer = |x: i64, y: i64| {
        let c = &c;
        async move {
            let start = Instant::now();
            c.batch_execute("begin").await.unwrap();
            c.execute("update users set name = 'a' where id = $1", &[&x])
                .await
                .unwrap();
            c.execute("update users set name = 'b' where id = $1", &[&y])
                .await
                .unwrap();
            c.batch_execute("commit").await.unwrap();
            start.elapsed()
        }
    };
    // Warm up the connections, plans and catalog.
    for _ in 0..20 {
        transfer(a0, b0).await;
        transfer(a0, a1).await;
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        one.push(transfer(a0, b0).await);
        two.push(transfer(a0, a1).await);
    }
    let (p50_1, p99_1) = (percentile(&mut one, 0.5), percentile(&mut one, 0.99));
    let (p50_2, p99_2) = (percentile(&mut two, 0.5), percentile(&mut two, 0.99));
    println!(
        "transfer latency over {rounds} rounds each: one shard p50 {p50_1:?} p99 {p99_1:?}; two shards (2PC) p50 {p50_2:?} p99 {p99_2:?}; p50 ratio {:.2}",
        p50_2.as_secs_f64() / p50_1.as_secs_f64()
    );
}
