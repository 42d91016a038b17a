//! `shardgate demo`: local shards, a sample schema loaded through the proxy, and the proxy on
//! a port, until Ctrl-C (SPEC section 14).
//!
//! The shards are throwaway servers from `localpg` under `./.shardgate/demo` (durability off),
//! removed on exit; a second run starts from scratch. The schema and rows go through the
//! proxy itself, the way an application would send them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{init_logging, runtime, serve_until_signal, CliError};
use crate::config;
use crate::localpg::{ClusterOptions, LocalCluster};

const SCHEMA: &[&str] = &[
    "create table countries (code text primary key, name text not null)",
    "create table users (id bigint primary key, name text not null, country text, created_at timestamptz not null default now())",
    "create table posts (id bigint not null, user_id bigint not null, title text not null, created_at timestamptz not null default now(), primary key (user_id, id))",
    "create table comments (id bigint not null, user_id bigint not null, post_id bigint not null, body text not null, primary key (user_id, id))",
    "insert into countries values ('de','Germany'),('fr','France'),('jp','Japan'),('br','Brazil'),('us','United States')",
];
const USERS: i64 = 2000;
const POSTS: i64 = 6000;
const COMMENTS: i64 = 12000;

pub fn run(shards: usize, port: u16) -> Result<(), CliError> {
    if shards == 0 || shards > 16 {
        return Err(CliError::Usage("--shards must be between 1 and 16".into()));
    }
    init_logging(Some("warn,shardgate=info"));
    let root = std::env::current_dir()
        .map(|d| d.join(".shardgate").join("demo"))
        .unwrap_or_else(|_| PathBuf::from(".shardgate/demo"));
    let started = Instant::now();
    println!(
        "Starting {shards} PostgreSQL shards under {} ...",
        root.display()
    );
    let mut opts = ClusterOptions::new(&root, shards);
    opts.watchdog = true;
    let cluster = LocalCluster::start(&opts).map_err(|e| CliError::Runtime(e.to_string()))?;
    for s in &cluster.servers {
        s.psql(
            "postgres",
            "create role demo login password 'demo';\ncreate database demo owner demo;",
        )
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    }
    let yaml = config_yaml(&cluster, port);
    let cfg = config::parse(&yaml, Path::new("<demo>")).map_err(CliError::from)?;
    let listen = cfg.listen;
    let rt = runtime()?;
    rt.block_on(async move {
        let serving = tokio::spawn(serve_until_signal(cfg));
        load_sample_data(listen, shards).await?;
        println!(
            "\nshardgate demo is up in {:.1?}: {shards} shards, proxy on {listen}.\n",
            started.elapsed()
        );
        print_tour(listen);
        serving
            .await
            .map_err(|e| CliError::Runtime(format!("the proxy task failed: {e}")))?
    })?;
    drop(cluster);
    println!("Stopped the demo shards and removed {}.", root.display());
    Ok(())
}

fn config_yaml(cluster: &LocalCluster, port: u16) -> String {
    let mut shards = String::new();
    for (i, s) in cluster.servers.iter().enumerate() {
        shards.push_str(&format!(
            "  - {{ name: s{i}, url: \"{}\" }}\n",
            s.url("demo", "demo", "demo")
        ));
    }
    format!(
        "listen: 127.0.0.1:{port}\n\
         database: demo\n\
         admin: {{ user: admin, password: admin }}\n\
         users:\n  - {{ name: demo, password: demo }}\n\
         shards:\n{shards}\
         schemes:\n  by_user: {{ type: hash, buckets: 1024 }}\n\
         tables:\n\
         \x20 users: {{ scheme: by_user, key: id }}\n\
         \x20 posts: {{ scheme: by_user, key: user_id }}\n\
         \x20 comments: {{ scheme: by_user, key: user_id }}\n\
         \x20 countries: {{ reference: true }}\n"
    )
}

async fn load_sample_data(listen: SocketAddr, shards: usize) -> Result<(), CliError> {
    let url = format!("postgres://demo:demo@{listen}/demo");
    // The proxy task starts listening right away; give it a moment on a slow machine.
    let mut last = None;
    for _ in 0..50 {
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                return load(&client, shards).await.map_err(|e| {
                    CliError::Runtime(format!("loading the sample data failed: {e}"))
                });
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(CliError::Runtime(format!(
        "cannot reach the demo proxy on {listen}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// Everything goes through the proxy. The schema is created shard by shard with a hint
/// (DDL on every shard at once needs two-phase commit, not available yet); rows are single-row
/// INSERTs that the proxy routes by key, pipelined.
async fn load(c: &tokio_postgres::Client, shards: usize) -> Result<(), tokio_postgres::Error> {
    for s in 0..shards {
        for stmt in SCHEMA {
            c.batch_execute(&format!("/* shardgate: shard=s{s} */ {stmt}"))
                .await?;
        }
    }
    let countries = ["de", "fr", "jp", "br", "us"];
    let user = c
        .prepare("insert into users (id, name, country) values ($1, $2, $3)")
        .await?;
    let post = c
        .prepare("insert into posts (id, user_id, title) values ($1, $2, $3)")
        .await?;
    let comment = c
        .prepare("insert into comments (id, user_id, post_id, body) values ($1, $2, $3, $4)")
        .await?;
    let ids: Vec<i64> = (1..=USERS).collect();
    for chunk in ids.chunks(500) {
        let inserts = chunk.iter().map(|&id| {
            let name = format!("user {id}");
            let country = countries[(id % 5) as usize];
            let user = &user;
            async move { c.execute(user, &[&id, &name, &country]).await }
        });
        for r in futures_util::future::join_all(inserts).await {
            r?;
        }
    }
    let ids: Vec<i64> = (1..=POSTS).collect();
    for chunk in ids.chunks(500) {
        let inserts = chunk.iter().map(|&id| {
            let (uid, title) = (1 + id % USERS, format!("post {id}"));
            let post = &post;
            async move { c.execute(post, &[&id, &uid, &title]).await }
        });
        for r in futures_util::future::join_all(inserts).await {
            r?;
        }
    }
    let ids: Vec<i64> = (1..=COMMENTS).collect();
    for chunk in ids.chunks(500) {
        let inserts = chunk.iter().map(|&id| {
            let (uid, pid, body) = (1 + id % USERS, 1 + id % POSTS, format!("comment {id}"));
            let comment = &comment;
            async move { c.execute(comment, &[&id, &uid, &pid, &body]).await }
        });
        for r in futures_util::future::join_all(inserts).await {
            r?;
        }
    }
    Ok(())
}

fn print_tour(listen: SocketAddr) {
    println!("Connect with:\n\n  psql postgres://demo:demo@{listen}/demo\n");
    println!("and try:\n");
    println!("  select * from users where id = 42;                       -- one shard");
    println!("  select * from posts where user_id = 42 order by id;      -- one shard, sorted");
    println!("  select id, title from posts where title like 'post 1%';  -- every shard");
    println!("  select * from countries;                                 -- a reference table");
    println!("  begin; update users set name = 'x' where id = 1; commit; -- a transaction");
    println!("  \\d users");
    println!();
    println!("Statements are routed by shard key (try `shardgate explain` on any of them).");
    println!("Not yet available: merges over several shards (ORDER BY/LIMIT/aggregates without");
    println!("a shard key) and writes over several shards: those are refused with SQLSTATE 0A000.");
    println!("\nPress Ctrl-C to stop the proxy and the shards.");
}
