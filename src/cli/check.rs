//! `shardgate check`: validate the config, reach every shard and the catalog, and check the
//! prerequisites later features rely on (`max_prepared_transactions > 0` for two-phase
//! commit, `wal_level = logical` for resharding). Prints one line per shard; exits 1 when a
//! shard cannot be reached or lacks a prerequisite.

use std::path::Path;
use std::time::Duration;

use super::{runtime, CliError};
use crate::config::{self, PgTarget};

pub fn run(path: &Path) -> Result<(), CliError> {
    let cfg = config::load(path)?;
    println!(
        "config {}: ok ({} shards, {} tables)",
        path.display(),
        cfg.shards.len(),
        cfg.tables.len()
    );
    // A certificate that cannot be used stops `serve`; say so here too, without the servers.
    let mut tls_problems = 0;
    if let Some(t) = &cfg.tls {
        match crate::tls::acceptor(t) {
            Ok(_) => println!("tls {}: ok (require: {})", t.cert.display(), t.require),
            Err(e) => {
                println!("{e}");
                tls_problems = 1;
            }
        }
    }
    let timeout = cfg.pool.connect_timeout;
    let problems = runtime()?.block_on(async {
        let mut problems = tls_problems;
        for shard in &cfg.shards {
            match probe(&shard.target, timeout).await {
                Ok(facts) => {
                    let mut notes = Vec::new();
                    if facts.max_prepared_transactions == 0 {
                        notes.push("max_prepared_transactions is 0: two-phase commit needs it > 0 (server restart)");
                    }
                    if facts.wal_level != "logical" {
                        notes.push("wal_level is not logical: resharding needs wal_level=logical (server restart)");
                    }
                    let state = if notes.is_empty() { "ok" } else { "WARN" };
                    println!(
                        "shard {} {}: {state} (PostgreSQL {}, max_prepared_transactions={}, wal_level={})",
                        shard.name,
                        shard.target.redacted_url(),
                        facts.version,
                        facts.max_prepared_transactions,
                        facts.wal_level
                    );
                    for n in &notes {
                        println!("  - {n}");
                    }
                    problems += notes.len();
                }
                Err(e) => {
                    println!("shard {} {}: UNREACHABLE: {e}", shard.name, shard.target.redacted_url());
                    problems += 1;
                }
            }
        }
        problems
    });
    if problems > 0 {
        return Err(CliError::Runtime(format!("{problems} problem(s) found")));
    }
    Ok(())
}

struct Facts {
    version: String,
    max_prepared_transactions: i64,
    wal_level: String,
}

async fn probe(t: &PgTarget, timeout: Duration) -> Result<Facts, String> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&t.host)
        .port(t.port)
        .dbname(&t.dbname)
        .user(&t.user)
        .ssl_mode(crate::catalog::ssl_mode(t.sslmode))
        .connect_timeout(timeout);
    if let Some(p) = &t.password {
        pg.password(p);
    }
    let (client, conn) = pg
        .connect(crate::tls::make_tls_connect())
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let show = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .map(|r| r.get::<_, String>(0))
                .map_err(|e| e.to_string())
        }
    };
    Ok(Facts {
        version: show("server_version").await?,
        max_prepared_transactions: show("max_prepared_transactions")
            .await?
            .parse()
            .unwrap_or(0),
        wal_level: show("wal_level").await?,
    })
}
