//! Operations: config reload (admin RELOAD and SIGHUP to the real binary) while clients stay
//! connected, a refused bad file, PAUSE/RESUME, SHOW CLIENTS/STATS through psql, and a shard
//! server stopped mid-test (fast 08006 naming it, `shardgate_shard_up`, SHOW SHARDS, and the
//! pool reconnecting by itself).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::proxy::{admin_psql, code, config_yaml, ProxyOpts, TestProxy};
use shardgate::config;
use shardgate::frontend::Proxy;

const ADMIN: &str = "admin: { user: admin, password: adminpw }\n";

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sg-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A proxy started from a config file (so RELOAD has a file to re-read).
async fn proxy_from_file(path: &std::path::Path, db: &str) -> TestProxy {
    let cfg = config::load(path).unwrap_or_else(|e| panic!("{e}"));
    let running = Proxy::new(cfg)
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    TestProxy {
        addr: running.addr,
        db: db.to_owned(),
        running: Some(running),
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Config v2: a third shard, a sharded table on a new hash scheme, a new user, pool size 3.
fn grown_yaml(db: &str) -> String {
    let base = config_yaml(
        db,
        &ProxyOpts {
            shards: 3,
            pool_size: 3,
            extra: format!(
                "{ADMIN}schemes:\n  by_user: {{ type: hash, buckets: 8 }}\ntables:\n  things: {{ scheme: by_user, key: id }}\n"
            ),
            ..Default::default()
        },
    );
    base.replace(
        "  - { name: other, password: secret }\n",
        "  - { name: other, password: secret }\n  - { name: newbie, password: fresh }\n",
    )
}

#[tokio::test]
async fn reload_applies_new_config_without_dropping_clients() {
    let db = common::fresh_db("reload");
    let path = temp_file("reload.yaml");
    let v1 = config_yaml(
        &db,
        &ProxyOpts {
            extra: ADMIN.into(),
            ..Default::default()
        },
    );
    std::fs::write(&path, &v1).unwrap();
    let p = proxy_from_file(&path, &db).await;
    let port = p.addr.port();
    let c1 = p.connect().await;
    c1.simple_query("select 1").await.unwrap();
    // Before: no user newbie, `things` is unconfigured (default shard), two shards.
    let e = p.try_connect("newbie", "fresh").await.unwrap_err();
    assert!(code(&e).starts_with("28"), "{e}");
    let route = text(
        &admin_psql(
            port,
            "SHOW ROUTE select * from things where id = 1",
            "adminpw",
        )
        .await,
    );
    assert!(
        route.contains("route|default") && !route.contains("bucket"),
        "{route}"
    );

    std::fs::write(&path, grown_yaml(&db)).unwrap();
    let out = admin_psql(port, "RELOAD", "adminpw").await;
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("RELOAD") && t.contains("shards added: s2"),
        "{t}"
    );

    // The client connected before the reload is still there and can reach the new shard.
    c1.simple_query("SET shardgate.shard = 's2'").await.unwrap();
    let rows = c1
        .query("select current_setting('port')", &[])
        .await
        .unwrap();
    let want = common::cluster().servers[2].port.to_string();
    assert_eq!(rows[0].get::<_, String>(0), want);
    c1.simple_query("RESET shardgate.shard").await.unwrap();
    // New user, new table routing, new pool size, new shard listed.
    let newbie = p.try_connect("newbie", "fresh").await.unwrap();
    newbie.simple_query("select 1").await.unwrap();
    let route = text(
        &admin_psql(
            port,
            "SHOW ROUTE select * from things where id = 1",
            "adminpw",
        )
        .await,
    );
    assert!(
        route.contains("route|single") && route.contains("key 1 -> bucket"),
        "{route}"
    );
    let pools = text(&admin_psql(port, "SHOW POOLS", "adminpw").await);
    assert!(pools.contains("|transaction|3"), "{pools}");
    let shards = text(&admin_psql(port, "SHOW SHARDS", "adminpw").await);
    assert!(shards.contains("(3 rows)"), "{shards}");

    // A bad file is refused and the running config stays.
    std::fs::write(&path, "shards: [\n").unwrap();
    let out = admin_psql(port, "RELOAD", "adminpw").await;
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("config not reloaded"),
        "{t}"
    );
    // Removing a shard needs a restart: refused too.
    std::fs::write(&path, &v1).unwrap();
    let t = text(&admin_psql(port, "RELOAD", "adminpw").await);
    assert!(t.contains("shard \"s2\" was removed"), "{t}");
    p.try_connect("newbie", "fresh").await.unwrap();
    let shards = text(&admin_psql(port, "SHOW SHARDS", "adminpw").await);
    assert!(shards.contains("(3 rows)"), "{shards}");
    c1.simple_query("select 1").await.unwrap();
}

#[tokio::test]
async fn sighup_reloads_the_real_binary() {
    let db = common::fresh_db("sighup");
    let path = temp_file("sighup.yaml");
    let v1 = config_yaml(&db, &ProxyOpts::default());
    std::fs::write(&path, &v1).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["serve", "-c"])
        .arg(&path)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = |u: &str, pw: &str| format!("postgres://{u}:{pw}@127.0.0.1:{port}/{db}");
    let connect = |u: &'static str, pw: &'static str| {
        let url = url(u, pw);
        async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(c)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let app = loop {
        match connect("app", "app").await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => panic!("proxy did not come up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(connect("newbie", "fresh").await.is_err());
    std::fs::write(
        &path,
        v1.replace(
            "  - { name: other, password: secret }\n",
            "  - { name: other, password: secret }\n  - { name: newbie, password: fresh }\n",
        ),
    )
    .unwrap();
    unsafe_kill(child.id(), libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect("newbie", "fresh").await {
            Ok(c) => {
                c.simple_query("select 1").await.unwrap();
                break;
            }
            Err(e) if Instant::now() > deadline => panic!("SIGHUP did not add the user: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    // The connection made before the reload still works.
    app.simple_query("select 1").await.unwrap();
    drop(app);
    unsafe_kill(child.id(), libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

fn unsafe_kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process we spawned; no memory is involved.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill failed");
}

#[tokio::test]
async fn pause_waits_for_transactions_and_resume_releases_waiters() {
    let p = common::proxy::start_proxy(
        "pause",
        ProxyOpts {
            extra: ADMIN.into(),
            ..Default::default()
        },
    )
    .await;
    let port = p.addr.port();
    let a = p.connect().await;
    let b = p.connect().await;
    a.simple_query("begin").await.unwrap();
    a.simple_query("select 1").await.unwrap();
    let pause = tokio::spawn(async move { admin_psql(port, "PAUSE", "adminpw").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pause.is_finished(),
        "PAUSE returned while a transaction held a connection"
    );
    // SHOW CLIENTS lists both clients; one is active (in its transaction).
    let clients = text(&admin_psql(port, "SHOW CLIENTS", "adminpw").await);
    assert!(
        clients.starts_with("type|user|database|state|addr|port|connect_time|request_time"),
        "{clients}"
    );
    assert!(
        clients.contains("|app|") && clients.contains("|active|"),
        "{clients}"
    );
    // The transaction in progress goes on while paused, and PAUSE completes when it ends.
    a.simple_query("select 2").await.unwrap();
    a.simple_query("commit").await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), pause)
        .await
        .expect("PAUSE returns once connections are released")
        .unwrap();
    assert!(
        out.status.success() && text(&out).contains("PAUSE"),
        "{}",
        text(&out)
    );
    // A new request waits until RESUME.
    let waiting = tokio::spawn(async move {
        b.query_one("select 42", &[])
            .await
            .map(|r| r.get::<_, i32>(0))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a request ran while paused");
    let clients = text(&admin_psql(port, "SHOW CLIENTS", "adminpw").await);
    assert!(clients.contains("|waiting|"), "{clients}");
    let out = admin_psql(port, "RESUME", "adminpw").await;
    assert!(text(&out).contains("RESUME"), "{}", text(&out));
    let v = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting request runs after RESUME")
        .unwrap()
        .unwrap();
    assert_eq!(v, 42);
    let stats = text(&admin_psql(port, "SHOW STATS", "adminpw").await);
    assert!(
        stats.starts_with("database|route|total_query_count|total_query_time|avg_query_time"),
        "{stats}"
    );
    // 'select 1', 'select 2', 'select 42' were routed (BEGIN and COMMIT are answered locally
    // or follow the transaction): at least three default-route statements.
    let default_row = stats
        .lines()
        .find(|l| l.contains("|default|"))
        .unwrap_or_else(|| panic!("{stats}"));
    let n: u64 = default_row.split('|').nth(2).unwrap().parse().unwrap();
    assert!(n >= 3, "{stats}");
    let e = text(&admin_psql(port, "RESUME", "adminpw").await);
    assert!(e.contains("not paused"), "{e}");
}

#[tokio::test]
async fn a_stopped_shard_fails_fast_is_reported_and_comes_back() {
    let cluster = std::sync::Arc::new(common::private_cluster(2));
    let mut shards = String::new();
    for (i, s) in cluster.servers.iter().enumerate() {
        let (c, conn) = tokio_postgres::connect(&s.url("app", "app", "app"), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.batch_execute("create table users (id bigint primary key, name text)")
            .await
            .unwrap();
        shards.push_str(&format!(
            "  - {{ name: s{i}, url: \"{}\" }}\n",
            s.url("app", "app", "app")
        ));
    }
    let yaml = format!(
        "listen: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\ndatabase: app\n{ADMIN}users:\n  - {{ name: app, password: app }}\n\
         pool: {{ size: 5, connect_timeout: 2s }}\nshards:\n{shards}default_shard: s0\n\
         schemes:\n  by_user: {{ type: hash, buckets: 8 }}\ntables:\n  users: {{ scheme: by_user, key: id }}\n"
    );
    let cfg = config::parse(&yaml, std::path::Path::new("down.yaml")).unwrap();
    let running = Proxy::new(cfg)
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let metrics = running.metrics_addr.unwrap();
    let port = running.addr.port();
    let (c, conn) = tokio_postgres::connect(
        &format!("postgres://app:app@127.0.0.1:{port}/app"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // A key of each shard (buckets 0-3 on s0, 4-7 on s1).
    let owner = |k: i64| {
        let b = shardgate::router::hash::bucket_of(&shardgate::router::KeyValue::Int(k), 8);
        (b as usize * 2) / 8
    };
    let k0 = (1..).find(|&k| owner(k) == 0).unwrap();
    let k1 = (1..).find(|&k| owner(k) == 1).unwrap();
    for k in [k0, k1] {
        c.execute("insert into users (id, name) values ($1, 'x')", &[&k])
            .await
            .unwrap();
    }
    let cl = cluster.clone();
    tokio::task::spawn_blocking(move || cl.servers[1].stop().unwrap())
        .await
        .unwrap();

    let started = Instant::now();
    let e = c
        .query("select * from users where id = $1", &[&k1])
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(code(&e), "08006", "{e}");
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains("\"s1\""), "{msg}");
    // Statements that do not need s1 go on.
    let rows = c
        .query("select * from users where id = $1", &[&k0])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let page = scrape(metrics).await;
    assert!(
        page.contains("shardgate_shard_up{shard=\"s1\"} 0"),
        "{page}"
    );
    assert!(
        page.contains("shardgate_shard_up{shard=\"s0\"} 1"),
        "{page}"
    );
    assert!(
        page.contains("shardgate_errors_total{kind=\"shard_unavailable\"} 1"),
        "{page}"
    );
    let shards = text(&admin_psql(port, "SHOW SHARDS", "adminpw").await);
    assert!(
        shards.contains("|s1|") || shards.contains("s1|"),
        "{shards}"
    );
    let s1 = shards.lines().find(|l| l.starts_with("s1|")).unwrap();
    assert!(s1.contains("|false|"), "{shards}");

    // Back up: the health check notices without any client traffic, and queries work again.
    let cl = cluster.clone();
    tokio::task::spawn_blocking(move || cl.servers[1].start().unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page = scrape(metrics).await;
        if page.contains("shardgate_shard_up{shard=\"s1\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "s1 never came back:\n{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = c
        .query("select * from users where id = $1", &[&k1])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    running.shutdown(Duration::from_secs(1)).await;
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
