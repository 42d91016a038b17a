//! The catalog against real Postgres: schema creation (repeated and concurrent), bucket map
//! seeding, directory entries.
//!
//! Not here: the cache's eviction order and ticket rules (unit tests in `catalog::cache`).

mod common;

use std::time::Duration;

use common::{cluster, fresh_db};
use shardgate::catalog::Catalog;
use shardgate::config::{PgTarget, SslMode};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The catalog of database `db` on server 0, as user app.
fn target(db: &str) -> PgTarget {
    let server = &cluster().servers[0];
    PgTarget {
        url: server.url("app", "app", db),
        host: "127.0.0.1".into(),
        port: server.port,
        dbname: db.into(),
        user: "app".into(),
        password: Some("app".into()),
        sslmode: SslMode::Disable,
    }
}

async fn catalog(db: &str) -> Catalog {
    let c = Catalog::connect(&target(db), TIMEOUT)
        .await
        .expect("connect to the catalog");
    c.ensure_schema().await.expect("ensure_schema");
    c
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_schema_is_idempotent_and_safe_concurrently() {
    let db = fresh_db("cat_schema");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let t = target(&db);
        // Separate handles, so the four really race on separate connections.
        tasks.spawn(async move {
            let c = Catalog::connect(&t, TIMEOUT).await?;
            c.ensure_schema().await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("concurrent ensure_schema");
    }
    let c = catalog(&db).await;
    c.ensure_schema().await.expect("second ensure_schema");
    assert_eq!(
        c.schema_version().await.expect("version").as_deref(),
        Some("1")
    );
    let tables = cluster().servers[0]
        .psql(
            &db,
            "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables \
             WHERE table_schema = 'shardgate'",
        )
        .expect("psql");
    assert_eq!(
        tables.trim(),
        "bucket_map,bucket_map_current,directory,meta,twopc_decisions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_catalog_is_refused() {
    let db = fresh_db("cat_newer");
    let c = catalog(&db).await;
    cluster().servers[0]
        .psql(
            &db,
            "UPDATE shardgate.meta SET value = '99' WHERE key = 'schema_version'",
        )
        .expect("psql");
    let err = c.ensure_schema().await.expect_err("version 99 accepted");
    let text = err.to_string();
    assert!(text.contains("version 99") && text.contains(&db), "{text}");
    assert!(!text.contains(":app@"), "password in message: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_keeps_the_first_map() {
    let db = fresh_db("cat_seed");
    let c = catalog(&db).await;
    assert_eq!(c.bucket_map("by_user").await.expect("read"), None);
    let first = names(&["s0", "s0", "s1", "s1"]);
    let seeded = c.seed_bucket_map("by_user", &first).await.expect("seed");
    assert_eq!((seeded.version, &seeded.shards), (1, &first));
    let again = c
        .seed_bucket_map("by_user", &names(&["s1", "s1", "s1", "s1"]))
        .await
        .expect("re-seed");
    assert_eq!(again, seeded);
    assert_eq!(c.bucket_map("by_user").await.expect("read"), Some(seeded));
    assert!(c.seed_bucket_map("empty", &[]).await.is_err());

    // Proxies starting at once: one map wins and every one of them gets it.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..4 {
        let t = target(&db);
        tasks.spawn(async move {
            let c = Catalog::connect(&t, TIMEOUT).await?;
            c.seed_bucket_map("by_event", &vec![format!("s{i}"); 1024])
                .await
        });
    }
    let mut maps = Vec::new();
    while let Some(done) = tasks.join_next().await {
        maps.push(done.expect("task").expect("concurrent seed"));
    }
    assert!(maps.iter().all(|m| m == &maps[0] && m.shards.len() == 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_set_get_delete() {
    let db = fresh_db("cat_dir");
    let c = catalog(&db).await;
    assert_eq!(c.directory_get("by_org", "7").await.expect("get"), None);
    c.directory_set("by_org", "7", "s1").await.expect("set");
    assert_eq!(
        c.directory_get("by_org", "7")
            .await
            .expect("get")
            .as_deref(),
        Some("s1")
    );
    c.directory_set("by_org", "7", "s2").await.expect("upsert");
    c.directory_set("by_org", "10", "s0").await.expect("set");
    c.directory_set("other", "7", "s0").await.expect("set");
    assert_eq!(
        c.directory_get("by_org", "7")
            .await
            .expect("get")
            .as_deref(),
        Some("s2")
    );
    let list = c.directory_list("by_org", 10).await.expect("list");
    let pairs: Vec<(&str, &str)> = list
        .iter()
        .map(|e| (e.key.as_str(), e.shard.as_str()))
        .collect();
    assert_eq!(pairs, [("10", "s0"), ("7", "s2")]);
    assert_eq!(c.directory_list("by_org", 1).await.expect("list").len(), 1);
    assert!(c.directory_delete("by_org", "7").await.expect("delete"));
    assert!(!c
        .directory_delete("by_org", "7")
        .await
        .expect("delete again"));
    assert_eq!(c.directory_get("by_org", "7").await.expect("get"), None);
    assert_eq!(
        c.directory_get("other", "7").await.expect("get").as_deref(),
        Some("s0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_says_which_catalog_without_the_password() {
    let db = fresh_db("cat_badpw");
    let mut t = target(&db);
    t.password = Some("not-the-password".into());
    let err = Catalog::connect(&t, TIMEOUT).await.expect_err("connected");
    let text = err.to_string();
    assert!(text.contains(&t.redacted_url()), "{text}");
    assert!(
        text.contains("password") && !text.contains("not-the-password"),
        "{text}"
    );
}
