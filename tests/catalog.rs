//! The catalog against real Postgres: schema creation (repeated and concurrent), bucket map
//! seeding, directory entries, the directory cache kept fresh by the listener, and the
//! `shardgate directory` command end to end.
//!
//! Not here: the cache's eviction order and ticket rules (unit tests in `catalog::cache`), and
//! key parsing (unit tests in `cli::directory`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{cluster, fresh_db};
use shardgate::catalog::{Catalog, DirectoryCache};
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
        Some("2")
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
        "bucket_map,bucket_map_current,directory,meta,proxies,reshard_acks,reshard_hold,reshard_jobs,reshard_moves,twopc_decisions"
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

/// The pid of the listener's session once its `LISTEN` has completed, polled.
async fn listener_pid(db: &str, not: Option<i32>) -> i32 {
    let (client, conn) = tokio_postgres::connect(
        &cluster().servers[0].superuser_url(db),
        tokio_postgres::NoTls,
    )
    .await
    .expect("superuser connection");
    tokio::spawn(conn);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND state = 'idle' \
                 AND application_name = 'shardgate-directory-listener' \
                 AND query LIKE 'LISTEN%' AND pid IS DISTINCT FROM $2",
                &[&db, &not],
            )
            .await
            .expect("pg_stat_activity");
        if let Some(row) = row {
            // The server has answered LISTEN; give the listener a moment to clear the cache,
            // which it does right after reading that answer.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return row.get(0);
        }
        assert!(Instant::now() < deadline, "the listener never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Look `key` of `by_org` up until the answer is in the cache (the listener's clear right after
/// LISTEN may drop the first one); returns the answer.
async fn cached(reader: &Catalog, cache: &DirectoryCache, key: &str) -> Option<String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let found = reader
            .directory_lookup(cache, "by_org", key)
            .await
            .expect("lookup");
        if cache.get("by_org", key).as_ref() == Some(&found) {
            return found;
        }
        assert!(Instant::now() < deadline, "{key} never stayed cached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Poll until `cache` no longer holds `key` of `by_org`; panics after 2 s.
async fn until_dropped(cache: &DirectoryCache, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while cache.get("by_org", key).is_some() {
        assert!(
            Instant::now() < deadline,
            "cache entry {key} not invalidated within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_invalidates_cached_entries_and_survives_a_lost_connection() {
    let db = fresh_db("cat_listen");
    let reader = catalog(&db).await;
    let writer = catalog(&db).await;
    let cache = DirectoryCache::new(100);
    // A backstop far beyond the test, so only notifications can invalidate.
    let listener = shardgate::catalog::spawn_directory_listener(
        target(&db),
        cache.clone(),
        Duration::from_secs(600),
    );
    let pid = listener_pid(&db, None).await;

    assert_eq!(
        cached(&reader, &cache, "acme").await,
        None,
        "a miss is cached"
    );
    writer
        .directory_set("by_org", "acme", "s1")
        .await
        .expect("set");
    until_dropped(&cache, "acme").await;
    assert_eq!(cached(&reader, &cache, "acme").await.as_deref(), Some("s1"));

    // Kill the listener's connection: it clears the cache, reconnects and listens again.
    cluster().servers[0]
        .psql(&db, &format!("SELECT pg_terminate_backend({pid})"))
        .expect("terminate");
    listener_pid(&db, Some(pid)).await;
    assert_eq!(
        cache.get("by_org", "acme"),
        None,
        "not cleared on reconnect"
    );
    assert_eq!(cached(&reader, &cache, "acme").await.as_deref(), Some("s1"));
    writer
        .directory_delete("by_org", "acme")
        .await
        .expect("delete");
    until_dropped(&cache, "acme").await;
    assert_eq!(cached(&reader, &cache, "acme").await, None);
    listener.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backstop_clears_the_cache_and_lookups_stay_bounded() {
    let db = fresh_db("cat_backstop");
    let c = catalog(&db).await;
    let cache = DirectoryCache::new(5);
    let listener = shardgate::catalog::spawn_directory_listener(
        target(&db),
        cache.clone(),
        Duration::from_millis(500),
    );
    listener_pid(&db, None).await;
    for i in 0..20 {
        c.directory_lookup(&cache, "by_org", &i.to_string())
            .await
            .expect("lookup");
        assert!(cache.len() <= 5, "len {} past capacity", cache.len());
    }
    assert!(!cache.is_empty());
    // Nothing changed in the catalog, so only the backstop can empty the cache.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cache.is_empty() {
        assert!(
            Instant::now() < deadline,
            "backstop never cleared the cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    listener.abort();
}

/// A config file for the CLI over a fresh database on servers 0 and 1.
fn cli_config(prefix: &str) -> (PathBuf, String) {
    let db = fresh_db(prefix);
    let dir = std::env::temp_dir().join(format!("sg-cli-{db}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let servers = &cluster().servers;
    let yaml = format!(
        "listen: 127.0.0.1:0\n\
         users:\n  - {{ name: app, password: app }}\n\
         shards:\n  - {{ name: s0, url: \"{}\" }}\n  - {{ name: s1, url: \"{}\" }}\n\
         catalog: s0\n\
         default_shard: s0\n\
         schemes:\n  by_user: {{ type: hash, buckets: 16 }}\n  by_org: {{ type: directory, fallback: by_user }}\n\
         tables:\n  orgs: {{ scheme: by_org, key: id }}\n  users: {{ scheme: by_user, key: id }}\n",
        servers[0].url("app", "app", &db),
        servers[1].url("app", "app", &db),
    );
    let path = dir.join("shardgate.yaml");
    std::fs::write(&path, yaml).expect("write config");
    (path, db)
}

fn shardgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(args)
        .output()
        .expect("run shardgate")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).trim().to_string()
}

#[test]
fn directory_cli_sets_and_gets_entries() {
    let (config, db) = cli_config("cat_cli");
    let c = config.to_str().expect("utf-8 path");
    let out = shardgate(&["directory", "set", "-c", c, "by_org", "007", "s1"]);
    assert!(out.status.success(), "set failed: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "by_org 7 -> s1");
    let out = shardgate(&["directory", "get", "-c", c, "by_org", "7"]);
    assert!(out.status.success(), "get failed: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "s1");
    let stored = cluster().servers[0]
        .psql(&db, "SELECT key || '=' || shard FROM shardgate.directory")
        .expect("psql");
    assert_eq!(stored.trim(), "7=s1");
    let out = shardgate(&["directory", "get", "-c", c, "by_org", "8"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("fallback scheme by_user"),
        "{}",
        text(&out.stdout)
    );

    // Usage errors exit 2 with one clear line.
    for (args, expect) in [
        (
            vec!["get", "-c", c, "by_orgs", "7"],
            "unknown scheme \"by_orgs\"",
        ),
        (
            vec!["get", "-c", c, "by_user", "7"],
            "not a directory scheme",
        ),
        (
            vec!["set", "-c", c, "by_org", "7", "s9"],
            "unknown shard \"s9\"",
        ),
        (vec!["set", "-c", c, "by_org", "x7", "s1"], "not a bigint"),
    ] {
        let out = shardgate(&[&["directory"], args.as_slice()].concat());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(expect),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // A key already on the target shard has nothing to move (moves: tests/reshard.rs).
    let out = shardgate(&["directory", "move", "-c", c, "by_org", "7", "--to", "s1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "by_org 7 is already on s1");
    let _ = std::fs::remove_dir_all(config.parent().expect("dir"));
}
