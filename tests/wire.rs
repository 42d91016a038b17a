//! Wire protocol through the proxy against real Postgres: authentication, simple and extended
//! queries, error fields, cancel, COPY both ways, a non-UTF-8 client encoding, malformed input.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{blocking, code, frame, start_proxy, ProxyOpts, RawClient};
use futures_util::{pin_mut, SinkExt, StreamExt};

#[tokio::test]
async fn scram_login_succeeds_and_bad_credentials_fail() {
    let p = start_proxy("auth_scram", ProxyOpts::default()).await;
    let c = p.connect().await;
    let row = c.query_one("select current_user::text", &[]).await.unwrap();
    // The proxy logs in to the shard as the URL's user.
    assert_eq!(row.get::<_, String>(0), "app");
    let e = p
        .try_connect("app", "wrong")
        .await
        .err()
        .unwrap_or_else(|| panic!("wrong password must fail"));
    assert_eq!(code(&e), "28P01", "{e}");
    let e = p
        .try_connect("nobody", "x")
        .await
        .err()
        .unwrap_or_else(|| panic!("unknown user must fail"));
    assert_eq!(code(&e), "28000", "{e}");
    // A second configured user with its own password.
    assert!(p.try_connect("other", "secret").await.is_ok());
}

#[tokio::test]
async fn md5_and_trust_methods() {
    let p = start_proxy(
        "auth_md5",
        ProxyOpts {
            auth_method: "md5",
            ..Default::default()
        },
    )
    .await;
    let c = p.connect().await;
    assert_eq!(
        c.query_one("select 7", &[]).await.unwrap().get::<_, i32>(0),
        7
    );
    let e = p
        .try_connect("app", "nope")
        .await
        .err()
        .unwrap_or_else(|| panic!("md5 wrong password"));
    assert_eq!(code(&e), "28P01");
    let out = blocking({
        let url = p.url("app", "app");
        move || {
            std::process::Command::new(common::bin_path("psql"))
                .args(["-X", "-A", "-t", "-c", "select 'md5 via psql'", &url])
                .output()
                .unwrap()
        }
    })
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "md5 via psql",
        "{out:?}"
    );

    let t = start_proxy(
        "auth_trust",
        ProxyOpts {
            auth_method: "trust",
            ..Default::default()
        },
    )
    .await;
    let c = t.try_connect("app", "anything").await.unwrap();
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    let e = t
        .try_connect("ghost", "")
        .await
        .err()
        .unwrap_or_else(|| panic!("unknown user under trust"));
    assert_eq!(code(&e), "28000");
}

#[tokio::test]
async fn unknown_database_is_3d000() {
    let p = start_proxy("unknown_db", ProxyOpts::default()).await;
    let url = format!("postgres://app:app@127.0.0.1:{}/nosuchdb", p.addr.port());
    let e = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(code(&e), "3D000", "{e}");
}

#[tokio::test]
async fn simple_and_extended_queries_with_many_statements() {
    let p = start_proxy("queries", ProxyOpts::default()).await;
    let c = p.connect().await;
    // Several statements in one simple Query message.
    let msgs = c
        .simple_query("create table t (id int primary key, v text); insert into t values (1,'a'),(2,'b'); select v from t order by id")
        .await
        .unwrap();
    let rows: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(rows, vec!["a", "b"]);
    // Extended protocol: unnamed statements with text and binary parameters and results.
    let r = c
        .query_one("select v, id * 10 from t where id = $1", &[&2i32])
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, i32>(1)),
        ("b".into(), 20)
    );
    // Named statement, reused.
    let st = c
        .prepare("select count(*) from t where id >= $1")
        .await
        .unwrap();
    for (arg, want) in [(1i32, 2i64), (2, 1), (3, 0)] {
        assert_eq!(
            c.query_one(&st, &[&arg]).await.unwrap().get::<_, i64>(0),
            want
        );
    }
    // Pipelining: several queries in flight before any Sync answer is read.
    let (a, b, d) = tokio::join!(
        c.query_one("select 1::int", &[]),
        c.query_one("select 2::int", &[]),
        c.query_one("select 3::int", &[])
    );
    assert_eq!(
        (
            a.unwrap().get::<_, i32>(0),
            b.unwrap().get::<_, i32>(0),
            d.unwrap().get::<_, i32>(0)
        ),
        (1, 2, 3)
    );
    // An empty query is answered (EmptyQueryResponse), not hung or refused.
    c.simple_query("").await.unwrap();
    // Explicit transaction with rollback.
    c.batch_execute("begin; insert into t values (3,'c'); rollback")
        .await
        .unwrap();
    let n: i64 = c
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn error_fields_pass_through_unchanged() {
    let p = start_proxy("errors", ProxyOpts::default()).await;
    let c = p.connect().await;
    let e = c.simple_query("select 1/0").await.unwrap_err();
    assert_eq!(code(&e), "22012");
    let e = c
        .batch_execute(
            "do $$ begin raise exception 'boom' using detail = 'the detail', hint = 'the hint', errcode = 'P0001'; end $$",
        )
        .await
        .unwrap_err();
    let db = e.as_db_error().expect("db error");
    assert_eq!(db.code().code(), "P0001");
    assert_eq!(db.message(), "boom");
    assert_eq!(db.detail(), Some("the detail"));
    assert_eq!(db.hint(), Some("the hint"));
    let e = c
        .simple_query("select nosuchcolumn from pg_class")
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42703");
    assert!(matches!(
        db.position(),
        Some(tokio_postgres::error::ErrorPosition::Original(8))
    ));
    // The session is still usable after errors, also in the extended protocol.
    assert!(c.query_one("select $1::int / 0", &[&1i32]).await.is_err());
    assert_eq!(
        c.query_one("select 5", &[]).await.unwrap().get::<_, i32>(0),
        5
    );
}

#[tokio::test]
async fn cancel_reaches_the_running_statement() {
    let p = start_proxy("cancel", ProxyOpts::default()).await;
    let c = p.connect().await;
    let token = c.cancel_token();
    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let e = c.simple_query("select pg_sleep(20)").await.unwrap_err();
    assert_eq!(code(&e), "57014", "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    canceller.await.unwrap().unwrap();
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn copy_in_and_out() {
    let p = start_proxy("copy", ProxyOpts::default()).await;
    let c = p.connect().await;
    c.batch_execute("create table items (id int, name text)")
        .await
        .unwrap();
    let sink = c.copy_in("copy items from stdin").await.unwrap();
    pin_mut!(sink);
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\titem {i}\n"));
    }
    sink.send(bytes::Bytes::from(data.clone())).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 5000);
    let stream = c.copy_out("copy items to stdout").await.unwrap();
    pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(out).unwrap(), data);
    // A failing COPY leaves the session usable.
    let sink = c.copy_in("copy items from stdin").await.unwrap();
    pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"not-a-number\tx\n"))
        .await
        .unwrap();
    assert_eq!(code(&sink.finish().await.unwrap_err()), "22P02");
    assert_eq!(
        c.query_one("select count(*) from items", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        5000
    );

    // psql's \copy in csv, both ways.
    let out = p
        .psql(
            &["-c", "\\copy items from stdin with (format csv)"],
            Some(b"9001,\"csv, row\"\n9002,other\n"),
            &[],
        )
        .await;
    assert!(out.status.success(), "{out:?}");
    let out = p.psql(&["-A", "-t", "-c", "\\copy (select name from items where id > 9000 order by id) to stdout with (format csv)"], None, &[]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\"csv, row\"\nother\n",
        "{out:?}"
    );
}

#[tokio::test]
async fn latin1_client_bytes_round_trip() {
    let p = start_proxy("latin1", ProxyOpts::default()).await;
    let c = p.connect().await;
    c.batch_execute("create table words (w text)")
        .await
        .unwrap();
    // 'café' in LATIN1 is 63 61 66 e9: not valid UTF-8, so any lossy decode would corrupt it.
    let sql = b"insert into words values ('caf\xe9');\nselect w from words;\n".to_vec();
    let out = p
        .psql(
            &["-q", "-A", "-t"],
            Some(&sql),
            &[("PGCLIENTENCODING", "LATIN1")],
        )
        .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout,
        b"caf\xe9\n".to_vec(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Stored correctly as UTF-8 on the server.
    let w: String = c
        .query_one("select w from words", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(w, "café");
}

#[tokio::test]
async fn malformed_messages_get_08p01_and_others_are_unaffected() {
    let p = start_proxy(
        "malformed",
        ProxyOpts {
            auth_method: "trust",
            ..Default::default()
        },
    )
    .await;
    let healthy = p.connect().await;
    let cases: Vec<Vec<u8>> = vec![
        vec![b'Q', 0, 0, 0, 2],             // length below 4
        vec![b'Q', 0x7f, 0xff, 0xff, 0xff], // far over the size limit
        frame(b'Q', b"select 1"),           // no NUL terminator
        frame(b'B', b"\0s\0\x00\x00\x00\x01\x00\x00\x03\xe8ab\x00\x00"), // parameter longer than the frame
        frame(b'P', b"\0select 1\0\x00\x05"),                            // type count past the end
        frame(b'D', b"Xname\0"),                                         // bad describe kind
    ];
    for bytes in cases {
        let mut raw = RawClient::login(p.addr, "app", &p.db).await;
        raw.send(&bytes).await;
        let (tag, body) = raw.read_msg().await.expect("an error before close");
        assert_eq!(tag, b'E');
        assert_eq!(RawClient::sqlstate(&body), "08P01", "for {bytes:?}");
        assert!(raw.read_msg().await.is_none(), "connection must be closed");
        assert_eq!(
            healthy
                .query_one("select 1", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            1
        );
    }
    // A truncated frame followed by a disconnect must not disturb anything either.
    let mut raw = RawClient::login(p.addr, "app", &p.db).await;
    raw.send(&frame(b'Q', b"select 1\0")[..7]).await;
    drop(raw);
    assert_eq!(
        healthy
            .query_one("select 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    // A garbage startup packet.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
    let mut raw = RawClient { stream: s };
    let (tag, body) = raw.read_msg().await.unwrap();
    assert_eq!((tag, RawClient::sqlstate(&body).as_str()), (b'E', "08P01"));
}

#[tokio::test]
async fn unknown_message_types_are_forwarded_raw() {
    // FunctionCall ('F') is not decoded by the proxy; the server answers it. Call int4abs(-5)
    // by OID (int4abs is OID 1251) with one text-format argument.
    let p = start_proxy(
        "fcall",
        ProxyOpts {
            auth_method: "trust",
            ..Default::default()
        },
    )
    .await;
    let mut raw = RawClient::login(p.addr, "app", &p.db).await;
    let mut body = Vec::new();
    body.extend_from_slice(&1251i32.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&2i32.to_be_bytes());
    body.extend_from_slice(b"-5");
    body.extend_from_slice(&0i16.to_be_bytes());
    raw.send(&frame(b'F', &body)).await;
    let (tag, body) = raw.read_msg().await.unwrap();
    assert_eq!(
        tag,
        b'V',
        "FunctionCallResponse expected, got {:?}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(&body[4..], b"5");
    let (tag, _) = raw.read_msg().await.unwrap();
    assert_eq!(tag, b'Z');
}

#[tokio::test]
async fn proxy_authenticates_to_shards_with_md5_too() {
    // The shard URL's user md5user is set up with an md5 password (pg_hba: md5).
    let db = common::fresh_db("backend_md5");
    let s0 = &common::cluster().servers[0];
    s0.psql(&db, "grant all on schema public to md5user")
        .unwrap();
    let url = format!("postgres://md5user:md5pass@127.0.0.1:{}/{db}", s0.port);
    let p = common::proxy::start_proxy_on(
        &db,
        ProxyOpts {
            shard0_url: Some(url),
            shards: 1,
            ..Default::default()
        },
    )
    .await;
    let c = p.connect().await;
    let who: String = c
        .query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "md5user");
    // A wrong shard password is a clear 08006 naming the shard, not a hang.
    let bad = format!("postgres://md5user:wrong@127.0.0.1:{}/{db}", s0.port);
    let p = common::proxy::start_proxy_on(
        &db,
        ProxyOpts {
            shard0_url: Some(bad),
            shards: 1,
            ..Default::default()
        },
    )
    .await;
    let e = p
        .try_connect("app", "app")
        .await
        .err()
        .unwrap_or_else(|| panic!("must fail"));
    assert_eq!(code(&e), "08006");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(msg.contains("\"s0\"") && msg.contains("password"), "{msg}");
}
