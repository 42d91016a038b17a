//! A merged read whose LIMIT is met before every shard has finished answering gives its shard
//! connections back to the pool (the short rest of each answer is read and dropped) instead
//! of closing them: a fan-out `ORDER BY ... LIMIT` must not cost a new server connection per
//! shard each time (issue 8: that made it 90x slower than one Postgres).

mod common;

use common::trap::setup;

/// The backends serving the test database on a shard, other than the asking connection.
async fn backend_pids(direct: &tokio_postgres::Client) -> Vec<i32> {
    let row = direct
        .query_one(
            "select coalesce(array_agg(pid order by pid), '{}') from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_activity");
    row.get(0)
}

#[tokio::test]
async fn limit_met_early_keeps_shard_connections() {
    let (p, direct) = setup("merge_pool").await;
    let c = p.connect().await;
    let insert = c
        .prepare("insert into users (id, name) values ($1, repeat('x', 2000))")
        .await
        .unwrap();
    for id in 1..=300i64 {
        c.execute(&insert, &[&id]).await.unwrap();
    }
    // Each shard answers with 100 rows of 2 kB: more than one read, so the merge is done
    // while most of the shards' answers are still on the way.
    let q = "select id, name from users order by id limit 100";
    let ids: Vec<i64> = c
        .query(q, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, (1..=100).collect::<Vec<i64>>());
    // Shard 0 also holds the catalog, whose control-plane pool may come and go: look at the
    // others.
    let mut before = Vec::new();
    for d in &direct[1..] {
        before.push(backend_pids(d).await);
    }
    for _ in 0..10 {
        assert_eq!(c.query(q, &[]).await.unwrap().len(), 100);
        c.simple_query(q).await.unwrap();
    }
    let mut after = Vec::new();
    for d in &direct[1..] {
        after.push(backend_pids(d).await);
    }
    assert!(before.iter().all(|p| !p.is_empty()), "{before:?}");
    assert_eq!(
        before, after,
        "the shards' server connections were replaced"
    );
}
