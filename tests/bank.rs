//! The bank test (SPEC section 7): accounts spread over three shards, clients moving money
//! between random accounts through a shardgate *process*, while that process is killed with
//! SIGKILL and restarted and shard servers are stopped and started at random moments.
//! Afterwards, once recovery has run: the total balance is unchanged, every transfer
//! acknowledged to a client is in the ledger, every account's balance matches its ledger
//! entries, and no prepared transaction is left on any shard.
//!
//! The default run lasts 15 s; `SHARDGATE_BANK_SECS=600 cargo test --test bank -- --nocapture`
//! runs a long one (and prints its figures).

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

const ACCOUNTS: i64 = 60;
const INITIAL: i64 = 1_000;
const CLIENTS: usize = 6;

struct Proxy {
    config: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Proxy {
    fn start(&mut self) {
        let log = std::fs::File::create(self.config.with_extension("log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(["serve", "-c"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn shardgate");
        self.child = Some(child);
        // Ready when it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "shardgate did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGKILL: no shutdown path runs, as in a crash.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_transfers_survive_proxy_and_shard_crashes() {
    let secs: u64 = std::env::var("SHARDGATE_BANK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    // Servers get stopped and started here, so this test has a cluster of its own.
    let cluster = common::private_cluster(3);
    let db = "bank";
    cluster.create_database(db, "app").unwrap();
    for s in &cluster.servers {
        // Acknowledged single-shard commits must survive a server's immediate stop.
        s.psql(db, &format!("alter database {db} set synchronous_commit = on;
             create table accounts (id bigint primary key, balance bigint not null);
             create table ledger (id bigint primary key, src bigint not null, dst bigint not null, amount bigint not null);
             grant all on accounts, ledger to app;"))
            .unwrap();
    }
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sg-bank-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("shardgate.yaml");
    let shards: String = cluster
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "  - {{ name: s{i}, url: \"{}\" }}\n",
                s.url("app", "app", db)
            )
        })
        .collect();
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ndatabase: {db}\nauth_method: trust\nusers:\n  - {{ name: app, password: app }}\n\
             pool: {{ size: 10, checkout_timeout: 5s, connect_timeout: 1s }}\nshards:\n{shards}\
             schemes:\n  by_id: {{ type: hash, buckets: 64 }}\n\
             tables:\n  accounts: {{ scheme: by_id, key: id }}\n  ledger: {{ scheme: by_id, key: id }}\n\
             twopc: {{ enabled: true, orphan_timeout: 2s }}\n"
        ),
    )
    .unwrap();
    let mut proxy = Proxy {
        config: config.clone(),
        port,
        child: None,
    };
    proxy.start();
    let url = format!("postgres://app:app@127.0.0.1:{port}/{db}");
    {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        for id in 1..=ACCOUNTS {
            c.execute(
                "insert into accounts (id, balance) values ($1, $2)",
                &[&id, &INITIAL],
            )
            .await
            .unwrap();
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let attempts = Arc::new(AtomicU64::new(0));
    let next_id = Arc::new(AtomicU64::new(1));
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let (stop, acked, attempts, next_id, url) = (
            stop.clone(),
            acked.clone(),
            attempts.clone(),
            next_id.clone(),
            url.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok((mut c, conn))) = tokio::time::timeout(
                    Duration::from_secs(3),
                    tokio_postgres::connect(&url, tokio_postgres::NoTls),
                )
                .await
                else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                tokio::spawn(conn);
                while !stop.load(Ordering::Relaxed) {
                    let src = rng.random_range(1..=ACCOUNTS);
                    let mut dst = rng.random_range(1..=ACCOUNTS);
                    if dst == src {
                        dst = dst % ACCOUNTS + 1;
                    }
                    let amount = rng.random_range(1..50i64);
                    // Rows are locked in id order, as an application avoids deadlocks that no
                    // single server could detect.
                    let (first, second, d1, d2) = if src < dst {
                        (src, dst, -amount, amount)
                    } else {
                        (dst, src, amount, -amount)
                    };
                    let id = next_id.fetch_add(1, Ordering::Relaxed) as i64;
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let work = async {
                        let t = c.transaction().await?;
                        t.execute(
                            "update accounts set balance = balance + $1 where id = $2",
                            &[&d1, &first],
                        )
                        .await?;
                        t.execute(
                            "update accounts set balance = balance + $1 where id = $2",
                            &[&d2, &second],
                        )
                        .await?;
                        t.execute(
                            "insert into ledger (id, src, dst, amount) values ($1, $2, $3, $4)",
                            &[&id, &src, &dst, &amount],
                        )
                        .await?;
                        t.commit().await
                    };
                    match tokio::time::timeout(Duration::from_secs(10), work).await {
                        Ok(Ok(())) => {
                            acked.lock().unwrap().insert(id);
                        }
                        Ok(Err(e)) if c.is_closed() || e.is_closed() => break,
                        Ok(Err(_)) => {}
                        Err(_) => break,
                    }
                }
            }
        }));
    }

    // Faults: kill the proxy, or stop a shard, at random moments.
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut proxy_kills, mut shard_stops) = (0, 0);
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(700..2000))).await;
        if rng.random_bool(0.5) {
            proxy.kill();
            proxy_kills += 1;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
            proxy.start();
        } else {
            let s = &cluster.servers[rng.random_range(0..3)];
            s.kill().unwrap();
            shard_stops += 1;
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
            s.start().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(20), c).await;
    }

    // Recovery: the restarted proxy recovers in the background; the CLI does the same now.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let out = Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(["twopc", "recover", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        let mut left = 0;
        for s in &cluster.servers {
            left += s
                .psql(db, "select count(*) from pg_prepared_xacts")
                .unwrap()
                .trim()
                .parse::<i64>()
                .unwrap();
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prepared transactions left after recovery: {left}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Invariants, read directly from the shards.
    let mut total = 0i64;
    let mut ledger = Vec::new();
    let mut balances = std::collections::HashMap::new();
    for s in &cluster.servers {
        for line in s
            .psql(db, "select id, balance from accounts")
            .unwrap()
            .lines()
        {
            let (id, bal) = line.split_once('|').unwrap();
            let bal: i64 = bal.parse().unwrap();
            total += bal;
            balances.insert(id.parse::<i64>().unwrap(), bal);
        }
        for line in s
            .psql(db, "select id, src, dst, amount from ledger")
            .unwrap()
            .lines()
        {
            let v: Vec<i64> = line.split('|').map(|x| x.parse().unwrap()).collect();
            ledger.push((v[0], v[1], v[2], v[3]));
        }
    }
    let acked = acked.lock().unwrap().clone();
    let in_ledger: HashSet<i64> = ledger.iter().map(|l| l.0).collect();
    let missing: Vec<_> = acked.iter().filter(|id| !in_ledger.contains(id)).collect();
    let mut expected = std::collections::HashMap::new();
    for &(_, src, dst, amount) in &ledger {
        *expected.entry(src).or_insert(INITIAL) -= amount;
        *expected.entry(dst).or_insert(INITIAL) += amount;
    }
    let mismatched: Vec<_> = (1..=ACCOUNTS)
        .filter(|id| {
            balances.get(id).copied() != Some(expected.get(id).copied().unwrap_or(INITIAL))
        })
        .collect();
    eprintln!(
        "bank: {secs}s, {} transfers attempted, {} acknowledged, {} in the ledger, {proxy_kills} proxy kills, {shard_stops} shard stops",
        attempts.load(Ordering::Relaxed),
        acked.len(),
        ledger.len()
    );
    assert_eq!(balances.len() as i64, ACCOUNTS);
    assert_eq!(total, ACCOUNTS * INITIAL, "money was created or destroyed");
    assert!(
        missing.is_empty(),
        "acknowledged transfers missing from the ledger: {missing:?}"
    );
    assert!(
        mismatched.is_empty(),
        "balances disagree with the ledger for accounts {mismatched:?}"
    );
    assert!(
        acked.len() > 10,
        "too few transfers went through to mean anything: {}",
        acked.len()
    );
    proxy.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
