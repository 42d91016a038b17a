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

const SCHEMA: &str = "
create table countries (code text primary key, name text not null);
create table users (id bigint primary key, name text not null, country text, created_at timestamptz not null default now());
create table posts (id bigint not null, user_id bigint not null, title text not null, created_at timestamptz not null default now(), primary key (user_id, id));
create table comments (id bigint not null, user_id bigint not null, post_id bigint not null, body text not null, primary key (user_id, id));
";

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
        load_sample_data(listen).await?;
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

async fn load_sample_data(listen: SocketAddr) -> Result<(), CliError> {
    let url = format!("postgres://demo:demo@{listen}/demo");
    // The proxy task starts listening right away; give it a moment on a slow machine.
    let mut last = None;
    for _ in 0..50 {
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                let fail = |e: tokio_postgres::Error| {
                    CliError::Runtime(format!("loading the sample data failed: {e}"))
                };
                client.batch_execute(SCHEMA).await.map_err(fail)?;
                client
                    .batch_execute(
                        "insert into countries values ('de','Germany'),('fr','France'),('jp','Japan'),('br','Brazil'),('us','United States');
                         insert into users (id, name, country) select g, 'user ' || g, (array['de','fr','jp','br','us'])[1 + g % 5] from generate_series(1, 2000) g;
                         insert into posts (id, user_id, title) select g, 1 + g % 2000, 'post ' || g from generate_series(1, 6000) g;
                         insert into comments (id, user_id, post_id, body) select g, 1 + g % 2000, 1 + g % 6000, 'comment ' || g from generate_series(1, 12000) g;",
                    )
                    .await
                    .map_err(fail)?;
                return Ok(());
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

fn print_tour(listen: SocketAddr) {
    println!("Connect with:\n\n  psql postgres://demo:demo@{listen}/demo\n");
    println!("and try:\n");
    println!("  select * from users where id = 42;                       -- one user");
    println!("  select id, title from posts order by id desc limit 5;    -- newest posts");
    println!("  select country, count(*) from users group by country;    -- an aggregate");
    println!("  begin; update users set name = 'x' where id = 1; commit; -- a transaction");
    println!("  \\d users");
    println!();
    println!("Note: this build forwards every statement to shard s0; routing by shard key,");
    println!("cross-shard merges and two-phase commit arrive with the next releases.");
    println!("\nPress Ctrl-C to stop the proxy and the shards.");
}
