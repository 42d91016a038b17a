//! The Prometheus endpoint after known traffic: counts by route, errors by kind, 2PC outcomes,
//! state gauges, histograms, and the page passes `promtool check metrics`. Also the limits of
//! SPEC 11: rejected with 53400 and counted.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;

use common::proxy::code;
use common::trap::{owner, setup_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METRICS: &str = "metrics_listen: 127.0.0.1:0\n";

async fn scrape(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The value of one sample line (`name{labels} value`), exactly as rendered.
fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{page}"))
        .trim()
        .parse()
        .unwrap()
}

fn promtool_check(page: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed; .ci/run installs it");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_count_known_traffic_and_pass_promtool() {
    let (p, _direct) = setup_with("metrics", METRICS).await;
    let addr = p
        .running
        .as_ref()
        .unwrap()
        .metrics_addr
        .expect("metrics address");
    let c = p.connect().await;
    for id in 1..=5i64 {
        c.query("select * from users where id = $1", &[&id])
            .await
            .unwrap();
    }
    for _ in 0..2 {
        c.query("select count(*) from users", &[]).await.unwrap();
    }
    c.query("select * from countries", &[]).await.unwrap();
    // Refused by the proxy (0A000) and raised by a shard (42P01).
    let e = c
        .simple_query("select count(distinct name) from users")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "0A000");
    let e = c
        .simple_query("select * from no_such_table")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01");
    // A two-phase commit over two shards.
    let (a, b) = {
        let a = 1i64;
        let b = (2..).find(|&k| owner(k) != owner(a)).unwrap();
        (a, b)
    };
    for sql in [
        "begin".to_string(),
        format!("insert into users (id, name) values ({a}, 'a')"),
        format!("insert into users (id, name) values ({b}, 'b')"),
        "commit".to_string(),
    ] {
        c.simple_query(&sql).await.unwrap();
    }

    let page = scrape(addr).await;
    promtool_check(&page);
    assert_eq!(
        value(&page, "shardgate_queries_total{route=\"single\"}"),
        7.0
    );
    assert_eq!(value(&page, "shardgate_queries_total{route=\"all\"}"), 2.0);
    assert_eq!(
        value(&page, "shardgate_queries_total{route=\"reference\"}"),
        1.0
    );
    assert_eq!(
        value(&page, "shardgate_errors_total{kind=\"unsupported\"}"),
        1.0
    );
    assert_eq!(value(&page, "shardgate_errors_total{kind=\"server\"}"), 1.0);
    assert_eq!(
        value(&page, "shardgate_twopc_total{outcome=\"committed\"}"),
        1.0
    );
    assert_eq!(value(&page, "shardgate_client_connections"), 1.0);
    for s in ["s0", "s1", "s2"] {
        assert_eq!(
            value(&page, &format!("shardgate_shard_up{{shard=\"{s}\"}}")),
            1.0
        );
        let idle = value(
            &page,
            &format!("shardgate_server_connections{{shard=\"{s}\",state=\"idle\"}}"),
        );
        assert!(idle >= 1.0, "{s} has no idle server connection:\n{page}");
    }
    // Every routed cycle was timed; the 2-shard statements are in the shards histogram.
    let timed = value(
        &page,
        "shardgate_query_duration_seconds_count{route=\"single\"}",
    );
    assert!(timed >= 5.0, "{page}");
    assert_eq!(
        value(
            &page,
            "shardgate_query_duration_seconds_count{route=\"all\"}"
        ),
        2.0
    );
    assert_eq!(
        value(&page, "shardgate_queries_total{route=\"default\"}"),
        1.0
    );
    assert_eq!(
        value(&page, "shardgate_shards_per_query_bucket{le=\"1\"}"),
        9.0
    );
    assert_eq!(value(&page, "shardgate_shards_per_query_count"), 11.0);
    assert!(page.contains("# TYPE shardgate_query_duration_seconds histogram"));
    assert!(page.contains("shardgate_twopc_in_doubt"));
    assert!(page.contains("shardgate_limit_rejections_total{limit=\"max_shards_per_query\"} 0"));

    // Anything but /metrics is 404.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}

#[tokio::test]
async fn limits_reject_with_53400_and_are_counted() {
    let extra = format!(
        "{METRICS}limits: {{ max_shards_per_query: 2, fanout_budget_per_minute: 0, max_merge_rows: 1000 }}\n"
    );
    let (p, _direct) = setup_with("limits", &extra).await;
    let addr = p.running.as_ref().unwrap().metrics_addr.unwrap();
    let c = p.connect().await;
    // Single-shard statements are never limited.
    c.query("select * from users where id = 7", &[])
        .await
        .unwrap();
    let e = c
        .query("select count(*) from users", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "53400");
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(
        msg.contains("3 shards") && msg.contains("max_shards_per_query = 2"),
        "{msg}"
    );
    // The session goes on.
    c.query("select * from users where id = 8", &[])
        .await
        .unwrap();
    let page = scrape(addr).await;
    assert_eq!(
        value(
            &page,
            "shardgate_limit_rejections_total{limit=\"max_shards_per_query\"}"
        ),
        1.0
    );
    assert_eq!(value(&page, "shardgate_errors_total{kind=\"limit\"}"), 1.0);
}

#[tokio::test]
async fn fanout_budget_is_a_per_user_token_bucket() {
    let extra = format!(
        "{METRICS}limits: {{ max_shards_per_query: 0, fanout_budget_per_minute: 7, max_merge_rows: 1000 }}\n"
    );
    let (p, _direct) = setup_with("budget", &extra).await;
    let addr = p.running.as_ref().unwrap().metrics_addr.unwrap();
    let app = p.connect().await;
    // Each fan-out over the 3 shards costs 3: two fit in a budget of 7, the third does not.
    app.simple_query("select count(*) from users")
        .await
        .unwrap();
    app.simple_query("select count(*) from users")
        .await
        .unwrap();
    let e = app
        .simple_query("select count(*) from users")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "53400");
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(
        msg.contains("\"app\"") && msg.contains("costs 3") && msg.contains("= 7"),
        "{msg}"
    );
    // Single-shard statements still run; another user has a budget of their own.
    app.simple_query("select * from users where id = 1")
        .await
        .unwrap();
    let other = p.try_connect("other", "secret").await.unwrap();
    other
        .simple_query("select count(*) from users")
        .await
        .unwrap();
    let page = scrape(addr).await;
    assert_eq!(
        value(
            &page,
            "shardgate_limit_rejections_total{limit=\"fanout_budget_per_minute\"}"
        ),
        1.0
    );
}
