//! Smoke tests of `localpg` through the test harness: the shared cluster is up and configured
//! as SPEC 14 and the other tests need, the standard roles log in with the right auth
//! methods, per-test databases are distinct, and a killed server comes back.
//!
//! Deliberately not here: the proxy, and watchdog cleanup after a crash (that needs a
//! process to die, see `watchdog_cleans_up_after_sigkill`, which uses a child process).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin_path, cluster, db_name, fresh_db, private_cluster};

#[test]
fn every_server_answers_and_is_configured() {
    let c = cluster();
    assert_eq!(c.servers.len(), common::cluster::SERVERS);
    for s in &c.servers {
        assert!(s.is_running(), "{} not running", s.name);
        assert_eq!(
            s.psql("postgres", "select 1").expect("select 1").trim(),
            "1"
        );
        let show = |setting: &str| {
            s.psql("postgres", &format!("SHOW {setting}"))
                .expect("SHOW")
                .trim()
                .to_string()
        };
        assert_eq!(show("max_prepared_transactions"), "100");
        assert_eq!(show("wal_level"), "logical");
        assert_eq!(show("max_connections"), "400");
        assert_eq!(show("listen_addresses"), "127.0.0.1");
        assert_eq!(show("port"), s.port.to_string());
        assert_eq!(show("fsync"), "off");
    }
}

#[test]
fn psql_errors_carry_stderr() {
    let err = cluster().servers[0]
        .psql("postgres", "select * from no_such_table")
        .expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("no_such_table"), "{msg}");
}

#[tokio::test]
async fn app_logs_in_with_scram_and_md5user_with_md5() {
    let s = &cluster().servers[1];
    let stored = s
        .psql(
            "postgres",
            "select rolname || '=' || left(rolpassword, 3) from pg_authid \
             where rolname in ('app', 'md5user') order by 1",
        )
        .expect("read pg_authid");
    assert_eq!(stored.trim(), "app=SCR\nmd5user=md5", "{stored}");

    for (user, password) in [("app", "app"), ("md5user", "md5pass")] {
        let url = s.url(user, password, "app");
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{user} cannot log in: {e}"));
        tokio::spawn(conn);
        let row = client
            .query_one("select current_user::text", &[])
            .await
            .expect("query");
        assert_eq!(row.get::<_, String>(0), user);
    }

    let wrong = s.url("app", "wrong", "app");
    let err = tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .err()
        .expect("a wrong password must be refused");
    let code = err.as_db_error().map(|e| e.code().clone());
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err:?}"
    );
}

#[test]
fn fresh_dbs_are_distinct_and_on_every_server() {
    let a = fresh_db("smoke");
    let b = fresh_db("smoke");
    assert_ne!(a, b);
    for s in &cluster().servers {
        let owner = s
            .psql(
                "postgres",
                &format!("select pg_get_userbyid(datdba) from pg_database where datname = '{a}'"),
            )
            .expect("query pg_database");
        assert_eq!(owner.trim(), "app", "{a} on {}", s.name);
    }
}

#[test]
fn db_names_are_short_lowercase_and_unique() {
    let a = db_name("My-Test", 1);
    assert!(a.starts_with("my_test_1_"), "{a}");
    assert_ne!(a, db_name("My-Test", 2));
    assert!(db_name(&"x".repeat(100), 123).len() <= 63);
}

#[test]
fn kill_then_start_brings_a_server_back() {
    let c = private_cluster(1);
    let s = &c.servers[0];
    // The servers run with synchronous_commit=off, so an immediate stop may lose the last
    // commits; this session asks for a flushed commit to check that data survives a kill.
    s.psql(
        "app",
        "set synchronous_commit = on; create table t (id int primary key); insert into t values (1)",
    )
    .expect("create table");
    s.kill().expect("kill");
    assert!(!s.is_running());
    assert!(
        s.psql("postgres", "select 1").is_err(),
        "a killed server answered"
    );
    s.kill().expect("killing a stopped server is fine");
    s.start().expect("start again");
    assert!(s.is_running());
    assert_eq!(
        s.psql("app", "select count(*) from t")
            .expect("count")
            .trim(),
        "1"
    );
    s.stop().expect("stop");
    assert!(!s.is_running());
    let root = c.root.clone();
    drop(c);
    assert!(!root.exists(), "drop must remove {}", root.display());
}

#[test]
fn client_binaries_are_found() {
    for name in ["psql", "pgbench"] {
        let path = bin_path(name);
        let out = Command::new(&path)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        assert!(out.status.success(), "{} --version failed", path.display());
    }
}

/// A child process (this same test binary, filtered to a helper test) starts a cluster and
/// is SIGKILLed; its watchdog must stop the server and remove the root.
#[test]
fn watchdog_cleans_up_after_sigkill() {
    if std::env::var_os("SG_WATCHDOG_CHILD").is_some() {
        return; // the child's copy of this test does nothing
    }
    let root = format!("/tmp/sg-wd-{}", std::process::id());
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "watchdog_child",
            "--nocapture",
            "--include-ignored",
        ])
        .env("SG_WATCHDOG_CHILD", &root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child test");
    let port_file = std::path::Path::new(&root).join("port");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !port_file.exists() {
        assert!(Instant::now() < deadline, "child never started its cluster");
        std::thread::sleep(Duration::from_millis(100));
    }
    let port: u16 = std::fs::read_to_string(&port_file)
        .expect("read port")
        .trim()
        .parse()
        .expect("port number");
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&root).exists()
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "watchdog did not clean up {root}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Helper for `watchdog_cleans_up_after_sigkill`: only runs in the child process.
#[test]
#[ignore = "helper run by watchdog_cleans_up_after_sigkill in a child process"]
fn watchdog_child() {
    let Some(root) = std::env::var_os("SG_WATCHDOG_CHILD") else {
        return;
    };
    let mut opts = shardgate::localpg::ClusterOptions::new(root, 1);
    opts.watchdog = true;
    let c = shardgate::localpg::LocalCluster::start(&opts).expect("child cluster");
    std::fs::write(c.root.join("port"), c.servers[0].port.to_string()).expect("write port");
    std::thread::sleep(Duration::from_secs(600));
}
