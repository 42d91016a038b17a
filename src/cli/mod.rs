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
mod reshard;
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
        long_about = "Run the proxy: accept clients on `listen`, route each statement to its \
shard(s), serve Prometheus metrics at `metrics_listen` (/metrics), and run 2PC recovery in the \
background. SIGHUP re-reads the config file (a bad file is refused and the running config \
stays); SIGTERM or SIGINT stop accepting clients and let open transactions finish for up to \
30 seconds.",
        after_help = "Examples:\n  shardgate serve -c config/shardgate.yaml\n  \
shardgate serve -c config/shardgate.yaml --listen 0.0.0.0:6432 --metrics-listen 0.0.0.0:9930\n  \
kill -HUP <pid>    # reload the config"
    )]
    Serve {
        /// The configuration file.
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
    #[command(
        long_about = "Validate the config file, connect to every shard and the catalog with the \
configured credentials, and check each shard's prerequisites (max_prepared_transactions for \
two-phase commit, wal_level=logical for resharding). Exit status 0 when all is well, 1 when a \
shard cannot be reached or lacks a prerequisite, 2 when the file does not load.",
        after_help = "Example:\n  shardgate check -c config/shardgate.yaml"
    )]
    Check {
        /// The configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the route of a statement without running it.
    #[command(
        long_about = "Print where a statement would go (route class, shards, the reason, what a \
fan-out would merge) from the config alone: no shard is contacted, hash schemes use the bucket \
map the config seeds, and directory keys are shown as lookups. The admin console's \
`SHOW ROUTE <sql>` answers the same question against the live map.",
        after_help = "Examples:\n  shardgate explain -c config/shardgate.yaml \"SELECT * FROM users WHERE id = 42\"\n  \
shardgate explain \"SELECT * FROM posts WHERE user_id = $1\" --param 42"
    )]
    Explain {
        /// The configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The statement (quote it for the shell).
        sql: String,
        /// The text value of $1, $2, ... in order; repeat for each parameter.
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
    #[command(
        subcommand,
        after_help = "Examples:\n  shardgate reshard plan -c config/shardgate.yaml --scheme by_user --shards s0,s1,s2\n  \
shardgate reshard run -c config/shardgate.yaml --scheme by_user --shards s0,s1,s2 --yes --admin-user postgres\n  \
shardgate reshard status -c config/shardgate.yaml"
    )]
    Reshard(reshard::ReshardCommand),
    /// List or recover in-doubt two-phase transactions.
    #[command(
        subcommand,
        after_help = "Examples:\n  shardgate twopc list -c config/shardgate.yaml\n  \
shardgate twopc recover -c config/shardgate.yaml"
    )]
    Twopc(twopc::TwopcCommand),
    /// Read and change directory-scheme entries.
    #[command(
        after_help = "Examples:\n  shardgate directory set -c config/directory.yaml by_tenant acme s2\n  \
shardgate directory get -c config/directory.yaml by_tenant acme"
    )]
    Directory {
        #[command(subcommand)]
        command: directory::DirectoryCommand,
    },
    /// Read a password on standard input and print a SCRAM-SHA-256 verifier for `users:`.
    #[command(
        long_about = "Read a password from standard input (all of it, less one trailing \
newline) and print a SCRAM-SHA-256 verifier to put in `users:` or `admin:` instead of the \
plaintext password.",
        after_help = "Example:\n  echo -n 's3cret' | shardgate hash-password\n\n\
Then, in the config:\n  \
users:\n    - { name: app, password: \"SCRAM-SHA-256$4096:...\" }"
    )]
    HashPassword,
}

/// The command-line definition (for tests that walk every subcommand's help).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
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
        Command::Reshard(cmd) => reshard::run(cmd),
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
