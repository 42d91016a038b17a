//! Routing against real shards. Each shard's copy of a sharded table is itself
//! `PARTITION BY HASH` with only the partitions of the buckets that shard owns, so a row sent
//! to the wrong shard fails loudly ("no partition of relation found for row"). Rows go in
//! through the proxy with literals, extended-protocol parameters (binary from tokio-postgres,
//! text from pgbench -M extended) and prepared statements; placement is then checked on each
//! shard directly.

mod common;

use std::time::{Duration, Instant};

use common::proxy::code;
use common::trap::{owner, owner_of_bucket, setup, setup_with, BUCKETS};
use shardgate::router::{hash::bucket_of, KeyValue};

use common::trap::count;

#[tokio::test]
async fn rows_land_on_their_owner_with_literals_and_parameters() {
    let (p, direct) = setup("route_place").await;
    let c = p.connect().await;
    // Literals through the simple protocol.
    for id in 1..=60i64 {
        c.simple_query(&format!(
            "insert into users (id, name) values ({id}, 'lit {id}')"
        ))
        .await
        .unwrap_or_else(|e| panic!("insert {id}: {e}"));
    }
    // Binary parameters through the extended protocol, with a reused prepared statement.
    let st = c
        .prepare("insert into users (name, id) values ($1, $2)")
        .await
        .unwrap();
    for id in 61..=160i64 {
        c.execute(&st, &[&format!("param {id}"), &id])
            .await
            .unwrap();
    }
    // Negative and large keys.
    for id in [-1i64, -999_999, i64::MAX, i64::MIN + 1, 1 << 40] {
        c.execute("insert into users (id, name) values ($1, 'edge')", &[&id])
            .await
            .unwrap();
    }
    // Child rows co-located with their user.
    for uid in 1..=40i64 {
        c.execute(
            "insert into posts (id, user_id, title) values ($1, $2, 't')",
            &[&(uid * 10), &uid],
        )
        .await
        .unwrap();
    }
    // Every shard holds exactly its own keys.
    let mut ids: Vec<i64> = (1..=160).collect();
    ids.extend([-1i64, -999_999, i64::MAX, i64::MIN + 1, 1 << 40]);
    for (i, d) in direct.iter().enumerate() {
        let want = ids.iter().filter(|&&k| owner(k) == i).count() as i64;
        assert_eq!(
            count(d, "select count(*) from users").await,
            want,
            "shard s{i}"
        );
        let want_posts = (1..=40i64).filter(|&k| owner(k) == i).count() as i64;
        assert_eq!(
            count(d, "select count(*) from posts").await,
            want_posts,
            "posts on s{i}"
        );
    }
    // Point reads come back through the proxy, by literal and by parameter.
    for id in [1i64, 77, 160, -1, i64::MAX] {
        let r = c
            .query_one("select id from users where id = $1", &[&id])
            .await
            .unwrap();
        assert_eq!(r.get::<_, i64>(0), id);
        let msgs = c
            .simple_query(&format!("select name from users where id = {id}"))
            .await
            .unwrap();
        assert!(msgs
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))));
    }
    // Co-located join with the key fixed.
    let n = c
        .query_one(
            "select count(*) from users u join posts p on p.user_id = u.id where u.id = $1",
            &[&7i64],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(n, 1);
    // IN and ANY across shards, as concatenated reads.
    let rows = c
        .query(
            "select id from users where id = any($1)",
            &[&vec![1i64, 2, 3, 4, 5, 6]],
        )
        .await
        .unwrap();
    let mut got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn fan_out_reads_concatenate_and_refusals_are_0a000() {
    let (p, direct) = setup("route_fanout").await;
    let c = p.connect().await;
    for id in 1..=90i64 {
        c.execute("insert into users (id, name) values ($1, 'u')", &[&id])
            .await
            .unwrap();
    }
    // Keyless read: every row exactly once, one command tag with the total.
    let rows = c.query("select id, name from users", &[]).await.unwrap();
    assert_eq!(rows.len(), 90);
    let msgs = c
        .simple_query("select id from users where name = 'u'")
        .await
        .unwrap();
    let tag = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(tag, Some(90));
    // Needs a merge: refused, never partial.
    // Reads that need a merge are merged (simple protocol; tests/differential.rs compares
    // many shapes with one Postgres) ...
    let texts = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
        msgs.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect()
    };
    let ids = texts(
        c.simple_query("select id from users order by id")
            .await
            .unwrap(),
    );
    assert_eq!(ids, (1..=90).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(
        texts(c.simple_query("select count(*) from users").await.unwrap()),
        ["90"]
    );
    assert_eq!(
        texts(
            c.simple_query("select id from users order by id desc limit 2 offset 1")
                .await
                .unwrap()
        ),
        ["89", "88"]
    );
    assert_eq!(
        texts(
            c.simple_query("select distinct name from users")
                .await
                .unwrap()
        ),
        ["u"]
    );
    // ... in the extended protocol too (binary results) ...
    let rows = c
        .query("select id from users order by id desc limit 3", &[])
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![90, 89, 88]);
    let n: i64 = c
        .query_one("select count(*) from users where id > $1", &[&10i64])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 80);
    // ... and refused, never partial, where the merge cannot do it.
    let e = c
        .simple_query("select count(distinct name) from users")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "0A000", "{e}");
    // Keyless writes over every shard are allowed now (two-phase commit, tests/twopc.rs); with
    // two-phase commit disabled they are refused: see transactions_stay_on_one_shard.
    // A fan-out error fails the statement and names its shard.
    for d in &direct {
        d.batch_execute("alter table users add column boom int default 0")
            .await
            .unwrap();
    }
    direct[1]
        .batch_execute("update users set boom = 1 where id in (select id from users limit 1)")
        .await
        .unwrap();
    let e = c
        .simple_query("select 1 / (boom - 1) from users")
        .await
        .unwrap_err();
    let db = e.as_db_error().expect("db error");
    assert_eq!(db.code().code(), "22012");
    assert!(db.detail().unwrap_or("").contains("on shard s1"), "{db:?}");
    // The session is fine afterwards, in both protocols.
    assert_eq!(
        c.query("select id from users where id = $1", &[&5i64])
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(c.simple_query("select 1").await.unwrap().len(), 3);
}

#[tokio::test]
async fn transactions_stay_on_one_shard() {
    // With two-phase commit disabled, a transaction must stay on one shard.
    let (p, direct) = setup_with("route_txn", "twopc: { enabled: false }\n").await;
    let c = p.connect().await;
    // Keys on the same shard: one transaction, committed.
    let same: Vec<i64> = (1..1000).filter(|&k| owner(k) == 2).take(3).collect();
    c.batch_execute(&format!(
        "begin; insert into users (id, name) values ({}, 'a'); insert into users (id, name) values ({}, 'b'); commit",
        same[0], same[1]
    ))
    .await
    .unwrap();
    assert_eq!(count(&direct[2], "select count(*) from users").await, 2);
    // BEGIN alone, then statements: the transaction opens where the first statement goes.
    c.batch_execute("begin").await.unwrap();
    c.execute("insert into users (id, name) values ($1, 'c')", &[&same[2]])
        .await
        .unwrap();
    c.batch_execute("rollback").await.unwrap();
    assert_eq!(
        count(&direct[2], "select count(*) from users").await,
        2,
        "rolled back"
    );
    // Writes over several shards are refused without two-phase commit.
    for sql in [
        "insert into users (id, name) values (1001, 'a'), (1002, 'b'), (1003, 'c'), (1004, 'd')",
        "update users set name = 'x'",
        "insert into countries (code, name) values ('xx', 'X')",
    ] {
        let e = c.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), "0A000", "{sql}: {e}");
    }
    // A statement for another shard inside the transaction is refused, and the transaction is
    // then failed until it ends, as Postgres would have it.
    let other: i64 = (1..1000).find(|&k| owner(k) == 0).unwrap();
    c.batch_execute("begin").await.unwrap();
    c.execute("insert into users (id, name) values ($1, 'd')", &[&same[2]])
        .await
        .unwrap();
    let e = c
        .execute("insert into users (id, name) values ($1, 'e')", &[&other])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "0A000", "{e}");
    let e = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(code(&e), "25P02");
    let msgs = c.simple_query("commit").await.unwrap();
    assert!(msgs
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(_))));
    assert_eq!(
        count(&direct[2], "select count(*) from users").await,
        2,
        "failed transaction rolled back"
    );
    assert_eq!(count(&direct[0], "select count(*) from users").await, 0);
    // BEGIN ... COMMIT with nothing inside never touches a shard.
    c.batch_execute("begin; commit").await.unwrap();
    c.batch_execute("begin").await.unwrap();
    c.batch_execute("commit").await.unwrap();
    // Reads of reference tables follow the transaction's shard.
    c.batch_execute("begin").await.unwrap();
    c.execute("insert into users (id, name) values ($1, 'f')", &[&same[2]])
        .await
        .unwrap();
    // A reference-table read can run on any shard: it follows the transaction's.
    let port: String = c
        .query_one("select current_setting('port') from countries limit 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(port, common::cluster().servers[2].port.to_string());
    c.batch_execute("commit").await.unwrap();
    assert_eq!(count(&direct[2], "select count(*) from users").await, 3);
}

#[tokio::test]
async fn hints_range_reference_and_catalog_queries() {
    let (p, _direct) = setup("route_hints").await;
    let c = p.connect().await;
    let port = |i: usize| common::cluster().servers[i].port.to_string();
    let hinted: String = c
        .query_one(
            "/* shardgate: shard=s2 */ select current_setting('port')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(hinted, port(2));
    let key = (1..1000).find(|&k| owner(k) == 1).unwrap();
    let by_key: String = c
        .query_one(
            &format!("/* shardgate: key={key} table=users */ select current_setting('port')"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(by_key, port(1));
    c.batch_execute("set shardgate.shard = 's1'").await.unwrap();
    let pinned: String = c
        .query_one("select current_setting('port')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pinned, port(1));
    c.batch_execute("reset shardgate.shard").await.unwrap();
    let e = c
        .batch_execute("set shardgate.shard = 'nope'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22023");
    // Range scheme.
    for (id, shard) in [(5i64, 0usize), (1500, 1), (5000, 2)] {
        c.execute("insert into events (id, what) values ($1, 'e')", &[&id])
            .await
            .unwrap();
        let at: String = c
            .query_one(
                "select current_setting('port') from events where id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(at, port(shard), "event {id}");
    }
    // Reference table reads from one shard; catalog queries go to the default shard.
    assert_eq!(
        c.query("select * from countries", &[]).await.unwrap().len(),
        2
    );
    let n: i64 = c
        .query_one(
            "select count(*) from pg_catalog.pg_tables where tablename = 'users'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // explain through the CLI prints the same decision the proxy makes.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args([
            "explain",
            "-c",
            "config/shardgate.yaml",
            "select * from users where id = $1",
            "--param",
            "42",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("route: single"));
}

#[tokio::test]
async fn directory_changes_are_seen_without_restart() {
    let (p, direct) = setup("route_dir").await;
    let c = p.connect().await;
    let catalog = p
        .running
        .as_ref()
        .unwrap()
        .proxy()
        .catalog()
        .expect("catalog connected")
        .clone();
    catalog.directory_set("by_org", "acme", "s2").await.unwrap();
    c.execute(
        "insert into orgs (org_id, name) values ($1, 'Acme')",
        &[&"acme"],
    )
    .await
    .unwrap();
    assert_eq!(count(&direct[2], "select count(*) from orgs").await, 1);
    // No entry: the fallback scheme (by_user hashes the text key).
    c.execute(
        "insert into orgs (org_id, name) values ($1, 'Other')",
        &[&"other"],
    )
    .await
    .unwrap();
    let fallback = owner_of_bucket(bucket_of(&KeyValue::Text("other".into()), BUCKETS));
    assert_eq!(
        count(
            &direct[fallback],
            "select count(*) from orgs where org_id = 'other'"
        )
        .await,
        1
    );
    // Move the entry while the proxy runs: new statements follow within a moment.
    catalog.directory_set("by_org", "acme", "s0").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let port: String = c
            .query_one(
                "select current_setting('port'), count(*) from orgs where org_id = $1",
                &[&"acme"],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or_default();
        if port == common::cluster().servers[0].port.to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never saw the directory change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pgbench_custom_script_keyed_on_the_shard_key() {
    let (p, direct) = setup("route_pgbench").await;
    let c = p.connect().await;
    for id in 1..=200i64 {
        c.execute("insert into users (id, name) values ($1, 'n')", &[&id])
            .await
            .unwrap();
    }
    let script = std::env::temp_dir().join(format!("sg-route-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "\\set uid random(1, 200)\nselect name from users where id = :uid;\nupdate users set name = 'v' || :uid where id = :uid;\ninsert into posts (id, user_id, title) values (:client_id * 100000 + :uid, :uid, 'p') on conflict do nothing;\n",
    )
    .unwrap();
    for mode in ["simple", "extended", "prepared"] {
        let out = p
            .pgbench(&[
                "-n",
                "-c",
                "4",
                "-j",
                "2",
                "-t",
                "100",
                "-M",
                mode,
                "-f",
                script.to_str().unwrap(),
            ])
            .await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pgbench -M {mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("number of failed transactions: 0"),
            "{stdout}"
        );
        assert!(stdout.contains("actually processed: 400/400"), "{stdout}");
    }
    let _ = std::fs::remove_file(&script);
    // The trap tables held: every post sits with its user.
    let mut total = 0;
    for (i, d) in direct.iter().enumerate() {
        let rows = d.query("select user_id from posts", &[]).await.unwrap();
        for r in &rows {
            assert_eq!(owner(r.get::<_, i64>(0)), i);
        }
        total += rows.len();
    }
    assert!(total > 0);
}
