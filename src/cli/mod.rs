//! The command line: clap definitions, logging setup and dispatch, one file per subcommand.
//!
//! Exit status: 0 on success, 1 on a runtime failure, 2 on a usage or config error. Errors
//! are printed to stderr as one clear line (plus detail lines), never as a panic or a debug
//! dump.

mod check;
mod demo;
mod directory;
mod explain;
mod hash_password;
mod serve;
mod twopc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use serve::serve_until_signal;

/// A failure of a subcommand, with the exit status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or a bad config file: exit status 2.
    #[error("{0}")]
    Usage(String),
    /// Something failed while running: exit status 1.
    #[error("{0}")]
    Runtime(String),
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError::Usage(e.to_string())
    }
}

#[derive(Parser, Debug)]
#[command(name = "shardgate", version, about = "A sharding proxy for PostgreSQL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const DEFAULT_CONFIG: &str = "config/shardgate.yaml";

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy.
    #[command(
        after_help = "Example:\n  shardgate serve -c config/shardgate.yaml --listen 127.0.0.1:6432"
    )]
    Serve {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Address to accept clients on (overrides `listen:`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address of the Prometheus endpoint (overrides `metrics_listen:`).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Validate the config, reach every shard and check its prerequisites.
    #[command(after_help = "Example:\n  shardgate check -c config/shardgate.yaml")]
    Check {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the route of a statement without running it.
    #[command(after_help = "Example:\n  shardgate explain \"SELECT * FROM users WHERE id = 42\"")]
    Explain {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        sql: String,
        #[arg(long = "param")]
        params: Vec<String>,
    },
    /// Start local shards with sample data and a proxy in front of them.
    #[command(
        long_about = "Start local PostgreSQL shards under ./.shardgate/demo (initdb, as the \
postgres user when run as root), create a sample schema (users, posts and comments sharded \
by user; countries as a reference table) through the proxy, load sample rows, and serve \
until Ctrl-C, which stops and removes everything the demo started. Needs the PostgreSQL \
server binaries (found with `pg_config --bindir` or under /usr/lib/postgresql/*/bin).",
        after_help = "Example:\n  shardgate demo\n  shardgate demo --shards 2 --port 7432 --metrics-port 7930\n\n\
Then, in another terminal:\n  psql postgres://demo:demo@127.0.0.1:6432/demo"
    )]
    Demo {
        /// How many shards to start (1 to 16).
        #[arg(long, default_value_t = 4)]
        shards: usize,
        /// Port of the proxy on 127.0.0.1.
        #[arg(long, default_value_t = 6432)]
        port: u16,
        /// Port of the Prometheus endpoint (/metrics) on 127.0.0.1.
        #[arg(long, default_value_t = 9930)]
        metrics_port: u16,
    },
    /// Move buckets between shards online.
    Reshard {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List or recover in-doubt two-phase transactions.
    #[command(subcommand)]
    Twopc(twopc::TwopcCommand),
    /// Read and change directory-scheme entries.
    Directory {
        #[command(subcommand)]
        command: directory::DirectoryCommand,
    },
    /// Read a password on standard input and print a SCRAM-SHA-256 verifier for `users:`.
    #[command(after_help = "Example:\n  echo -n 's3cret' | shardgate hash-password")]
    HashPassword,
}

/// Parse the command line, run the subcommand, and map the outcome to an exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            metrics_listen,
        } => serve::run(&config, listen, metrics_listen),
        Command::Check { config } => check::run(&config),
        Command::Demo {
            shards,
            port,
            metrics_port,
        } => demo::run(shards, port, metrics_port),
        Command::HashPassword => hash_password::run(),
        Command::Explain {
            config,
            sql,
            params,
        } => explain::run(&config, &sql, &params),
        Command::Reshard { .. } => not_yet("reshard", "online resharding"),
        Command::Twopc(cmd) => twopc::run(cmd),
        Command::Directory { command } => directory::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(m)) => {
            eprintln!("shardgate: {m}");
            ExitCode::from(2)
        }
        Err(CliError::Runtime(m)) => {
            eprintln!("shardgate: {m}");
            ExitCode::from(1)
        }
    }
}

fn not_yet(cmd: &str, feature: &str) -> Result<(), CliError> {
    Err(CliError::Runtime(format!(
        "`shardgate {cmd}` is not available yet: it arrives with {feature}"
    )))
}

/// Start logging: `RUST_LOG` wins, then the config's `log_level`, then `info`.
pub fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(format!("cannot start the async runtime: {e}")))
}
