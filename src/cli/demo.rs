//! `shardgate demo`: local shards, a sample schema loaded through the proxy, and the proxy on
//! a port, until Ctrl-C (SPEC section 14).
//!
//! The shards are throwaway servers from `localpg` under `./.shardgate/demo` (durability off),
//! removed on exit; a second run starts from scratch, and a run after a crash cleans up what
//! the first one left (the `localpg` owner file and watchdog). The schema and rows go through
//! the proxy itself, the way an application would send them: DDL on the sharded tables runs
//! on every shard, the reference rows are written to every shard, and the sample rows are
//! `COPY`ed in and split by key. The tour it prints is a list of complete `psql`/`curl`
//! commands, and `tests/demo.rs` runs each of them, so the printed examples cannot rot.
//! It deliberately has no options beyond the shard count and the ports: it is a showcase, not
//! a way to run production servers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures_util::SinkExt;

use super::{init_logging, runtime, serve_until_signal, CliError};
use crate::config::{self, Config};
use crate::localpg::{ClusterOptions, LocalCluster};
use crate::router::{Decision, NoDirectory, Params, Router};

/// Run on every shard through the proxy (DDL on configured tables fans out atomically).
const SCHEMA: &[&str] = &[
    "CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, country text NOT NULL, \
     created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE posts (id bigint NOT NULL, user_id bigint NOT NULL, title text NOT NULL, \
     likes int NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(), \
     PRIMARY KEY (user_id, id))",
    "CREATE TABLE comments (id bigint NOT NULL, user_id bigint NOT NULL, post_id bigint NOT NULL, \
     body text NOT NULL, PRIMARY KEY (user_id, id))",
];
const COUNTRIES: [(&str, &str); 6] = [
    ("br", "Brazil"),
    ("de", "Germany"),
    ("fr", "France"),
    ("in", "India"),
    ("jp", "Japan"),
    ("us", "United States"),
];
const FIRST_NAMES: [&str; 8] = [
    "Ada", "Bo", "Chen", "Dara", "Emil", "Fatima", "Goro", "Hana",
];
const USERS: i64 = 2000;
const POSTS: i64 = 6000;
const COMMENTS: i64 = 12000;

/// Where the demo lives, relative to the working directory.
const DEMO_DIR: &str = ".shardgate/demo";

pub fn run(shards: usize, port: u16, metrics_port: u16) -> Result<(), CliError> {
    if shards == 0 || shards > 16 {
        return Err(CliError::Usage("--shards must be between 1 and 16".into()));
    }
    if port == metrics_port {
        return Err(CliError::Usage(
            "--port and --metrics-port must differ".into(),
        ));
    }
    init_logging(Some("warn,shardgate=info"));
    let root = std::env::current_dir()
        .map(|d| d.join(DEMO_DIR))
        .unwrap_or_else(|_| PathBuf::from(DEMO_DIR));
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
            "CREATE ROLE demo LOGIN PASSWORD 'demo';\nCREATE DATABASE demo OWNER demo;",
        )
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    }
    // The config is written next to the shards so that `shardgate explain -c` and the admin
    // `RELOAD` can read it; it goes away with them.
    let config_path = cluster.root.join("shardgate.yaml");
    std::fs::write(&config_path, config_yaml(&cluster, port, metrics_port))
        .map_err(|e| CliError::Runtime(format!("cannot write {}: {e}", config_path.display())))?;
    let cfg = config::load(&config_path)?;
    let tour = Tour::new(&cfg, &config_path);
    let listen = cfg.listen;
    let rt = runtime()?;
    rt.block_on(async move {
        let serving = tokio::spawn(serve_until_signal(cfg));
        let loaded = load_sample_data(listen).await;
        if serving.is_finished() {
            // A Ctrl-C while loading stopped the proxy; the load error that caused is noise.
            println!("Interrupted while loading the sample data.");
        } else {
            loaded?;
            println!(
                "\nshardgate demo is up in {:.1?}: {shards} shards, {USERS} users, {POSTS} \
                 posts, {COMMENTS} comments.\n",
                started.elapsed()
            );
            tour.print();
        }
        serving
            .await
            .map_err(|e| CliError::Runtime(format!("the proxy task failed: {e}")))?
    })?;
    drop(cluster);
    println!("Stopped the demo shards and removed {}.", root.display());
    Ok(())
}

fn config_yaml(cluster: &LocalCluster, port: u16, metrics_port: u16) -> String {
    let mut shards = String::new();
    for (i, s) in cluster.servers.iter().enumerate() {
        shards.push_str(&format!(
            "  - {{ name: s{i}, url: \"{}\" }}\n",
            s.url("demo", "demo", "demo")
        ));
    }
    format!(
        "# Written by `shardgate demo`; removed when the demo stops.\n\
         listen: 127.0.0.1:{port}\n\
         metrics_listen: 127.0.0.1:{metrics_port}\n\
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
                return load(&client).await.map_err(|e| {
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

/// Everything goes through the proxy: the DDL and the reference rows to every shard, the
/// sample rows as `COPY ... FROM STDIN`, which the proxy splits by key and commits on all
/// shards together.
async fn load(c: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    for stmt in SCHEMA {
        c.batch_execute(stmt).await?;
    }
    let values: Vec<String> = COUNTRIES
        .iter()
        .map(|(code, name)| format!("('{code}', '{name}')"))
        .collect();
    c.batch_execute(&format!(
        "INSERT INTO countries (code, name) VALUES {}",
        values.join(", ")
    ))
    .await?;

    let users = (1..=USERS).map(|id| {
        let first = FIRST_NAMES[(id % FIRST_NAMES.len() as i64) as usize];
        let country = COUNTRIES[(id * 7 % COUNTRIES.len() as i64) as usize].0;
        format!("{id}\t{first} {id}\t{country}\n")
    });
    copy_in(c, "COPY users (id, name, country) FROM STDIN", users).await?;
    let posts = (1..=POSTS).map(|id| {
        let user = 1 + (id * 37) % USERS;
        let likes = (id * 7919) % 500;
        format!("{id}\t{user}\tpost {id} by user {user}\t{likes}\n")
    });
    copy_in(
        c,
        "COPY posts (id, user_id, title, likes) FROM STDIN",
        posts,
    )
    .await?;
    let comments = (1..=COMMENTS).map(|id| {
        let (user, post) = (1 + (id * 13) % USERS, 1 + id % POSTS);
        format!("{id}\t{user}\t{post}\tcomment {id}\n")
    });
    copy_in(
        c,
        "COPY comments (id, user_id, post_id, body) FROM STDIN",
        comments,
    )
    .await?;
    c.batch_execute("ANALYZE users").await?;
    c.batch_execute("ANALYZE posts").await?;
    c.batch_execute("ANALYZE comments").await
}

async fn copy_in(
    c: &tokio_postgres::Client,
    statement: &str,
    rows: impl Iterator<Item = String>,
) -> Result<(), tokio_postgres::Error> {
    let sink = c.copy_in::<_, bytes::Bytes>(statement).await?;
    futures_util::pin_mut!(sink);
    let text: String = rows.collect();
    sink.send(bytes::Bytes::from(text)).await?;
    sink.finish().await?;
    Ok(())
}

/// The printed tour: complete commands, so a reader can paste them and a test can run them.
struct Tour {
    app_url: String,
    admin_url: String,
    metrics_url: Option<String>,
    config_path: PathBuf,
    /// Two users on different shards, for the cross-shard transaction (the same user twice
    /// when there is one shard).
    pair: (i64, i64),
}

impl Tour {
    fn new(cfg: &Config, config_path: &Path) -> Tour {
        Tour {
            app_url: format!("postgres://demo:demo@{}/demo", cfg.listen),
            admin_url: format!("postgres://admin:admin@{}/shardgate", cfg.listen),
            metrics_url: cfg.metrics_listen.map(|m| format!("http://{m}/metrics")),
            config_path: config_path.to_path_buf(),
            pair: users_on_two_shards(cfg),
        }
    }

    fn print(&self) {
        let app = &self.app_url;
        let (a, b) = self.pair;
        println!("Connect with:\n\n  psql {app}\n");
        println!("Or try these commands in another terminal:\n");
        let examples: [(&str, String); 7] = [
            (
                "one shard: the key is in the WHERE clause",
                format!("psql {app} -c \"SELECT id, name, country FROM users WHERE id = 42\""),
            ),
            (
                "a sharded table joined with a reference table still goes to one shard",
                format!(
                    "psql {app} -c \"SELECT u.name, c.name AS country FROM users u \
                     JOIN countries c ON c.code = u.country WHERE u.id = 42\""
                ),
            ),
            (
                "every shard, merged: the five most liked posts (k-way merge, LIMIT)",
                format!(
                    "psql {app} -c \"SELECT id, user_id, likes FROM posts \
                     ORDER BY likes DESC, id LIMIT 5\""
                ),
            ),
            (
                "every shard, merged: an aggregate with GROUP BY",
                format!(
                    "psql {app} -c \"SELECT country, count(*) AS users FROM users \
                     GROUP BY country ORDER BY country\""
                ),
            ),
            (
                "a transaction over two shards: committed with two-phase commit",
                format!(
                    "psql {app} -c \"BEGIN\" \
                     -c \"UPDATE posts SET likes = likes + 1 WHERE user_id = {a}\" \
                     -c \"UPDATE posts SET likes = likes + 1 WHERE user_id = {b}\" \
                     -c \"COMMIT\""
                ),
            ),
            (
                "refused, not answered wrongly: shardgate cannot merge count(DISTINCT)",
                format!("psql {app} -c \"SELECT count(DISTINCT country) FROM users\""),
            ),
            (
                "the admin console: shards, pools, clients, stats, routes",
                format!("psql {} -c \"SHOW SHARDS\"", self.admin_url),
            ),
        ];
        for (what, command) in &examples {
            println!("  # {what}\n  {command}\n");
        }
        println!(
            "  # where a statement would go, without running it\n  \
             shardgate explain -c {} \"SELECT * FROM comments WHERE user_id = 7\"\n",
            self.config_path.display()
        );
        if let Some(url) = &self.metrics_url {
            println!("  # Prometheus metrics\n  curl -s {url}\n");
        }
        println!("Press Ctrl-C to stop the proxy and the shards.");
    }
}

/// Two user ids that live on different shards, found with the proxy's own router and the
/// bucket map the config seeds (a new demo's catalog holds exactly that map).
fn users_on_two_shards(cfg: &Config) -> (i64, i64) {
    let router = Router::new(Arc::new(cfg.clone()));
    let shard_of = |id: i64| {
        let sql = format!("SELECT 1 FROM users WHERE id = {id}");
        match router.decide(
            &router.plan(&sql),
            &Params::new(&[], Vec::new()),
            &NoDirectory,
        ) {
            Decision::Route(r) if r.shards.len() == 1 => Some(r.shards[0]),
            _ => None,
        }
    };
    let first = shard_of(1);
    let other = (2..=USERS).find(|&id| shard_of(id).is_some_and(|s| Some(s) != first));
    (1, other.unwrap_or(1))
}
