//! Two-phase commit against real shards: writes and transactions over several shards commit
//! atomically; failures before the decision roll back everywhere; a coordinator stopped at
//! each crash point (failpoints) is finished by recovery exactly as the decision says; and
//! nothing stays prepared afterwards.

mod common;

use std::time::Duration;

use common::proxy::code;
use common::trap::{count, owner, setup_with};
use shardgate::config::Config;
use shardgate::twopc::{points, recovery};

/// Keys owned by shards 0, 1 and 2.
fn keys() -> [i64; 3] {
    let k = |s| (1..1000).find(|&k| owner(k) == s).unwrap();
    [k(0), k(1), k(2)]
}

async fn prepared(d: &tokio_postgres::Client) -> i64 {
    count(
        d,
        "select count(*) from pg_prepared_xacts where database = current_database()",
    )
    .await
}

#[tokio::test]
async fn writes_over_several_shards_commit_everywhere() {
    let (p, direct) = setup_with("twopc_implicit", "").await;
    let c = p.connect().await;
    // A multi-row INSERT split by shard, in one atomic statement.
    c.batch_execute("insert into users (id, name) values (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e'), (6, 'f')")
        .await
        .unwrap();
    let total: i64 = {
        let mut t = 0;
        for d in &direct {
            t += count(d, "select count(*) from users").await;
        }
        t
    };
    assert_eq!(total, 6);
    // RETURNING from a split INSERT comes back in VALUES order, outside and inside a
    // transaction block, with the summed tag.
    let ids: Vec<i64> = vec![17, 11, 19, 12, 20, 13, 15, 14, 18, 16];
    let shards: std::collections::BTreeSet<usize> = ids.iter().map(|&k| owner(k)).collect();
    assert!(shards.len() > 1, "the keys must span several shards");
    let values: Vec<String> = ids.iter().map(|k| format!("({k}, 'r{k}')")).collect();
    for (i, wrap) in [false, true].into_iter().enumerate() {
        let values: Vec<String> = values
            .iter()
            .zip(&ids)
            .map(|(v, k)| v.replace(&format!("({k},"), &format!("({},", k + 100 * i as i64)))
            .collect();
        let sql = format!(
            "insert into users (id, name) values {} returning id, name",
            values.join(", ")
        );
        if wrap {
            c.batch_execute("begin").await.unwrap();
        }
        let msgs = c.simple_query(&sql).await.unwrap();
        if wrap {
            c.batch_execute("commit").await.unwrap();
        }
        let got: Vec<(i64, String)> = msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                    r.get(0).unwrap().parse().unwrap(),
                    r.get(1).unwrap().to_string(),
                )),
                _ => None,
            })
            .collect();
        let want: Vec<(i64, String)> = ids
            .iter()
            .map(|&k| (k + 100 * i as i64, format!("r{k}")))
            .collect();
        assert_eq!(got, want, "RETURNING rows in VALUES order (in txn: {wrap})");
        assert!(msgs
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(10))));
    }
    let a = 301;
    let b = (302..400).find(|&k| owner(k) != owner(a)).unwrap();
    let e = c
        .simple_query(&format!("insert into users (id, name) values ({a}, 'x'), ({b}, 'y') on conflict do nothing returning id"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "0A000");
    c.batch_execute("delete from users where id > 10")
        .await
        .unwrap();
    // Keyless UPDATE and DELETE everywhere, with the summed tag.
    let msgs = c
        .simple_query("update users set name = upper(name)")
        .await
        .unwrap();
    assert!(msgs
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(6))));
    assert_eq!(
        c.execute("delete from users where name = 'A'", &[])
            .await
            .unwrap(),
        1
    );
    // Reference table writes reach every shard.
    c.batch_execute("insert into countries (code, name) values ('jp', 'Japan')")
        .await
        .unwrap();
    for d in &direct {
        assert_eq!(
            count(d, "select count(*) from countries where code = 'jp'").await,
            1
        );
    }
    // DDL on a configured table runs on every shard, atomically.
    c.batch_execute("alter table users add column note text")
        .await
        .unwrap();
    for d in &direct {
        assert_eq!(count(d, "select count(*) from information_schema.columns where table_name = 'users' and column_name = 'note'").await, 1);
    }
    // A statement that fails on one shard changes nothing anywhere.
    let [_, _, k2] = keys();
    c.execute("insert into users (id, name) values ($1, 'Z')", &[&k2])
        .await
        .unwrap();
    direct[2]
        .batch_execute("alter table users add constraint short_names check (length(name) < 2)")
        .await
        .unwrap();
    let e = c
        .simple_query("update users set name = name || 'xx'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "23514", "{e}");
    let longer = {
        let mut n = 0;
        for d in &direct {
            n += count(d, "select count(*) from users where length(name) > 1").await;
        }
        n
    };
    assert_eq!(longer, 0, "the failed statement left no trace on any shard");
    for d in &direct {
        assert_eq!(prepared(d).await, 0);
    }
}

#[tokio::test]
async fn transactions_over_several_shards() {
    let (p, direct) = setup_with("twopc_explicit", "").await;
    let c = p.connect().await;
    let [k0, k1, k2] = keys();
    // Commit: every shard sees its row.
    c.batch_execute("begin").await.unwrap();
    for k in [k0, k1, k2] {
        c.execute("insert into users (id, name) values ($1, 'x')", &[&k])
            .await
            .unwrap();
    }
    // Reads inside the transaction see its own writes, on every shard.
    assert_eq!(c.query("select id from users", &[]).await.unwrap().len(), 3);
    c.batch_execute("commit").await.unwrap();
    for d in &direct {
        assert_eq!(count(d, "select count(*) from users").await, 1);
        assert_eq!(prepared(d).await, 0);
    }
    // Rollback: no shard keeps anything.
    c.batch_execute("begin").await.unwrap();
    c.execute("update users set name = 'y' where id = $1", &[&k0])
        .await
        .unwrap();
    c.execute("update users set name = 'y' where id = $1", &[&k2])
        .await
        .unwrap();
    c.batch_execute("rollback").await.unwrap();
    assert_eq!(
        count(&direct[0], "select count(*) from users where name = 'y'").await,
        0
    );
    assert_eq!(
        count(&direct[2], "select count(*) from users where name = 'y'").await,
        0
    );
    // Savepoints go to every participant.
    c.batch_execute("begin").await.unwrap();
    c.execute("update users set name = 'a' where id = $1", &[&k0])
        .await
        .unwrap();
    c.execute("update users set name = 'a' where id = $1", &[&k1])
        .await
        .unwrap();
    c.batch_execute("savepoint s1").await.unwrap();
    c.execute("update users set name = 'b' where id = $1", &[&k0])
        .await
        .unwrap();
    c.execute("update users set name = 'b' where id = $1", &[&k1])
        .await
        .unwrap();
    c.batch_execute("rollback to savepoint s1").await.unwrap();
    c.batch_execute("commit").await.unwrap();
    assert_eq!(
        count(&direct[0], "select count(*) from users where name = 'a'").await,
        1
    );
    assert_eq!(
        count(&direct[1], "select count(*) from users where name = 'a'").await,
        1
    );
    // An error inside a multi-shard transaction fails it; COMMIT then rolls back everywhere.
    c.batch_execute("begin").await.unwrap();
    c.execute("update users set name = 'c' where id = $1", &[&k0])
        .await
        .unwrap();
    let e = c
        .execute("update users set name = 1/0 where id = $1", &[&k1])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22012");
    let msgs = c.simple_query("commit").await.unwrap();
    assert!(!msgs.is_empty());
    assert_eq!(
        count(&direct[0], "select count(*) from users where name = 'c'").await,
        0
    );
    // The extended protocol COMMIT path (tokio-postgres transactions).
    let mut c2 = p.connect().await;
    let t = c2.transaction().await.unwrap();
    t.execute("update users set name = 'd' where id = $1", &[&k1])
        .await
        .unwrap();
    t.execute("update users set name = 'd' where id = $1", &[&k2])
        .await
        .unwrap();
    t.commit().await.unwrap();
    assert_eq!(
        count(&direct[1], "select count(*) from users where name = 'd'").await,
        1
    );
    assert_eq!(
        count(&direct[2], "select count(*) from users where name = 'd'").await,
        1
    );
}

#[tokio::test]
async fn a_failed_prepare_rolls_back_every_shard() {
    let (p, direct) = setup_with("twopc_prepare_fails", "").await;
    let c = p.connect().await;
    let [k0, k1, _] = keys();
    // A deferred constraint is only checked at commit, i.e. at PREPARE TRANSACTION.
    direct[1]
        .batch_execute("create table guard (v int unique deferrable initially deferred); insert into guard values (1)")
        .await
        .unwrap();
    c.batch_execute("begin").await.unwrap();
    c.execute("insert into users (id, name) values ($1, 'p')", &[&k0])
        .await
        .unwrap();
    c.execute("insert into users (id, name) values ($1, 'p')", &[&k1])
        .await
        .unwrap();
    c.batch_execute(&format!(
        "/* shardgate: key={k1} table=users */ insert into guard values (1)"
    ))
    .await
    .unwrap();
    let e = c.batch_execute("commit").await.unwrap_err();
    assert_eq!(code(&e), "23505", "{e}");
    assert!(e.as_db_error().unwrap().message().contains("s1"), "{e:?}");
    for d in &direct {
        assert_eq!(count(d, "select count(*) from users").await, 0);
        assert_eq!(prepared(d).await, 0);
    }
    // The session goes on.
    c.execute("insert into users (id, name) values ($1, 'q')", &[&k0])
        .await
        .unwrap();
}

/// Stop the coordinator at `point`, then recover; returns how many of the three rows exist.
async fn crash_and_recover(point: &str) -> (i64, i64) {
    let (p, direct) = setup_with(
        &format!("twopc_{}", point.rsplit('.').next().unwrap()),
        "twopc: { enabled: true, orphan_timeout: 1s }\n",
    )
    .await;
    let proxy = p.running.as_ref().unwrap().proxy().clone();
    let c = p.connect().await;
    let [k0, k1, k2] = keys();
    c.batch_execute("begin").await.unwrap();
    for k in [k0, k1, k2] {
        c.execute("insert into users (id, name) values ($1, 'crash')", &[&k])
            .await
            .unwrap();
    }
    proxy.failpoints().arm(point);
    // The "crashed" coordinator drops the client without an answer.
    assert!(c.batch_execute("commit").await.is_err());
    let cfg: std::sync::Arc<Config> = proxy.config();
    let catalog = proxy.catalog_for_twopc().await.unwrap();
    // Undecided transactions wait out the orphan timeout; decided ones are finished at once.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = recovery::list(&cfg, &catalog).await.unwrap().0.len() as i64;
    let report = recovery::recover(&cfg, &catalog).await.unwrap();
    assert!(report.unreachable.is_empty());
    let mut rows = 0;
    for d in &direct {
        rows += count(d, "select count(*) from users where name = 'crash'").await;
        assert_eq!(
            prepared(d).await,
            0,
            "nothing stays prepared after recovery ({point})"
        );
    }
    // Recovery is idempotent.
    let again = recovery::recover(&cfg, &catalog).await.unwrap();
    assert_eq!((again.committed, again.rolled_back), (0, 0));
    (rows, before)
}

#[tokio::test]
async fn crash_after_first_prepare_is_rolled_back() {
    let (rows, in_doubt) = crash_and_recover(points::AFTER_FIRST_PREPARE).await;
    // The proxy's background recovery may settle some first: at most 1 were in doubt.
    assert_eq!(rows, 0);
    assert!(in_doubt <= 1, "{in_doubt} in doubt");
}

#[tokio::test]
async fn crash_after_prepare_is_rolled_back() {
    let (rows, in_doubt) = crash_and_recover(points::AFTER_PREPARE).await;
    // The proxy's background recovery may settle some first: at most 3 were in doubt.
    assert_eq!(rows, 0);
    assert!(in_doubt <= 3, "{in_doubt} in doubt");
}

#[tokio::test]
async fn crash_after_decision_is_committed() {
    let (rows, in_doubt) = crash_and_recover(points::AFTER_DECISION).await;
    // The proxy's background recovery may settle some first: at most 3 were in doubt.
    assert_eq!(rows, 3);
    assert!(in_doubt <= 3, "{in_doubt} in doubt");
}

#[tokio::test]
async fn crash_after_first_commit_is_committed() {
    let (rows, in_doubt) = crash_and_recover(points::AFTER_FIRST_COMMIT).await;
    // The proxy's background recovery may settle some first: at most 2 were in doubt.
    assert_eq!(rows, 3);
    assert!(in_doubt <= 2, "{in_doubt} in doubt");
}

#[tokio::test]
async fn twopc_cli_lists_and_recovers() {
    // A long orphan timeout keeps the proxy's background recovery (every timeout/2) from
    // settling the decided transaction before the CLI sees it.
    let (p, direct) = setup_with(
        "twopc_cli",
        "twopc: { enabled: true, orphan_timeout: 1h }\n",
    )
    .await;
    let proxy = p.running.as_ref().unwrap().proxy().clone();
    let c = p.connect().await;
    let [k0, k1, _] = keys();
    c.batch_execute("begin").await.unwrap();
    c.execute("insert into users (id, name) values ($1, 'cli')", &[&k0])
        .await
        .unwrap();
    c.execute("insert into users (id, name) values ($1, 'cli')", &[&k1])
        .await
        .unwrap();
    proxy.failpoints().arm(points::AFTER_DECISION);
    assert!(c.batch_execute("commit").await.is_err());
    let yaml = common::proxy::config_yaml(
        &p.db,
        &common::proxy::ProxyOpts {
            shards: 3,
            extra: format!(
                "{}twopc: {{ enabled: true, orphan_timeout: 1h }}\n",
                common::trap::SCHEMES
            ),
            ..Default::default()
        },
    );
    let file = std::env::temp_dir().join(format!("sg-twopc-{}.yaml", std::process::id()));
    std::fs::write(&file, yaml).unwrap();
    let run = {
        let file = file.clone();
        move |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
                .args(args)
                .arg("-c")
                .arg(&file)
                .output()
                .unwrap()
        }
    };
    let list = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&["twopc", "list"])
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.status.success(), "{text}");
    // The proxy's own recovery pass at start may already have finished one participant.
    let listed: usize = text
        .lines()
        .find_map(|l| {
            l.strip_prefix('(')?
                .strip_suffix(" in-doubt)")?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        (1..=2).contains(&listed) && text.contains("commit"),
        "{text}"
    );
    let rec = tokio::task::spawn_blocking(move || run(&["twopc", "recover"]))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&rec.stdout).to_string();
    assert!(rec.status.success(), "{text}");
    assert!(text.contains(&format!("committed {listed}")), "{text}");
    for d in &direct {
        assert_eq!(prepared(d).await, 0);
    }
    assert_eq!(
        count(&direct[0], "select count(*) from users where name = 'cli'").await,
        1
    );
    assert_eq!(
        count(&direct[1], "select count(*) from users where name = 'cli'").await,
        1
    );
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn copy_splits_rows_by_key_and_gathers_them() {
    use futures_util::{SinkExt, StreamExt};
    let (p, direct) = setup_with("twopc_copy", "").await;
    let c = p.connect().await;
    // Text format through the extended protocol (tokio-postgres copy_in).
    let sink = c.copy_in("copy users (id, name) from stdin").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for id in 1..=120 {
        data.push_str(&format!("{id}\tcopied {id}\n"));
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 120);
    for (i, d) in direct.iter().enumerate() {
        let want = (1..=120).filter(|&k| owner(k) == i).count() as i64;
        assert_eq!(
            count(d, "select count(*) from users").await,
            want,
            "shard s{i}"
        );
    }
    // CSV with a header and quoted fields through psql's \copy (the simple protocol).
    let out = p
        .psql(
            &[
                "-c",
                "\\copy users (name, id) from stdin with (format csv, header)",
            ],
            Some(b"name,id\n\"comma, and \"\"quote\"\"\",500\nplain,501\n\"multi\nline\",502\n"),
            &[],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name: String = c
        .query_one("select name from users where id = 500", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "comma, and \"quote\"");
    let name: String = c
        .query_one("select name from users where id = 502", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "multi\nline");
    // COPY TO STDOUT gathers every shard's rows, with one CopyDone and the summed count.
    // (The trap tables are partitioned, which COPY TO refuses: use the query form.)
    let stream = c
        .copy_out("copy (select * from users) to stdout")
        .await
        .unwrap();
    futures_util::pin_mut!(stream);
    let mut lines = 0;
    while let Some(chunk) = stream.next().await {
        lines += chunk.unwrap().iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(
        lines, 123,
        "every row once (text COPY escapes embedded newlines)"
    );
    // A bad key fails the whole COPY: nothing of it commits on any shard.
    let sink = c.copy_in("copy users (id, name) from stdin").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(
        b"900\tok\nnot-a-key\tbad\n901\tok\n",
    ))
    .await
    .unwrap();
    assert!(sink.finish().await.is_err());
    assert_eq!(
        c.query_one("select count(*) from users where id >= 900", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
    for d in &direct {
        assert_eq!(prepared(d).await, 0);
    }
}

/// Frames for one extended-protocol batch: Parse, then Bind+Execute per row, then Sync.
fn insert_batch(rows: &[(i64, &str)]) -> Vec<u8> {
    use common::proxy::frame;
    let mut out = Vec::new();
    let mut p = b"\0insert into users (id, name) values ($1, $2)\0".to_vec();
    p.extend_from_slice(&0i16.to_be_bytes());
    out.extend(frame(b'P', &p));
    for (id, name) in rows {
        let mut b = b"\0\0".to_vec();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&2i16.to_be_bytes());
        for v in [id.to_string(), name.to_string()] {
            b.extend_from_slice(&(v.len() as i32).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        b.extend_from_slice(&0i16.to_be_bytes());
        out.extend(frame(b'B', &b));
        out.extend(frame(b'E', b"\0\0\0\0\0"));
    }
    out.extend(frame(b'S', b""));
    out
}

/// Read up to ReadyForQuery: the tags, the SQLSTATE of any error, and the status.
async fn answers(c: &mut common::proxy::RawClient) -> (String, Option<String>, u8) {
    let (mut tags, mut code, mut status) = (String::new(), None, 0);
    while let Some((tag, body)) = c.read_msg().await {
        tags.push(tag as char);
        if tag == b'E' {
            code = Some(common::proxy::RawClient::sqlstate(&body));
        }
        if tag == b'Z' {
            status = body[0];
            break;
        }
    }
    (tags, code, status)
}

#[tokio::test]
async fn a_batch_over_several_shards_runs_statement_by_statement() {
    let (p, direct) = setup_with("twopc_batch", "").await;
    let raw_proxy = common::proxy::start_proxy_on(
        &p.db,
        common::proxy::ProxyOpts {
            shards: 3,
            auth_method: "trust",
            extra: common::trap::SCHEMES.to_string(),
            ..Default::default()
        },
    )
    .await;
    let mut c = common::proxy::RawClient::login(raw_proxy.addr, "app", &p.db).await;
    let [k0, k1, k2] = keys();
    // Outside a transaction: one atomic batch over three shards (JDBC executeBatch).
    c.send(&insert_batch(&[(k0, "a"), (k1, "b"), (k2, "c")]))
        .await;
    let (tags, code, status) = answers(&mut c).await;
    assert_eq!((tags.as_str(), code, status), ("12C2C2CZ", None, b'I'));
    for d in &direct {
        assert_eq!(count(d, "select count(*) from users").await, 1);
        assert_eq!(prepared(d).await, 0);
    }
    // A failing row fails the batch: nothing of it stays on any shard.
    let k = |s, n| (1..).filter(|&k| owner(k) == s).nth(n).unwrap();
    c.send(&insert_batch(&[
        (k(0, 1), "d"),
        (k(1, 1), "e"),
        (k1, "duplicate"),
    ]))
    .await;
    let (tags, code, status) = answers(&mut c).await;
    assert_eq!(
        (tags.as_str(), code.as_deref(), status),
        ("12C2C2EZ", Some("23505"), b'I')
    );
    for d in &direct {
        assert_eq!(
            count(d, "select count(*) from users").await,
            1,
            "rolled back everywhere"
        );
    }
    // Inside a transaction: shards join it; COMMIT commits them all.
    c.send(&common::proxy::frame(b'Q', b"begin\0")).await;
    assert_eq!(answers(&mut c).await.2, b'T');
    c.send(&insert_batch(&[(k(0, 2), "f"), (k(2, 2), "g")]))
        .await;
    let (tags, _, status) = answers(&mut c).await;
    assert_eq!((tags.as_str(), status), ("12C2CZ", b'T'));
    c.send(&common::proxy::frame(b'Q', b"commit\0")).await;
    assert_eq!(answers(&mut c).await.2, b'I');
    assert_eq!(count(&direct[0], "select count(*) from users").await, 2);
    assert_eq!(count(&direct[2], "select count(*) from users").await, 2);
}
