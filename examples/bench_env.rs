//! Helper for `bench/run.sh`: the parts of the benchmark that are easier in Rust than in
//! shell. It is not a benchmark itself and measures nothing on the forwarding path.
//!
//! ```text
//! bench_env cluster ROOT N PORTFILE
//!     start N throwaway Postgres servers (`localpg::LocalCluster`, named p0..) under ROOT,
//!     write one "name port" line per server to PORTFILE, then wait for SIGTERM/SIGINT and
//!     stop them (a watchdog cleans up if this process is killed).
//! bench_env idle URL N PID
//!     open N client connections to URL (each runs `SELECT 1` once, then stays idle) and
//!     print the resident memory of process PID before and after, and the difference per
//!     connection, as `rss_before_kib rss_after_kib kib_per_conn`.
//! ```
//!
//! It deliberately does not write configs or run pgbench (the script does), and it knows
//! nothing about shards: the script decides what each server is for.

use std::time::Duration;

use shardgate::localpg::{ClusterOptions, LocalCluster};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("cluster") if args.len() == 4 => cluster(&args[1], &args[2], &args[3]),
        Some("idle") if args.len() == 4 => idle(&args[1], &args[2], &args[3]),
        _ => Err("usage: bench_env cluster ROOT N PORTFILE | idle URL N PID".into()),
    };
    if let Err(e) = result {
        eprintln!("bench_env: {e}");
        std::process::exit(1);
    }
}

type Result<T> = std::result::Result<T, String>;

fn cluster(root: &str, n: &str, portfile: &str) -> Result<()> {
    let n: usize = n.parse().map_err(|e| format!("N: {e}"))?;
    let mut opts = ClusterOptions::new(root, n);
    opts.name_prefix = "p".into();
    opts.watchdog = true;
    // Room for PgBouncer's session pool, two proxies' pools and the catalog pools.
    opts.extra_settings = vec![
        ("max_connections".into(), "500".into()),
        ("shared_buffers".into(), "128MB".into()),
    ];
    let cluster = LocalCluster::start(&opts).map_err(|e| e.to_string())?;
    let lines: String = cluster
        .servers
        .iter()
        .map(|s| format!("{} {}\n", s.name, s.port))
        .collect();
    std::fs::write(portfile, lines).map_err(|e| format!("{portfile}: {e}"))?;
    let rt = runtime()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<(), String>(())
    })?;
    drop(cluster);
    Ok(())
}

fn idle(url: &str, n: &str, pid: &str) -> Result<()> {
    let n: usize = n.parse().map_err(|e| format!("N: {e}"))?;
    let pid: u32 = pid.parse().map_err(|e| format!("PID: {e}"))?;
    let rt = runtime()?;
    rt.block_on(async {
        // One connection first, so that the proxy's lazily created state (pools, plans)
        // exists before the baseline is taken.
        let mut clients = Vec::with_capacity(n);
        clients.push(connect(url).await?);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(pid)?;
        while clients.len() < n {
            let batch = (n - clients.len()).min(50);
            let opened = futures_util::future::join_all((0..batch).map(|_| connect(url))).await;
            for c in opened {
                clients.push(c?);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid)?;
        let per = (after as f64 - before as f64) / (n - 1) as f64;
        println!("{before} {after} {per:.1}");
        drop(clients);
        Ok(())
    })
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    tokio::spawn(conn);
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| format!("SELECT 1: {e}"))?;
    Ok(client)
}

/// VmRSS of a process, from /proc.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}
