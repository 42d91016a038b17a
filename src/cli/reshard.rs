//! `shardgate reshard plan|run|status|abort` (SPEC 12): move buckets of a hash scheme between
//! shards while applications keep using the proxy. The work is in `crate::reshard`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{runtime, CliError};
use crate::config;
use crate::reshard::{self, plan};

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The config file (the catalog and shards are read from it).
    #[arg(short, long, default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,
    /// The hash scheme to spread.
    #[arg(long)]
    scheme: String,
    /// The shards the scheme should spread over, comma-separated (they must be in shards:).
    #[arg(long, value_delimiter = ',', required = true)]
    shards: Vec<String>,
    /// The role for publications and subscriptions (REPLICATION; superuser on PostgreSQL 15);
    /// its password is read from SHARDGATE_ADMIN_PASSWORD. Default: each shard URL's user.
    #[arg(long)]
    admin_user: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ReshardCommand {
    /// Print the bucket moves (fewest moves for an even spread) with row and byte estimates.
    #[command(
        after_help = "Example:\n  shardgate reshard plan -c config/shardgate.yaml --scheme by_user --shards s0,s1,s2"
    )]
    Plan {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Carry out the plan online (or resume the scheme's unfinished job).
    #[command(
        after_help = "Example:\n  shardgate reshard run -c config/shardgate.yaml --scheme by_user --shards s0,s1,s2 --yes"
    )]
    Run {
        #[command(flatten)]
        target: Target,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Stop before a step, as if the tool died there (for testing resume/abort):
        /// copying, catch-up or cutover.
        #[arg(long, hide = true)]
        stop_at: Option<String>,
    },
    /// Compare the unfinished job's moving rows on sources and targets (counts, checksums).
    #[command(
        after_help = "Example:\n  shardgate reshard verify -c config/shardgate.yaml --admin-user postgres"
    )]
    Verify {
        /// The config file (the catalog and shards are read from it).
        #[arg(short, long, default_value = super::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The role to read the shards as (password in SHARDGATE_ADMIN_PASSWORD).
        #[arg(long)]
        admin_user: Option<String>,
    },
    /// Show resharding jobs and where they are.
    #[command(after_help = "Example:\n  shardgate reshard status -c config/shardgate.yaml")]
    Status {
        /// The config file (the catalog and shards are read from it).
        #[arg(short, long, default_value = super::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Undo the unfinished job that has not cut over (replication objects, copied rows).
    #[command(after_help = "Example:\n  shardgate reshard abort -c config/shardgate.yaml")]
    Abort {
        /// The config file (the catalog and shards are read from it).
        #[arg(short, long, default_value = super::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The role that created the replication objects (password in SHARDGATE_ADMIN_PASSWORD).
        #[arg(long)]
        admin_user: Option<String>,
    },
}

fn rt(e: String) -> CliError {
    CliError::Runtime(e)
}

pub fn run(cmd: ReshardCommand) -> Result<(), CliError> {
    match cmd {
        ReshardCommand::Plan { target, json } => {
            let cfg = config::load(&target.config)?;
            runtime()?.block_on(async {
                let catalog = reshard::open_catalog(&cfg).await.map_err(rt)?;
                let live = catalog
                    .bucket_map(&target.scheme)
                    .await
                    .map_err(|e| rt(e.to_string()))?
                    .ok_or_else(|| rt(format!("scheme {} has no bucket map yet", target.scheme)))?;
                reshard::scheme_tables(&cfg, &target.scheme).map_err(CliError::Usage)?;
                let moves = plan::plan(&live.shards, &target.shards).map_err(CliError::Usage)?;
                let est = reshard::estimate(&cfg, &target.scheme, &moves, target.admin_user.as_deref())
                    .await
                    .map_err(rt)?;
                let ranges = plan::ranges(&moves);
                if json {
                    let items: Vec<String> = ranges
                        .iter()
                        .map(|r| {
                            format!(
                                "{{\"from\":\"{}\",\"to\":\"{}\",\"first_bucket\":{},\"last_bucket\":{}}}",
                                r.from, r.to, r.first, r.last
                            )
                        })
                        .collect();
                    let totals: Vec<String> = est
                        .iter()
                        .map(|((f, t), e)| {
                            format!(
                                "{{\"from\":\"{f}\",\"to\":\"{t}\",\"rows\":{},\"bytes\":{}}}",
                                e.rows, e.bytes
                            )
                        })
                        .collect();
                    println!(
                        "{{\"scheme\":\"{}\",\"version\":{},\"buckets_moving\":{},\"moves\":[{}],\"estimates\":[{}]}}",
                        target.scheme,
                        live.version,
                        moves.len(),
                        items.join(","),
                        totals.join(",")
                    );
                    return Ok(());
                }
                println!(
                    "scheme {} (bucket map version {}): {} of {} buckets move",
                    target.scheme,
                    live.version,
                    moves.len(),
                    live.shards.len()
                );
                for r in &ranges {
                    println!("  buckets {:>5}-{:<5} {} -> {}", r.first, r.last, r.from, r.to);
                }
                for ((f, t), e) in &est {
                    println!("  {f} -> {t}: about {} rows, {} bytes", e.rows, e.bytes);
                }
                Ok(())
            })
        }
        ReshardCommand::Run {
            target,
            yes,
            stop_at,
        } => {
            let cfg = config::load(&target.config)?;
            if !yes {
                eprintln!("shardgate: this moves data between shards; run `reshard plan` first and pass --yes to go ahead");
                return Err(CliError::Usage("--yes not given".into()));
            }
            let opts = reshard::Options {
                admin_user: target.admin_user.clone(),
                progress: true,
                stop_at,
            };
            runtime()?.block_on(async {
                let out = reshard::run(&cfg, &target.scheme, &target.shards, &opts)
                    .await
                    .map_err(rt)?;
                if out.job == 0 {
                    println!("nothing to move: scheme {} is already spread evenly over those shards", target.scheme);
                    return Ok(());
                }
                println!(
                    "job {}: {} buckets moved; {} rows copied in {:.1} s ({:.0} rows/s); cutover pause {:.0} ms",
                    out.job,
                    out.buckets_moved,
                    out.rows_copied,
                    out.copy_secs,
                    out.rows_copied as f64 / out.copy_secs.max(1e-9),
                    out.pause_ms
                );
                Ok(())
            })
        }
        ReshardCommand::Verify { config, admin_user } => {
            let cfg = config::load(&config)?;
            let opts = reshard::Options {
                admin_user,
                ..Default::default()
            };
            runtime()?.block_on(async {
                let (job, lines) = reshard::verify(&cfg, &opts).await.map_err(rt)?;
                let mut all = true;
                for (line, ok) in &lines {
                    println!("{} {line}", if *ok { "equal  " } else { "differ " });
                    all &= ok;
                }
                if all {
                    println!("job {job}: source and target agree");
                    Ok(())
                } else {
                    Err(rt(format!(
                        "job {job}: source and target differ (replication lag while writes continue, or a problem: the cutover will not switch until they agree)"
                    )))
                }
            })
        }
        ReshardCommand::Status { config } => {
            let cfg = config::load(&config)?;
            runtime()?.block_on(async {
                let catalog = reshard::open_catalog(&cfg).await.map_err(rt)?;
                let jobs = catalog
                    .recent_jobs(10)
                    .await
                    .map_err(|e| rt(e.to_string()))?;
                if jobs.is_empty() {
                    println!("no resharding jobs");
                }
                for j in &jobs {
                    print!("{}", reshard::describe(j));
                }
                Ok(())
            })
        }
        ReshardCommand::Abort { config, admin_user } => {
            let cfg = config::load(&config)?;
            let opts = reshard::Options {
                admin_user,
                ..Default::default()
            };
            runtime()?.block_on(async {
                let id = reshard::abort(&cfg, None, &opts).await.map_err(rt)?;
                println!("job {id} aborted: replication objects dropped, copied rows removed from the targets");
                Ok(())
            })
        }
    }
}
