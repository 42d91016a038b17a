//! TLS against real servers: clients to the proxy (psql, tokio-postgres with rustls), the
//! `tls.require` flag, the proxy to shards per `sslmode` (a private cluster with `ssl = on`,
//! and the shared one with `ssl = off`), and malformed handshakes. Certificates are
//! self-signed, made per test with rcgen; nobody verifies them (see docs/tls.md).

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::proxy::{code, start_proxy, ProxyOpts, TestProxy};
use common::{cluster, private_cluster_with};
use shardgate::config;
use shardgate::frontend::Proxy;
use shardgate::localpg::SslFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The 8-byte SSLRequest packet.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

static CERTS: AtomicUsize = AtomicUsize::new(0);

/// A self-signed certificate and its key, as PEM files in a directory removed on drop.
struct Certs {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    fn new() -> Certs {
        let n = CERTS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sg-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cert dir");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("self-signed certificate");
        let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&cert, made.cert.pem()).expect("write cert");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
        Certs { dir, cert, key }
    }

    /// The `tls:` section for a proxy config.
    fn yaml(&self, require: bool) -> String {
        format!(
            "tls: {{ cert: \"{}\", key: \"{}\", require: {require} }}\n",
            self.cert.display(),
            self.key.display()
        )
    }

    fn files(&self) -> SslFiles {
        SslFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tls_proxy(prefix: &str, certs: &Certs, require: bool) -> TestProxy {
    let opts = ProxyOpts {
        extra: certs.yaml(require),
        ..ProxyOpts::default()
    };
    start_proxy(prefix, opts).await
}

/// tokio-postgres over TLS (`sslmode=require`, certificate not verified) to `url`.
async fn connect_tls(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let url = format!("{url}?sslmode=require");
    let (client, conn) = tokio_postgres::connect(&url, shardgate::tls::make_tls_connect()).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The server's message of a tokio-postgres error (its `Display` only says "db error").
fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn psql_connects_over_tls_and_require_refuses_plaintext() {
    let certs = Certs::new();
    let p = tls_proxy("tls_require", &certs, true).await;
    let out = p
        .psql(
            &["-c", "\\conninfo", "-c", "select 40 + 2"],
            None,
            &[("PGSSLMODE", "require")],
        )
        .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "psql over TLS failed: {stderr}");
    assert!(stdout.contains("SSL connection"), "{stdout}");
    assert!(stdout.contains("42"), "{stdout}");

    let out = p
        .psql(&["-c", "select 1"], None, &[("PGSSLMODE", "disable")])
        .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "plaintext psql was let in");
    assert!(
        stderr.contains("this server requires TLS (SSL); connect with sslmode=require"),
        "{stderr}"
    );
    // The SQLSTATE, which psql does not print for a failed connection.
    let err = p
        .try_connect("app", "app")
        .await
        .expect_err("plaintext tokio-postgres was let in");
    assert_eq!(code(&err), "28000", "{err:?}");
    assert!(message(&err).contains("requires TLS"), "{err:?}");
}

#[tokio::test]
async fn without_require_both_plaintext_and_tls_work() {
    let certs = Certs::new();
    let p = tls_proxy("tls_optional", &certs, false).await;
    for (mode, tls) in [("disable", false), ("require", true), ("prefer", true)] {
        let out = p
            .psql(&["-c", "\\conninfo"], None, &[("PGSSLMODE", mode)])
            .await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "sslmode={mode}: {stderr}");
        assert_eq!(
            stdout.contains("SSL connection"),
            tls,
            "sslmode={mode}: {stdout}"
        );
    }
    let c = p.connect().await;
    let row = c
        .query_one("select 1::int4", &[])
        .await
        .expect("plaintext query");
    assert_eq!(row.get::<_, i32>(0), 1);
}

#[tokio::test]
async fn tokio_postgres_over_tls_queries_prepares_and_cancels() {
    let certs = Certs::new();
    let p = tls_proxy("tls_tokio", &certs, true).await;
    let c = connect_tls(&p.url("app", "app"))
        .await
        .expect("TLS connect");
    c.batch_execute("create table t (id int primary key, v text)")
        .await
        .expect("create");
    // Extended protocol with parameters, a reused prepared statement, and a big row (several
    // TLS records each way).
    let st = c
        .prepare("insert into t values ($1, $2)")
        .await
        .expect("prepare");
    let big = "x".repeat(200_000);
    for id in 0..20i32 {
        let v = if id == 7 {
            big.clone()
        } else {
            format!("v{id}")
        };
        c.execute(&st, &[&id, &v]).await.expect("insert");
    }
    let row = c
        .query_one(
            "select count(*), sum(length(v)) from t where id >= $1",
            &[&0i32],
        )
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 20);
    let back: String = c
        .query_one("select v from t where id = $1", &[&7i32])
        .await
        .expect("big row")
        .get(0);
    assert_eq!(back, big);

    // A cancel request, itself sent over TLS after an SSLRequest on its own connection.
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(shardgate::tls::make_tls_connect()).await
    });
    let err = c
        .simple_query("select pg_sleep(20)")
        .await
        .expect_err("the sleep was cancelled");
    assert_eq!(code(&err), "57014", "{err:?}");
    canceller.await.expect("canceller").expect("cancel sent");
    // The session goes on.
    let row = c
        .query_one("select 1::int4", &[])
        .await
        .expect("after cancel");
    assert_eq!(row.get::<_, i32>(0), 1);
}

#[tokio::test]
async fn malformed_handshakes_close_only_that_connection() {
    let certs = Certs::new();
    let p = tls_proxy("tls_malformed", &certs, true).await;

    // SSLRequest, then something that is not a TLS ClientHello.
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    s.write_all(&SSL_REQUEST).await.expect("ssl request");
    assert_eq!(s.read_u8().await.expect("answer"), b'S');
    s.write_all(b"GET / HTTP/1.1\r\nHost: shardgate\r\n\r\n")
        .await
        .expect("garbage");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the proxy closes the connection")
        .ok();
    // At most a TLS alert record (type 21), never a Postgres message.
    assert!(got.is_empty() || got[0] == 21, "unexpected answer {got:?}");

    // SSLRequest with a startup packet pipelined behind it (CVE-2021-23214): refused in
    // plaintext before any handshake.
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    let mut packet = SSL_REQUEST.to_vec();
    packet.extend_from_slice(&[0, 0, 0, 8, 0, 3, 0, 0]);
    s.write_all(&packet).await.expect("pipelined");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the proxy closes the connection")
        .ok();
    let reply = String::from_utf8_lossy(&got);
    assert_eq!(got.first(), Some(&b'E'), "{reply}");
    assert!(
        reply.contains("08P01") && reply.contains("unencrypted data"),
        "{reply}"
    );

    // SSLRequest, then the client goes away.
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    s.write_all(&SSL_REQUEST).await.expect("ssl request");
    assert_eq!(s.read_u8().await.expect("answer"), b'S');
    drop(s);

    // Other clients are unaffected.
    let c = connect_tls(&p.url("app", "app"))
        .await
        .expect("TLS connect");
    let row = c.query_one("select 2::int4", &[]).await.expect("query");
    assert_eq!(row.get::<_, i32>(0), 2);
    // And psql, a different TLS implementation, still gets in.
    let out = p
        .psql(&["-c", "select 3"], None, &[("PGSSLMODE", "require")])
        .await;
    assert!(out.status.success(), "{}", text(&out).1);
}

#[tokio::test]
async fn an_unusable_certificate_stops_the_proxy_with_the_file_named() {
    let certs = Certs::new();
    let missing = certs.dir.join("missing.crt");
    let cases = [
        (
            format!(
                "tls: {{ cert: \"{}\", key: \"{}\" }}\n",
                missing.display(),
                certs.key.display()
            ),
            format!("tls.cert {}: cannot read", missing.display()),
        ),
        (
            // The key where the certificate should be.
            format!(
                "tls: {{ cert: \"{}\", key: \"{}\" }}\n",
                certs.key.display(),
                certs.key.display()
            ),
            format!("tls.cert {}: no PEM certificate found", certs.key.display()),
        ),
        (
            format!(
                "tls: {{ cert: \"{}\", key: \"{}\" }}\n",
                certs.cert.display(),
                certs.cert.display()
            ),
            format!(
                "tls.key {}: no usable PEM private key",
                certs.cert.display()
            ),
        ),
    ];
    for (extra, want) in cases {
        let opts = ProxyOpts {
            extra,
            ..ProxyOpts::default()
        };
        let yaml = common::proxy::config_yaml("tls_bad_cert", &opts);
        let cfg = config::parse(&yaml, std::path::Path::new("test.yaml")).expect("config");
        let msg = Proxy::new(cfg)
            .err()
            .expect("a bad certificate is refused")
            .to_string();
        assert!(msg.starts_with(&format!("test.yaml: {want}")), "{msg}");
    }
}

/// Shard and catalog URLs with `query` appended, over `servers`.
fn shard_yaml(servers: &[shardgate::localpg::LocalServer], query: &str) -> String {
    let mut shards = String::new();
    for (i, s) in servers.iter().enumerate() {
        let url = s.url("app", "app", "app");
        shards.push_str(&format!("  - {{ name: s{i}, url: \"{url}{query}\" }}\n"));
    }
    format!(
        "listen: 127.0.0.1:0\n\
         database: app\n\
         users:\n  - {{ name: app, password: app }}\n\
         pool: {{ size: 4, connect_timeout: 5s }}\n\
         shards:\n{shards}\
         default_shard: s0\n\
         schemes:\n  by_id: {{ type: hash, buckets: 4 }}\n\
         tables:\n  items: {{ scheme: by_id, key: id }}\n"
    )
}

async fn start_yaml(yaml: &str) -> shardgate::frontend::RunningProxy {
    let cfg = config::parse(yaml, std::path::Path::new("test.yaml"))
        .unwrap_or_else(|e| panic!("config rejected: {e}\n{yaml}"));
    Proxy::new(cfg)
        .expect("proxy")
        .start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("proxy start")
}

#[tokio::test]
async fn shards_with_ssl_on_are_reached_over_tls() {
    let certs = Certs::new();
    let files = certs.files();
    let pg = common::proxy::blocking(move || private_cluster_with(2, Some(files))).await;
    for s in &pg.servers {
        s.psql(
            "app",
            "CREATE TABLE items (id int PRIMARY KEY, v text); ALTER TABLE items OWNER TO app;",
        )
        .expect("create items");
    }
    // sslmode=require for shards and the catalog (the hash scheme's bucket map lives there).
    let running = start_yaml(&shard_yaml(&pg.servers, "?sslmode=require")).await;
    let url = format!("postgres://app:app@127.0.0.1:{}/app", running.addr.port());
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect through the proxy");
    tokio::spawn(conn);
    for id in 0..40i32 {
        c.execute("insert into items (id, v) values ($1, 'v')", &[&id])
            .await
            .expect("insert");
    }
    let total: i64 = c
        .query_one("select count(*) from items", &[])
        .await
        .expect("fan-out count")
        .get(0);
    assert_eq!(total, 40);
    for (i, s) in pg.servers.iter().enumerate() {
        let on_shard = s
            .psql("app", "SELECT count(*) FROM items")
            .expect("direct count");
        assert_ne!(on_shard.trim(), "0", "shard s{i} got no rows");
        c.batch_execute(&format!("set shardgate.shard = 's{i}'"))
            .await
            .expect("hint");
        let row = c
            .query_one(
                "select ssl, current_setting('port')::int4 from pg_stat_ssl where pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_stat_ssl");
        assert!(row.get::<_, bool>(0), "shard s{i} connection is not TLS");
        assert_eq!(row.get::<_, i32>(1), i32::from(s.port), "hint to s{i}");
        // Every connection of app (proxy pool and catalog) is encrypted.
        let plain = s
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE usename = 'app' AND NOT ssl",
            )
            .expect("server view");
        assert_eq!(plain.trim(), "0", "plaintext connections on s{i}");
    }
    c.batch_execute("reset shardgate.shard")
        .await
        .expect("reset");
    // Idle TLS connections pass the liveness probe and are reused, not reopened per statement.
    let pools = running.proxy().pools();
    let connects = || -> Vec<u64> {
        pools
            .iter()
            .map(|p| p.stats().connects.load(Ordering::Relaxed))
            .collect()
    };
    let before = connects();
    assert!(before.iter().all(|&n| n <= 4), "{before:?}");
    // Server connections the servers closed (their FATAL and close arrive through TLS) fail
    // the probe and are replaced, without the client noticing.
    for s in &pg.servers {
        let killed = s
            .psql(
                "postgres",
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE usename = 'app' AND application_name <> 'shardgate-catalog'",
            )
            .expect("terminate");
        assert_ne!(killed.trim(), "0", "no proxy connection to terminate");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let total: i64 = c
        .query_one("select count(*) from items", &[])
        .await
        .expect("query after the servers closed the proxy's connections")
        .get(0);
    assert_eq!(total, 40);
    let after = connects();
    assert!(
        after.iter().zip(&before).all(|(a, b)| a > b),
        "no reconnect after the kill: {before:?} -> {after:?}"
    );
    drop(c);
    running.shutdown(Duration::from_secs(5)).await;

    // The default, sslmode=prefer, uses TLS when the server offers it.
    let running = start_yaml(&shard_yaml(&pg.servers, "")).await;
    let url = format!("postgres://app:app@127.0.0.1:{}/app", running.addr.port());
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect through the proxy");
    tokio::spawn(conn);
    let ssl: bool = c
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl, "sslmode=prefer did not use the server's TLS");
    drop(c);
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn sslmode_require_against_a_server_without_ssl_names_the_shard() {
    // The shared cluster runs with ssl = off.
    let db = common::fresh_db("tls_refused");
    let url = cluster().servers[0].url("app", "app", &db);
    let opts = ProxyOpts {
        shard0_url: Some(format!("{url}?sslmode=require")),
        ..ProxyOpts::default()
    };
    let p = common::proxy::start_proxy_on(&db, opts).await;
    let err = p
        .try_connect("app", "app")
        .await
        .expect_err("login needs s0, which cannot do TLS");
    assert_eq!(code(&err), "08006", "{err:?}");
    let text = message(&err);
    assert!(text.contains("shard \"s0\""), "{text}");
    assert!(
        text.contains("does not support TLS") && text.contains("sslmode=require"),
        "{text}"
    );
}
