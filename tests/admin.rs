//! The admin console through the real `psql`: only the admin credentials open it, every SHOW
//! command displays, unknown commands list the valid ones, and SHOW TRANSACTIONS lists a
//! transaction left in doubt.

mod common;

use common::proxy::{admin_psql, code};
use common::trap::{owner, setup_with};
use shardgate::twopc::points;

const ADMIN: &str = "admin: { user: admin, password: adminpw }\n";

#[tokio::test]
async fn admin_console_commands() {
    let (p, _direct) = setup_with("admin", ADMIN).await;
    let port = p.addr.port();
    let out = admin_psql(port, "SHOW SHARDS", "adminpw").await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("name|host|port|database|user|up|default"),
        "{text}"
    );
    assert!(
        text.contains("s0|127.0.0.1|") && text.contains("(3 rows)"),
        "{text}"
    );
    let pools = String::from_utf8_lossy(&admin_psql(port, "show pools", "adminpw").await.stdout)
        .to_string();
    assert!(
        pools.starts_with("database|user|cl_active|cl_waiting|sv_active|sv_idle"),
        "{pools}"
    );
    let config = String::from_utf8_lossy(&admin_psql(port, "SHOW CONFIG;", "adminpw").await.stdout)
        .to_string();
    assert!(config.contains("twopc.enabled|true"), "{config}");
    let buckets =
        String::from_utf8_lossy(&admin_psql(port, "SHOW BUCKETS", "adminpw").await.stdout)
            .to_string();
    assert!(
        buckets.contains("by_user|8|0|2|s0") && buckets.contains("by_user|8|6|7|s2"),
        "{buckets}"
    );
    let route = String::from_utf8_lossy(
        &admin_psql(
            port,
            "SHOW ROUTE select * from users where id = 7",
            "adminpw",
        )
        .await
        .stdout,
    )
    .to_string();
    let shard = format!("s{}", owner(7));
    assert!(route.contains(&format!("shards|{shard}")), "{route}");
    // Unknown commands list the valid ones.
    let bad = admin_psql(port, "SHOW NONSENSE", "adminpw").await;
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(
        !bad.status.success()
            && err.contains("SHOW TRANSACTIONS")
            && err.contains("RELOAD, PAUSE, RESUME"),
        "{err}"
    );
    // Only the admin credentials open the console.
    let wrong = admin_psql(port, "SHOW SHARDS", "nope").await;
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"));
    let url = format!("postgres://app:app@127.0.0.1:{port}/shardgate");
    let e = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap_or_else(|| panic!("app must not open the console"));
    assert_eq!(code(&e), "28000", "{e}");
}

#[tokio::test]
async fn show_transactions_lists_in_doubt_ones() {
    let (p, _direct) = setup_with(
        "admin_txn",
        &format!("{ADMIN}twopc: {{ enabled: true, orphan_timeout: 1h }}\n"),
    )
    .await;
    let proxy = p.running.as_ref().unwrap().proxy().clone();
    let c = p.connect().await;
    let k = |s| (1..).find(|&k| owner(k) == s).unwrap();
    c.batch_execute("begin").await.unwrap();
    c.execute("insert into users (id, name) values ($1, 'x')", &[&k(0)])
        .await
        .unwrap();
    c.execute("insert into users (id, name) values ($1, 'x')", &[&k(1)])
        .await
        .unwrap();
    proxy.failpoints().arm(points::AFTER_PREPARE);
    assert!(c.batch_execute("commit").await.is_err());
    let out = admin_psql(p.addr.port(), "SHOW TRANSACTIONS", "adminpw").await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("shard|gid|age_s|decision|participants"),
        "{text}"
    );
    assert!(
        text.contains("|undecided|") && text.contains("(2 rows)"),
        "{text}"
    );
    // Clean up: decide abort now so nothing stays prepared for other tests.
    let cfg = proxy.config();
    let catalog = proxy.catalog_for_twopc().await.unwrap();
    for t in shardgate::twopc::recovery::list(&cfg, &catalog)
        .await
        .unwrap()
        .0
    {
        catalog
            .decide(&t.gid, &[], shardgate::catalog::Outcome::Abort)
            .await
            .unwrap();
    }
    shardgate::twopc::recovery::recover(&cfg, &catalog)
        .await
        .unwrap();
}
