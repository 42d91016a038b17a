//! Transaction pooling against real Postgres: connections rotate between clients at
//! transaction boundaries while prepared statements and settings follow each client; pinning;
//! abandoned transactions; pool exhaustion; session pooling; a shard that is down; shutdown.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::proxy::{code, start_proxy, start_proxy_on, ProxyOpts};

async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn prepared_statement_follows_client_across_rotating_connections() {
    let p = start_proxy(
        "prep_rotate",
        ProxyOpts {
            pool_size: 3,
            ..Default::default()
        },
    )
    .await;
    let setup = p.connect().await;
    setup
        .batch_execute("create table kv (k int primary key, v int); insert into kv select g, g * 2 from generate_series(1, 100) g")
        .await
        .unwrap();
    drop(setup);
    let mut tasks = Vec::new();
    for client in 0..6 {
        let url = p.url("app", "app");
        tasks.push(tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let st = c
                .prepare("select v, pg_backend_pid() from kv where k = $1")
                .await
                .unwrap();
            let mut pids = HashSet::new();
            for i in 0..60 {
                let k = (client * 13 + i) % 100 + 1;
                let row = c.query_one(&st, &[&k]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), k * 2);
                pids.insert(row.get::<_, i32>(1));
            }
            pids
        }));
    }
    let mut all = HashSet::new();
    let mut rotated = false;
    for t in tasks {
        let pids = t.await.unwrap();
        rotated |= pids.len() > 1;
        all.extend(pids);
    }
    // Six clients shared at most three server connections, and clients moved between them.
    assert!(all.len() <= 3, "pool size exceeded: {all:?}");
    assert!(
        rotated,
        "no client ever changed server connection: pooling not exercised"
    );
}

#[tokio::test]
async fn set_parameters_follow_the_client() {
    let p = start_proxy(
        "set_follow",
        ProxyOpts {
            pool_size: 1,
            ..Default::default()
        },
    )
    .await;
    let a = p.connect().await;
    let b = p.connect().await;
    a.batch_execute("set work_mem = '7MB'; set application_name = 'client-a'")
        .await
        .unwrap();
    b.batch_execute("set work_mem = '9MB'").await.unwrap();
    for _ in 0..5 {
        // With one server connection, every statement of a and b lands on the same server
        // process, so each must see its own values replayed.
        let (wa, wb) = (
            a.query_one(
                "select current_setting('work_mem'), current_setting('application_name')",
                &[],
            )
            .await
            .unwrap(),
            b.query_one(
                "select current_setting('work_mem'), current_setting('application_name')",
                &[],
            )
            .await
            .unwrap(),
        );
        assert_eq!(
            (wa.get::<_, String>(0), wa.get::<_, String>(1)),
            ("7MB".into(), "client-a".into())
        );
        assert_eq!(wb.get::<_, String>(0), "9MB");
        assert_ne!(wb.get::<_, String>(1), "client-a");
        assert_eq!(backend_pid(&a).await, backend_pid(&b).await);
    }
    // RESET takes effect; a SET rolled back with its transaction does not stick.
    a.batch_execute("reset work_mem").await.unwrap();
    b.batch_execute("begin; set work_mem = '11MB'; rollback")
        .await
        .unwrap();
    let wa: String = a.query_one("show work_mem", &[]).await.unwrap().get(0);
    let wb: String = b.query_one("show work_mem", &[]).await.unwrap().get(0);
    assert_eq!(wa, "4MB");
    assert_eq!(wb, "9MB");
    // SET LOCAL lasts for its transaction only.
    b.batch_execute("begin; set local work_mem = '12MB'; commit")
        .await
        .unwrap();
    assert_eq!(
        b.query_one("show work_mem", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "9MB"
    );
}

#[tokio::test]
async fn startup_parameters_follow_the_client() {
    let p = start_proxy(
        "startup_params",
        ProxyOpts {
            pool_size: 1,
            ..Default::default()
        },
    )
    .await;
    let url = format!(
        "{}?application_name=from-startup&options=-c%20statement_timeout%3D4321",
        p.url("app", "app")
    );
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let other = p.connect().await;
    for _ in 0..3 {
        other.batch_execute("select 1").await.unwrap();
        let r = c
            .query_one(
                "select current_setting('application_name'), current_setting('statement_timeout')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (r.get::<_, String>(0), r.get::<_, String>(1)),
            ("from-startup".into(), "4321ms".into())
        );
    }
}

#[tokio::test]
async fn session_state_pins_the_client() {
    // Two clients get pinned below; the third connection serves everyone else.
    let p = start_proxy(
        "pinning",
        ProxyOpts {
            pool_size: 3,
            ..Default::default()
        },
    )
    .await;
    let c = p.connect().await;
    c.batch_execute("create temp table scratch (x int); insert into scratch values (1)")
        .await
        .unwrap();
    let pid = backend_pid(&c).await;
    // Other clients churn through the pool; the pinned client keeps its connection and table.
    let others: Vec<_> = futures_util::future::join_all((0..3).map(|_| p.connect())).await;
    for o in &others {
        o.batch_execute("select 1").await.unwrap();
    }
    for _ in 0..5 {
        assert_eq!(backend_pid(&c).await, pid);
        assert_eq!(
            c.query_one("select count(*) from scratch", &[])
                .await
                .unwrap()
                .get::<_, i64>(0),
            1
        );
    }
    // SQL-level PREPARE pins too.
    let d = p.connect().await;
    d.batch_execute("prepare q as select 42").await.unwrap();
    for o in &others {
        o.batch_execute("select 1").await.unwrap();
    }
    let rows: Vec<String> = d
        .simple_query("execute q")
        .await
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(rows, vec!["42"]);
}

#[tokio::test]
async fn vanished_client_leaves_no_lock_behind() {
    let p = start_proxy(
        "vanish",
        ProxyOpts {
            pool_size: 2,
            ..Default::default()
        },
    )
    .await;
    let c = p.connect().await;
    c.batch_execute(
        "create table acct (id int primary key, bal int); insert into acct values (1, 100)",
    )
    .await
    .unwrap();
    {
        let (x, conn) = tokio_postgres::connect(&p.url("app", "app"), tokio_postgres::NoTls)
            .await
            .unwrap();
        let h = tokio::spawn(conn);
        x.batch_execute("begin; update acct set bal = 0 where id = 1")
            .await
            .unwrap();
        h.abort(); // the client disappears mid-transaction
        drop(x);
    }
    // The row lock must be gone (rolled back) promptly, and the update must not have stuck.
    let started = Instant::now();
    c.batch_execute("set lock_timeout = '5s'; update acct set bal = bal + 1 where id = 1")
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let bal: i32 = c
        .query_one("select bal from acct where id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(bal, 101);
    // Every pooled connection is usable and outside any transaction.
    for _ in 0..4 {
        let x = p.connect().await;
        // In one simple query outside a transaction block, the transaction and the statement
        // start together; on a connection left inside a transaction they would not.
        let msgs = x
            .simple_query("select now() = statement_timestamp()")
            .await
            .unwrap();
        let same = msgs.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(
            same.as_deref(),
            Some("t"),
            "a reused connection was still inside a transaction"
        );
    }
}

#[tokio::test]
async fn exhausted_pool_gives_53300() {
    let p = start_proxy(
        "exhaust",
        ProxyOpts {
            pool_size: 1,
            checkout_timeout: "300ms",
            ..Default::default()
        },
    )
    .await;
    let holder = p.connect().await;
    let ok = p.connect().await;
    holder.batch_execute("begin; select 1").await.unwrap();
    // Logging in needs no server connection once the settings were seen: `ok` is already
    // in, and another login with the same settings gets in while the pool is held.
    let late = p.connect().await;
    let e = late.simple_query("select 1").await.unwrap_err();
    assert_eq!(code(&e), "53300", "{e}");
    holder.batch_execute("commit").await.unwrap();
    assert_eq!(
        ok.query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    // A logged-in client waiting on a statement gets 53300 too, and its session survives.
    holder.batch_execute("begin; select 1").await.unwrap();
    let e = ok.simple_query("select 1").await.unwrap_err();
    assert_eq!(code(&e), "53300");
    let e = ok.query_one("select $1::int", &[&1i32]).await.unwrap_err();
    assert_eq!(code(&e), "53300");
    holder.batch_execute("commit").await.unwrap();
    assert_eq!(
        ok.query_one("select $1::int", &[&3i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        3
    );
}

#[tokio::test]
async fn session_pooling_keeps_one_connection() {
    let p = start_proxy(
        "session_mode",
        ProxyOpts {
            pool_mode: "session",
            ..Default::default()
        },
    )
    .await;
    let c = p.connect().await;
    let pid = backend_pid(&c).await;
    for _ in 0..5 {
        c.batch_execute("begin; select 1; commit").await.unwrap();
        assert_eq!(backend_pid(&c).await, pid);
    }
}

#[tokio::test]
async fn a_down_shard_fails_fast_with_08006() {
    // Shard 0 points at a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let db = common::fresh_db("down_shard");
    let p = start_proxy_on(
        &db,
        ProxyOpts {
            shard0_url: Some(format!("postgres://app:app@127.0.0.1:{port}/{db}")),
            connect_timeout: "1s",
            ..Default::default()
        },
    )
    .await;
    let started = Instant::now();
    let e = p.connect_err().await;
    assert_eq!(code(&e), "08006", "{e}");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(msg.contains("\"s0\""), "the shard must be named: {msg}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn shutdown_lets_open_transactions_finish() {
    let p = start_proxy("shutdown", ProxyOpts::default()).await;
    let c = p.connect().await;
    c.batch_execute("create table s (x int)").await.unwrap();
    c.batch_execute("begin; insert into s values (1)")
        .await
        .unwrap();
    let addr = p.addr;
    let db = p.db.clone();
    let stopper = tokio::spawn(p.shutdown(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New clients are refused, the open transaction can still commit.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err() || {
            let url = format!("postgres://app:app@{addr}/{db}");
            tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .is_err()
        }
    );
    c.batch_execute("insert into s values (2); commit")
        .await
        .unwrap();
    let left = stopper.await.unwrap();
    assert_eq!(left, 0);
    assert!(
        c.simple_query("select 1").await.is_err(),
        "idle client is disconnected after shutdown"
    );
}

trait ConnectErr {
    async fn connect_err(&self) -> tokio_postgres::Error;
}

impl ConnectErr for common::proxy::TestProxy {
    async fn connect_err(&self) -> tokio_postgres::Error {
        self.try_connect("app", "app")
            .await
            .err()
            .unwrap_or_else(|| panic!("connection must fail"))
    }
}
