//! `shardgate twopc list|recover`: in-doubt two-phase transactions, and settling them from
//! the catalog's decisions (the same recovery every `serve` runs in the background).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{runtime, CliError};
use crate::catalog::{Catalog, Outcome};
use crate::config::{self, CatalogRef, Config};
use crate::twopc::recovery;

#[derive(Subcommand, Debug)]
pub enum TwopcCommand {
    /// List prepared shardgate transactions on every shard, with their decision and age.
    #[command(after_help = "Example:\n  shardgate twopc list -c config/shardgate.yaml")]
    List {
        /// The configuration file.
        #[arg(short, long, default_value = super::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Commit or roll back in-doubt transactions according to the catalog (undecided ones
    /// older than twopc.orphan_timeout are rolled back).
    #[command(after_help = "Example:\n  shardgate twopc recover -c config/shardgate.yaml")]
    Recover {
        /// The configuration file.
        #[arg(short, long, default_value = super::DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

pub fn run(cmd: TwopcCommand) -> Result<(), CliError> {
    match cmd {
        TwopcCommand::List { config } => with_catalog(&config, |cfg, catalog| async move {
            let (list, unreachable) = recovery::list(&cfg, &catalog)
                .await
                .map_err(|e| CliError::Runtime(e.to_string()))?;
            println!(
                "{:<10} {:<44} {:>9}  {:<10} participants",
                "shard", "gid", "age (s)", "decision"
            );
            for t in &list {
                let d = match t.decision {
                    Some(Outcome::Commit) => "commit",
                    Some(Outcome::Abort) => "abort",
                    None => "undecided",
                };
                println!(
                    "{:<10} {:<44} {:>9.1}  {:<10} {}",
                    t.shard,
                    t.gid,
                    t.age_secs,
                    d,
                    t.participants.join(",")
                );
            }
            println!("({} in-doubt)", list.len());
            for u in &unreachable {
                eprintln!("unreachable: {u}");
            }
            Ok(())
        }),
        TwopcCommand::Recover { config } => with_catalog(&config, |cfg, catalog| async move {
            let r = recovery::recover(&cfg, &catalog)
                .await
                .map_err(|e| CliError::Runtime(e.to_string()))?;
            println!(
                "committed {}, rolled back {}, waiting (undecided, younger than {:?}) {}, decisions forgotten {}",
                r.committed, r.rolled_back, cfg.twopc.orphan_timeout, r.waiting, r.forgotten
            );
            if !r.unreachable.is_empty() {
                return Err(CliError::Runtime(format!(
                    "unreachable shards: {}",
                    r.unreachable.join("; ")
                )));
            }
            Ok(())
        }),
    }
}

fn with_catalog<F, Fut>(path: &Path, f: F) -> Result<(), CliError>
where
    F: FnOnce(Config, Catalog) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let cfg = config::load(path)?;
    runtime()?.block_on(async move {
        let target = match &cfg.catalog {
            CatalogRef::Shard(i) => cfg.shards[*i].target.clone(),
            CatalogRef::Url(t) => t.clone(),
        };
        let catalog = Catalog::connect(&target, cfg.pool.connect_timeout)
            .await
            .map_err(|e| CliError::Runtime(e.to_string()))?;
        catalog
            .ensure_schema()
            .await
            .map_err(|e| CliError::Runtime(e.to_string()))?;
        f(cfg, catalog).await
    })
}
