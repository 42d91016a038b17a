//! Regression tests for the protocol and pooling review findings: each scenario of the review
//! (flush-split batches, extended COPY, fan-out mixed with other statements, prepared-statement
//! bookkeeping, DEALLOCATE/DISCARD, SET replay and savepoints, deferred BEGIN, FunctionCall,
//! binary parameters) asserts what a client connected to a single Postgres would see, or the
//! documented refusal (0A000) where the proxy cannot do that.
//!
//! Every read is bounded by a timeout, so a desynchronised proxy fails a test instead of
//! hanging it.

mod common;

use std::future::Future;
use std::time::Duration;

use common::proxy::{code, frame, start_proxy_on, ProxyOpts, RawClient, TestProxy};
use shardgate::router::{hash::bucket_of, KeyValue};
use tokio_postgres::SimpleQueryMessage;

const BUCKETS: u32 = 8;
const SHARDS: usize = 2;
/// Bound on any single wait for the proxy.
const WAIT: Duration = Duration::from_secs(5);

fn owner(key: i64) -> usize {
    (bucket_of(&KeyValue::Int(key), BUCKETS) as usize * SHARDS) / BUCKETS as usize
}

/// The `skip`-th positive key owned by `shard`.
fn key_on(shard: usize, skip: usize) -> i64 {
    (1..).filter(|&k| owner(k) == shard).nth(skip).unwrap()
}

const EXTRA: &str = "schemes:
  by_user: { type: hash, buckets: 8 }
tables:
  users: { scheme: by_user, key: id }
  countries: { reference: true }
";

/// A fresh database with the review's tables on both shards, direct connections to each shard
/// and a trust-auth proxy with the given pool mode and size.
async fn setup(
    prefix: &str,
    mode: &'static str,
    size: u32,
) -> (TestProxy, Vec<tokio_postgres::Client>) {
    let db = common::fresh_db(prefix);
    let mut direct = Vec::new();
    for s in common::cluster().servers.iter().take(SHARDS) {
        let (c, conn) = tokio_postgres::connect(&s.url("app", "app", &db), tokio_postgres::NoTls)
            .await
            .expect("direct");
        tokio::spawn(conn);
        c.batch_execute(
            "create table users (id bigint primary key, name text);
             create table items (id int, name text);
             create table countries (code text primary key, name text);",
        )
        .await
        .unwrap();
        direct.push(c);
    }
    let p = start_proxy_on(
        &db,
        ProxyOpts {
            shards: SHARDS,
            extra: EXTRA.to_string(),
            auth_method: "trust",
            pool_mode: mode,
            pool_size: size,
            checkout_timeout: "3s",
            ..Default::default()
        },
    )
    .await;
    (p, direct)
}

/// Await `f`, failing the test if it takes longer than [`WAIT`].
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

fn cstr(v: &mut Vec<u8>, s: &[u8]) {
    v.extend_from_slice(s);
    v.push(0);
}

fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name.as_bytes());
    cstr(&mut b, sql.as_bytes());
    b.extend_from_slice(&(types.len() as i16).to_be_bytes());
    for t in types {
        b.extend_from_slice(&t.to_be_bytes());
    }
    frame(b'P', &b)
}

fn bind(portal: &str, stmt: &str, fmt: &[i16], vals: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal.as_bytes());
    cstr(&mut b, stmt.as_bytes());
    b.extend_from_slice(&(fmt.len() as i16).to_be_bytes());
    for f in fmt {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b.extend_from_slice(&(vals.len() as i16).to_be_bytes());
    for v in vals {
        match v {
            Some(x) => {
                b.extend_from_slice(&(x.len() as i32).to_be_bytes());
                b.extend_from_slice(x);
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    frame(b'B', &b)
}

fn execute(portal: &str, max: i32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal.as_bytes());
    b.extend_from_slice(&max.to_be_bytes());
    frame(b'E', &b)
}

fn describe_s(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    cstr(&mut b, name.as_bytes());
    frame(b'D', &b)
}

fn close_s(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    cstr(&mut b, name.as_bytes());
    frame(b'C', &b)
}

fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql.as_bytes());
    frame(b'Q', &b)
}

fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

fn flush() -> Vec<u8> {
    frame(b'H', &[])
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// One bounded read: `None` on timeout or a closed connection.
async fn recv(c: &mut RawClient) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(WAIT, c.read_msg())
        .await
        .ok()
        .flatten()
}

/// The first column of a DataRow, as text (`None` for NULL).
fn first_col(body: &[u8]) -> Option<String> {
    let len = i32::from_be_bytes(body[2..6].try_into().unwrap());
    (len >= 0).then(|| String::from_utf8_lossy(&body[6..6 + len as usize]).into_owned())
}

/// The message field of an ErrorResponse body.
fn error_message(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .find(|f| f.first() == Some(&b'M'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

/// What the client saw up to ReadyForQuery.
#[derive(Debug, Default)]
struct Reply {
    /// Message tags in order ('Z' included, its status excluded).
    tags: String,
    /// SQLSTATEs of the ErrorResponses.
    errs: Vec<String>,
    /// Messages of the ErrorResponses (for failure output).
    msgs: Vec<String>,
    /// First column of every DataRow.
    rows: Vec<Option<String>>,
    /// CommandComplete tags.
    cmds: Vec<String>,
    /// ReadyForQuery status, or '?' when it never came.
    status: char,
}

impl Reply {
    fn count(&self, tag: u8) -> usize {
        self.tags.bytes().filter(|&t| t == tag).count()
    }
}

/// Read until ReadyForQuery (each message within [`WAIT`]).
async fn until_z(c: &mut RawClient) -> Reply {
    let mut r = Reply {
        status: '?',
        ..Default::default()
    };
    loop {
        let Some((t, body)) = recv(c).await else {
            r.tags.push_str("<timeout/closed>");
            return r;
        };
        r.tags.push(t as char);
        match t {
            b'E' => {
                r.errs.push(RawClient::sqlstate(&body));
                r.msgs.push(error_message(&body));
            }
            b'D' => r.rows.push(first_col(&body)),
            b'C' => r.cmds.push(
                String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body)).into_owned(),
            ),
            b'Z' => {
                r.status = body[0] as char;
                return r;
            }
            _ => {}
        }
    }
}

/// Read exactly `n` messages; the tags (with a marker on timeout).
async fn read_n(c: &mut RawClient, n: usize) -> String {
    let mut tags = String::new();
    for _ in 0..n {
        match recv(c).await {
            Some((t, _)) => tags.push(t as char),
            None => {
                tags.push_str("<timeout>");
                break;
            }
        }
    }
    tags
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    within(sql, c.query_one(sql, &[])).await.unwrap().get(0)
}

/// Rows of `users` with this id on each shard.
async fn placement(direct: &[tokio_postgres::Client], key: i64) -> Vec<i64> {
    let sql = format!("select count(*) from users where id = {key}");
    let mut v = Vec::new();
    for d in direct {
        v.push(count(d, &sql).await);
    }
    v
}

/// Server connections of this database left inside a transaction, over all shards.
async fn idle_in_transaction(direct: &[tokio_postgres::Client]) -> i64 {
    let mut n = 0;
    for d in direct {
        n += count(
            d,
            "select count(*) from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid()
               and state like 'idle in transaction%'",
        )
        .await;
    }
    n
}

/// The single text value a simple query returns.
async fn simple_value(c: &tokio_postgres::Client, sql: &str) -> Option<String> {
    let msgs = within(sql, c.simple_query(sql)).await.unwrap();
    msgs.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
        _ => None,
    })?
}

/// F1: after a Flush, a second part of the same batch for another shard is refused; the
/// implicit transaction fails, so the first part's insert is rolled back as well.
#[tokio::test]
async fn flush_split_batch_to_other_shard_is_refused() {
    let (p, direct) = setup("rg_flush_route", "session", 4).await;
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    let (k0, k1) = (key_on(0, 0), key_on(1, 0));
    let ins = "insert into users (id, name) values ($1, 'x')";
    let (a, b) = (k0.to_string(), k1.to_string());
    c.send(&cat(&[
        parse("", ins, &[]),
        bind("", "", &[], &[Some(a.as_bytes())]),
        execute("", 0),
        flush(),
    ]))
    .await;
    assert_eq!(
        read_n(&mut c, 3).await,
        "12C",
        "first part answered on Flush"
    );
    c.send(&cat(&[
        parse("", ins, &[]),
        bind("", "", &[], &[Some(b.as_bytes())]),
        execute("", 0),
        sync(),
    ]))
    .await;
    let r = until_z(&mut c).await;
    assert_eq!(r.errs, ["0A000"], "second part on another shard: {r:?}");
    assert_eq!(r.status, 'I', "{r:?}");
    assert_eq!(placement(&direct, k1).await, [0, 0], "key {k1} inserted");
    assert_eq!(
        placement(&direct, k0).await,
        [0, 0],
        "key {k0} survived the failed batch"
    );
    // The session is usable afterwards.
    c.send(&query("select 1")).await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty() && r.status == 'I', "{r:?}");
}

/// F2: a Flush-terminated part keeps its server connection until Sync: another client (pool of
/// one) waits for it and its error cannot roll back the first client's acknowledged insert.
#[tokio::test]
async fn flush_keeps_connection_until_sync() {
    let (p, direct) = setup("rg_flush_release", "transaction", 1).await;
    let mut a = RawClient::login(p.addr, "app", &p.db).await;
    a.send(&cat(&[
        parse("", "insert into items values (1, 'a')", &[]),
        bind("", "", &[], &[]),
        execute("", 0),
        flush(),
    ]))
    .await;
    assert_eq!(read_n(&mut a, 3).await, "12C", "A's first part on Flush");
    // Same startup parameters as A: no settings replay in between.
    let mut b = RawClient::login(p.addr, "app", &p.db).await;
    let other = tokio::spawn(async move {
        b.send(&query("select 1/0")).await;
        until_z(&mut b).await
    });
    // B must be waiting for A's connection now, not running on it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.send(&sync()).await;
    let r = until_z(&mut a).await;
    assert!(r.errs.is_empty(), "A's Sync: {r:?}");
    assert_eq!(r.status, 'I', "{r:?}");
    let rb = within("B's query", other).await.unwrap();
    assert_eq!(
        rb.errs,
        ["22012"],
        "B gets its own error once A is done: {rb:?}"
    );
    assert_eq!(
        count(&direct[0], "select count(*) from items").await,
        1,
        "A's acknowledged insert was lost"
    );
}

/// F3: COPY FROM STDIN over the extended protocol (tokio-postgres), then a statement for another
/// shard: it is answered, not left hanging.
#[tokio::test]
async fn extended_copy_then_other_shard_does_not_hang() {
    use futures_util::SinkExt;
    let (p, direct) = setup("rg_copy", "transaction", 4).await;
    let c = p.connect().await;
    let sink = within("copy_in", c.copy_in("copy items from stdin"))
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    within("copy data", sink.send(bytes::Bytes::from_static(b"1\tx\n")))
        .await
        .unwrap();
    let n = within("copy finish", sink.finish()).await.unwrap();
    assert_eq!(n, 1);
    let k1 = key_on(1, 0);
    direct[1]
        .batch_execute(&format!("insert into users values ({k1}, 'on s1')"))
        .await
        .unwrap();
    let v = simple_value(&c, &format!("select name from users where id = {k1}")).await;
    assert_eq!(v.as_deref(), Some("on s1"));
    assert_eq!(count(&direct[0], "select count(*) from items").await, 1);
}

/// F4: `BEGIN` in the same Query as a fan-out read: refused, or run with the client told the
/// truth; either way no shard is left inside a transaction the client does not know about.
#[tokio::test]
async fn fanout_with_begin_leaves_no_shard_in_transaction() {
    let (p, direct) = setup("rg_fan_begin", "transaction", 4).await;
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    c.send(&query("begin; select * from users")).await;
    let r = until_z(&mut c).await;
    assert!(
        r.errs == ["0A000"] || (r.errs.is_empty() && r.status == 'T'),
        "begin + fan-out: {r:?}"
    );
    if r.status == 'I' {
        assert_eq!(idle_in_transaction(&direct).await, 0, "client told 'I'");
    }
    c.send(&query("commit")).await;
    let r = until_z(&mut c).await;
    assert_eq!(r.status, 'I', "commit: {r:?}");
    assert_eq!(
        idle_in_transaction(&direct).await,
        0,
        "a shard is still in a transaction after COMMIT"
    );
    let k1 = key_on(1, 0);
    c.send(&query(&format!(
        "insert into users (id, name) values ({k1}, 'y')"
    )))
    .await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty() && r.status == 'I', "insert: {r:?}");
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        placement(&direct, k1).await,
        [0, 1],
        "autocommitted insert lost"
    );
}

/// F5: a Query of two statements where one fans out is refused as a whole (0A000): no rows of
/// one statement are passed off as another's.
#[tokio::test]
async fn fanout_with_second_statement_is_refused() {
    let (p, direct) = setup("rg_fan_two", "transaction", 4).await;
    direct[0]
        .batch_execute(&format!("insert into users values ({}, 'a')", key_on(0, 0)))
        .await
        .unwrap();
    direct[1]
        .batch_execute(&format!("insert into users values ({}, 'b')", key_on(1, 0)))
        .await
        .unwrap();
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    c.send(&query("select id from users; select 42, 43")).await;
    let r = until_z(&mut c).await;
    assert_eq!(r.errs, ["0A000"], "{r:?}");
    assert_eq!(r.count(b'D'), 0, "rows sent before the refusal: {r:?}");
    assert_eq!(r.count(b'C'), 0, "{r:?}");
    assert_eq!(r.status, 'I', "{r:?}");
    // Each statement alone works.
    c.send(&query("select id from users")).await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty(), "{r:?}");
    assert_eq!(r.rows.len(), 2, "{r:?}");
}

/// F6: an error mid-batch skips the batch's later Parses; the pooled connection must not record
/// them, so the next client's statements still work.
#[tokio::test]
async fn error_mid_batch_does_not_poison_other_clients() {
    let (p, _direct) = setup("rg_poison", "transaction", 1).await;
    let mut a = RawClient::login(p.addr, "app", &p.db).await;
    a.send(&cat(&[
        parse("a", "select 1/0", &[]),
        bind("", "a", &[], &[]),
        execute("", 0),
        parse("b", "select 42", &[]),
        bind("", "b", &[], &[]),
        execute("", 0),
        sync(),
    ]))
    .await;
    let r = until_z(&mut a).await;
    assert_eq!(r.errs, ["22012"], "{r:?}");
    assert_eq!(r.status, 'I', "{r:?}");
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = p.connect().await;
    let rows = within("B select 42", b.query("select 42", &[]))
        .await
        .unwrap_or_else(|e| panic!("B select 42: {} {e}", code(&e)));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), 42);
}

/// F7: Close then Parse of the same name in one batch: the Bind uses the new statement.
#[tokio::test]
async fn close_then_reparse_same_name() {
    let (p, _direct) = setup("rg_close_reparse", "transaction", 4).await;
    let mut a = RawClient::login(p.addr, "app", &p.db).await;
    a.send(&cat(&[parse("s1", "select 1", &[]), sync()])).await;
    let r = until_z(&mut a).await;
    assert!(r.errs.is_empty(), "prepare: {r:?}");
    a.send(&cat(&[
        close_s("s1"),
        parse("s1", "select 2", &[]),
        bind("", "s1", &[], &[]),
        execute("", 0),
        sync(),
    ]))
    .await;
    let r = until_z(&mut a).await;
    assert!(r.errs.is_empty(), "close + reparse + bind: {r:?}");
    assert_eq!(r.tags, "312DCZ", "{r:?}");
    assert_eq!(r.rows, [Some("2".to_string())]);
}

/// F8: DEALLOCATE ALL from one client does not break prepared statements of the pooled
/// connection for the next client; DEALLOCATE of a client's own name removes just that name.
#[tokio::test]
async fn deallocate_does_not_break_other_clients() {
    let (p, _direct) = setup("rg_dealloc", "transaction", 1).await;
    let a = p.connect().await;
    within("select 7", a.query("select 7", &[])).await.unwrap();
    within("deallocate all", a.batch_execute("deallocate all"))
        .await
        .unwrap_or_else(|e| panic!("deallocate all: {} {e}", code(&e)));
    let rows = within("A select 7 again", a.query("select 7", &[]))
        .await
        .unwrap_or_else(|e| panic!("A after deallocate all: {} {e}", code(&e)));
    assert_eq!(rows.len(), 1);
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = p.connect().await;
    let rows = within("B select 7", b.query("select 7", &[]))
        .await
        .unwrap_or_else(|e| panic!("other client, select 7: {} {e}", code(&e)));
    assert_eq!(rows[0].get::<_, i32>(0), 7);

    // DEALLOCATE <name> of a protocol-level statement, as on Postgres.
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    c.send(&cat(&[
        parse("mine", "select 8", &[]),
        parse("kept", "select 9", &[]),
        sync(),
    ]))
    .await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty(), "prepare: {r:?}");
    c.send(&query("deallocate mine")).await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty(), "deallocate mine: {r:?}");
    c.send(&cat(&[bind("", "mine", &[], &[]), execute("", 0), sync()]))
        .await;
    let r = until_z(&mut c).await;
    assert_eq!(r.errs, ["26000"], "bind of a deallocated statement: {r:?}");
    c.send(&cat(&[bind("", "kept", &[], &[]), execute("", 0), sync()]))
        .await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty(), "the other statement: {r:?}");
    assert_eq!(r.rows, [Some("9".to_string())]);
}

/// F9 (session mode): a SET run on one shard's connection reaches the other shard's held
/// connection too.
#[tokio::test]
async fn set_reaches_other_held_connection() {
    let (p, _direct) = setup("rg_set_held", "session", 4).await;
    let c = p.connect().await;
    let on = |s: &str| format!("/* shardgate: shard={s} */ show application_name");
    let before = simple_value(&c, &on("s1")).await;
    assert_ne!(before.as_deref(), Some("changed"));
    within("set", c.batch_execute("set application_name = 'changed'"))
        .await
        .unwrap();
    assert_eq!(
        simple_value(&c, &on("s0")).await.as_deref(),
        Some("changed")
    );
    assert_eq!(
        simple_value(&c, &on("s1")).await.as_deref(),
        Some("changed"),
        "s1 connection held since before the SET"
    );
}

/// F10: DISCARD ALL clears `SET shardgate.shard`: statements route by key again.
#[tokio::test]
async fn discard_all_clears_shard_hint() {
    let (p, direct) = setup("rg_discard_hint", "transaction", 4).await;
    let c = p.connect().await;
    within("set hint", c.batch_execute("set shardgate.shard = 's1'"))
        .await
        .unwrap();
    within("discard all", c.batch_execute("discard all"))
        .await
        .unwrap();
    let k0 = key_on(0, 0);
    within(
        "insert",
        c.batch_execute(&format!("insert into users (id, name) values ({k0}, 'z')")),
    )
    .await
    .unwrap();
    assert_eq!(
        placement(&direct, k0).await,
        [1, 0],
        "key {k0} (owner s0) placed by a discarded hint"
    );
}

/// `application_name` as each shard's connection for this client reports it.
async fn app_name_everywhere(c: &tokio_postgres::Client, want: &str) {
    for s in ["s0", "s1"] {
        let v = simple_value(
            c,
            &format!("/* shardgate: shard={s} */ show application_name"),
        )
        .await;
        assert_eq!(v.as_deref(), Some(want), "application_name on {s}");
    }
}

/// F11: a SET made before a savepoint that is rolled back to survives the COMMIT, on every
/// shard.
#[tokio::test]
async fn rollback_to_savepoint_keeps_earlier_set() {
    let (p, _direct) = setup("rg_savepoint_set", "transaction", 4).await;
    let c = p.connect().await;
    within(
        "transaction",
        c.batch_execute("begin; set application_name = 'kept'; savepoint a; rollback to a; commit"),
    )
    .await
    .unwrap();
    app_name_everywhere(&c, "kept").await;
}

/// A SET made after a savepoint that is rolled back to is undone, as in Postgres, whether the
/// statements come in one request or one by one; a SET before the savepoint survives.
#[tokio::test]
async fn rollback_to_savepoint_undoes_later_set() {
    let (p, _direct) = setup("rg_savepoint_set_after", "transaction", 4).await;
    let c = p.connect().await;
    within(
        "one request",
        c.batch_execute("begin; set application_name = 'before'; savepoint a; set application_name = 'after'; rollback to a; commit"),
    )
    .await
    .unwrap();
    app_name_everywhere(&c, "before").await;
    for q in [
        "begin",
        "set application_name = 'one'",
        "savepoint x",
        "set application_name = 'two'",
        "savepoint y",
        "set application_name = 'three'",
        "rollback to savepoint x",
        "commit",
    ] {
        within(q, c.batch_execute(q)).await.unwrap();
    }
    app_name_everywhere(&c, "one").await;
}

/// F12: the proxy answers BEGIN itself; when the server then rejects it
/// (`isolation level bogus`) the next statement fails instead of autocommitting, and ROLLBACK
/// leaves nothing behind.
#[tokio::test]
async fn bad_begin_fails_next_statement() {
    let (p, direct) = setup("rg_bad_begin", "transaction", 4).await;
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    c.send(&query("begin isolation level bogus")).await;
    let begin = until_z(&mut c).await;
    c.send(&query("insert into items values (5, 'x')")).await;
    let insert = until_z(&mut c).await;
    assert!(
        !begin.errs.is_empty() || !insert.errs.is_empty(),
        "the bad BEGIN was never reported: begin {begin:?}, insert {insert:?}"
    );
    assert!(
        !insert.errs.is_empty(),
        "insert after a bad BEGIN: {insert:?}"
    );
    assert_eq!(insert.status, 'E', "{insert:?}");
    c.send(&query("rollback")).await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty() && r.status == 'I', "rollback: {r:?}");
    assert_eq!(
        count(&direct[0], "select count(*) from items").await,
        0,
        "the insert autocommitted"
    );
    assert_eq!(idle_in_transaction(&direct).await, 0);
}

/// F13: a lone Sync inside a transaction the proxy has not sent anywhere yet reports 'T'.
#[tokio::test]
async fn lone_sync_in_deferred_transaction_reports_t() {
    let (p, _direct) = setup("rg_lone_sync", "transaction", 4).await;
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    c.send(&query("begin")).await;
    let r = until_z(&mut c).await;
    assert_eq!((r.tags.as_str(), r.status), ("CZ", 'T'), "begin: {r:?}");
    c.send(&sync()).await;
    let r = until_z(&mut c).await;
    assert_eq!((r.tags.as_str(), r.status), ("Z", 'T'), "lone sync: {r:?}");
    c.send(&query("commit")).await;
    let r = until_z(&mut c).await;
    assert_eq!(r.status, 'I', "commit: {r:?}");
}

/// F14: a binary parameter declared `text` and cast with `$1::bigint` is read as text, so the
/// statement goes to the key's owner and finds the row.
#[tokio::test]
async fn binary_text_param_cast_to_bigint_routes_by_text() {
    let (p, direct) = setup("rg_bin_text", "transaction", 4).await;
    // A key whose 8-character text, misread as int8 bytes, lands on the other shard.
    let k = (10_000_000i64..)
        .find(|&k| {
            let s = k.to_string();
            s.len() == 8 && owner(i64::from_be_bytes(s.as_bytes().try_into().unwrap())) != owner(k)
        })
        .unwrap();
    direct[owner(k)]
        .batch_execute(&format!("insert into users values ({k}, 'found')"))
        .await
        .unwrap();
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    let ks = k.to_string();
    c.send(&cat(&[
        parse("", "select name from users where id = $1::bigint", &[25]),
        bind("", "", &[1], &[Some(ks.as_bytes())]),
        execute("", 0),
        sync(),
    ]))
    .await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty(), "key {k}: {r:?}");
    assert_eq!(r.rows, [Some("found".to_string())], "key {k}: {r:?}");
}

/// F15: a Parse that fails in an aborted transaction (25P02) does not make the pooled
/// connection forget a statement it still has: the client's statement works after ROLLBACK.
#[tokio::test]
async fn failed_parse_in_aborted_transaction_keeps_statement() {
    let (p, _direct) = setup("rg_trick_fail", "transaction", 1).await;
    let c = p.connect().await;
    let st = within("prepare", c.prepare("select 9")).await.unwrap();
    within("query", c.query(&st, &[])).await.unwrap();
    within("begin", c.batch_execute("begin")).await.unwrap();
    let e = within("1/0", c.batch_execute("select 1/0"))
        .await
        .expect_err("division by zero");
    assert_eq!(code(&e), "22012");
    let e = within("prepare in aborted txn", c.prepare("select 9"))
        .await
        .map(|_| ())
        .expect_err("Parse in an aborted transaction");
    assert_eq!(code(&e), "25P02", "{e}");
    within("rollback", c.batch_execute("rollback"))
        .await
        .unwrap();
    let rows = within("query after rollback", c.query(&st, &[]))
        .await
        .unwrap_or_else(|e| panic!("after rollback: {} {e}", code(&e)));
    assert_eq!(rows[0].get::<_, i32>(0), 9);
}

/// F16 (session mode): DISCARD ALL, then a statement on the other shard's held connection is
/// prepared again rather than assumed present.
#[tokio::test]
async fn discard_all_session_mode_other_shard() {
    let (p, _direct) = setup("rg_discard_session", "session", 4).await;
    let c = p.connect().await;
    let sql = "/* shardgate: shard=s1 */ select 3";
    within("first", c.query(sql, &[])).await.unwrap();
    within("discard all", c.batch_execute("discard all"))
        .await
        .unwrap();
    let rows = within("after discard all", c.query(sql, &[]))
        .await
        .unwrap_or_else(|e| panic!("after discard all: {} {e}", code(&e)));
    assert_eq!(rows[0].get::<_, i32>(0), 3);
}

/// F17 (raw protocol): DEALLOCATE ALL by one client; the next client on the same pooled
/// connection prepares and re-binds its statement normally.
#[tokio::test]
async fn deallocate_all_raw_next_client_works() {
    let (p, _direct) = setup("rg_dealloc_raw", "transaction", 1).await;
    let mut a = RawClient::login(p.addr, "app", &p.db).await;
    a.send(&cat(&[
        parse("s1", "select 7", &[]),
        bind("", "s1", &[], &[]),
        execute("", 0),
        sync(),
    ]))
    .await;
    let r = until_z(&mut a).await;
    assert!(r.errs.is_empty(), "A: {r:?}");
    a.send(&query("deallocate all")).await;
    let r = until_z(&mut a).await;
    assert!(r.errs.is_empty(), "A deallocate all: {r:?}");
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b = RawClient::login(p.addr, "app", &p.db).await;
    b.send(&cat(&[
        parse("t1", "select 7", &[]),
        bind("", "t1", &[], &[]),
        execute("", 0),
        sync(),
    ]))
    .await;
    let r = until_z(&mut b).await;
    assert!(r.errs.is_empty(), "B: {r:?}");
    assert_eq!(r.rows, [Some("7".to_string())]);
    b.send(&cat(&[bind("", "t1", &[], &[]), execute("", 0), sync()]))
        .await;
    let r = until_z(&mut b).await;
    assert!(r.errs.is_empty(), "B again: {r:?}");
    assert_eq!(r.rows, [Some("7".to_string())]);
}

/// F18: Execute with a row limit over several shards is refused (0A000); a fan-out Execute
/// followed by Flush is answered without waiting for Sync.
#[tokio::test]
async fn fanout_max_rows_refused_and_flush_answers() {
    let (p, direct) = setup("rg_fan_maxrows", "transaction", 4).await;
    for (s, d) in direct.iter().enumerate() {
        for j in 0..2 {
            d.batch_execute(&format!("insert into users values ({}, 'r')", key_on(s, j)))
                .await
                .unwrap();
        }
    }
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    c.send(&cat(&[
        parse("", "select id from users", &[]),
        bind("", "", &[], &[]),
        execute("", 1),
        sync(),
    ]))
    .await;
    let r = until_z(&mut c).await;
    assert_eq!(r.errs, ["0A000"], "fan-out Execute(max_rows=1): {r:?}");
    assert_eq!(r.count(b'D'), 0, "{r:?}");
    assert_eq!(r.status, 'I', "{r:?}");

    c.send(&cat(&[
        parse("", "select id from users", &[]),
        bind("", "", &[], &[]),
        execute("", 0),
        flush(),
    ]))
    .await;
    // Answered before any Sync: the rows and CommandComplete, or a refusal (0A000, the
    // documented answer for what the proxy cannot fan out). Never silence.
    let mut tags = String::new();
    let mut rows = 0;
    let mut refusal = None;
    loop {
        match recv(&mut c).await {
            Some((t, body)) => {
                tags.push(t as char);
                if t == b'E' {
                    refusal = Some(RawClient::sqlstate(&body));
                }
                rows += usize::from(t == b'D');
                if t == b'C' || t == b'E' {
                    break;
                }
            }
            None => panic!("fan-out Execute + Flush: no answer before Sync, got {tags:?}"),
        }
    }
    match refusal {
        None => assert_eq!(rows, 4, "fan-out Execute + Flush: {tags}"),
        Some(code) => {
            assert_eq!(code, "0A000", "fan-out Execute + Flush: {tags}");
            assert_eq!(rows, 0, "rows before the refusal: {tags}");
        }
    }
    c.send(&sync()).await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty() && r.status == 'I', "sync: {r:?}");

    // The session goes on: the same fan-out in one Execute up to Sync returns every row.
    c.send(&cat(&[
        parse("", "select id from users", &[]),
        bind("", "", &[], &[]),
        execute("", 0),
        sync(),
    ]))
    .await;
    let r = until_z(&mut c).await;
    assert!(
        r.errs.is_empty() && r.status == 'I',
        "fan-out Execute: {r:?}"
    );
    assert_eq!(r.rows.len(), 4, "{r:?}");
    assert_eq!(r.cmds, ["SELECT 4"], "{r:?}");
}

/// F19: the unnamed statement described in a transaction opened by the proxy-held BEGIN is still
/// there when the BEGIN is finally sent before its Bind.
#[tokio::test]
async fn unnamed_statement_survives_deferred_begin() {
    let (p, _direct) = setup("rg_unnamed_stale", "transaction", 1).await;
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    c.send(&query("begin")).await;
    let r = until_z(&mut c).await;
    assert_eq!(r.status, 'T', "begin: {r:?}");
    c.send(&cat(&[
        parse("", "select count(*) from items", &[]),
        describe_s(""),
        sync(),
    ]))
    .await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty(), "parse + describe: {r:?}");
    c.send(&cat(&[bind("", "", &[], &[]), execute("", 0), sync()]))
        .await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty(), "bind unnamed: {r:?}");
    assert_eq!(r.rows, [Some("0".to_string())], "{r:?}");
    assert_eq!(r.status, 'T', "{r:?}");
    c.send(&query("commit")).await;
    let r = until_z(&mut c).await;
    assert_eq!(r.status, 'I', "commit: {r:?}");
}

/// F20: SET, then a statement, then ROLLBACK, then SHOW on both shards: the rolled back SET
/// must not be replayed. `third` is the statement between SET and ROLLBACK; `refused`: the
/// proxy must refuse it (0A000), so the proxy itself fails the transaction.
async fn set_then_rollback(prefix: &str, third: &str, refused: bool) {
    let (p, direct) = setup(prefix, "transaction", 4).await;
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    let k1 = key_on(1, 0);
    c.send(&query("/* shardgate: shard=s1 */ show application_name"))
        .await;
    let before = until_z(&mut c).await;
    assert!(before.errs.is_empty(), "{before:?}");
    assert_eq!(before.rows.len(), 1, "{before:?}");
    for q in ["begin", "set application_name = 'rolled_back'"] {
        c.send(&query(q)).await;
        let r = until_z(&mut c).await;
        assert!(r.errs.is_empty() && r.status == 'T', "{q}: {r:?}");
    }
    let third = third.replace("{k1}", &k1.to_string());
    c.send(&query(&third)).await;
    let r = until_z(&mut c).await;
    if refused {
        assert_eq!(r.errs, ["0A000"], "{third}: {r:?}");
        assert_eq!(r.status, 'E', "{third}: {r:?}");
    } else {
        assert!(r.errs.is_empty() && r.status == 'T', "{third}: {r:?}");
    }
    c.send(&query("rollback")).await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty() && r.status == 'I', "rollback: {r:?}");
    for s in ["s0", "s1"] {
        c.send(&query(&format!(
            "/* shardgate: shard={s} */ show application_name"
        )))
        .await;
        let r = until_z(&mut c).await;
        assert!(r.errs.is_empty(), "{r:?}");
        assert_eq!(
            r.rows, before.rows,
            "application_name on {s} after ROLLBACK"
        );
    }
    assert_eq!(placement(&direct, k1).await, [0, 0], "rolled back insert");
}

/// F20, as the review found it: the proxy refuses a statement of the transaction and answers
/// the ROLLBACK itself; the SET rolled back with it is not applied afterwards.
#[tokio::test]
async fn set_rolled_back_after_proxy_refusal_is_not_applied() {
    set_then_rollback(
        "rg_abort_set",
        "update users set id = 1 where id = {k1}",
        true,
    )
    .await;
}

/// F20 with the review's exact statements under the current harness: with two-phase commit the
/// insert for the other shard is no longer refused, so the transaction spans both shards; its
/// ROLLBACK must still undo the SET.
#[tokio::test]
async fn set_rolled_back_with_two_shard_transaction_is_not_applied() {
    set_then_rollback(
        "rg_abort_set_2pc",
        "insert into users (id, name) values ({k1}, 'x')",
        false,
    )
    .await;
}

/// F21: a FunctionCall after BEGIN runs inside the transaction (same transaction id as the
/// statements around it; status 'T').
#[tokio::test]
async fn function_call_after_begin_runs_in_transaction() {
    let (p, _direct) = setup("rg_fastpath", "transaction", 4).await;
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    c.send(&query("begin")).await;
    let r = until_z(&mut c).await;
    assert_eq!(r.status, 'T', "begin: {r:?}");
    let mut b = Vec::new();
    b.extend_from_slice(&2943u32.to_be_bytes()); // txid_current()
    b.extend_from_slice(&0i16.to_be_bytes()); // argument formats
    b.extend_from_slice(&0i16.to_be_bytes()); // arguments
    b.extend_from_slice(&0i16.to_be_bytes()); // result format: text
    c.send(&frame(b'F', &b)).await;
    let mut tags = String::new();
    let mut fn_txid = None;
    let status = loop {
        let Some((t, body)) = recv(&mut c).await else {
            panic!("FunctionCall: no ReadyForQuery, got {tags:?}");
        };
        tags.push(t as char);
        match t {
            b'E' => panic!("FunctionCall failed: {}", RawClient::sqlstate(&body)),
            b'V' => {
                let len = i32::from_be_bytes(body[0..4].try_into().unwrap());
                assert!(len >= 0, "NULL from txid_current()");
                fn_txid = Some(String::from_utf8_lossy(&body[4..4 + len as usize]).into_owned());
            }
            b'Z' => break body[0] as char,
            _ => {}
        }
    };
    assert_eq!(status, 'T', "FunctionCall inside BEGIN: {tags}");
    let fn_txid = fn_txid.unwrap_or_else(|| panic!("no FunctionCallResponse: {tags}"));
    c.send(&query("select txid_current()")).await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty() && r.status == 'T', "{r:?}");
    assert_eq!(
        r.rows,
        [Some(fn_txid.clone())],
        "FunctionCall ran in another transaction"
    );
    c.send(&query("rollback")).await;
    let r = until_z(&mut c).await;
    assert_eq!(r.status, 'I', "rollback: {r:?}");
}

/// F22: a Query arriving after an unsynced extended batch ends that batch; the next batch is
/// routed by its own parameters, not to the previous batch's shard.
#[tokio::test]
async fn query_after_unsynced_batch_does_not_leave_stale_target() {
    let (p, direct) = setup("rg_stale_target", "transaction", 4).await;
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    let (k0, k1) = (key_on(0, 0), key_on(1, 0));
    let (a, b) = (k0.to_string(), k1.to_string());
    let ins = "insert into users (id, name) values ($1, 'q')";
    c.send(&cat(&[
        parse("", ins, &[]),
        bind("", "", &[], &[Some(a.as_bytes())]),
        execute("", 0),
        query("select 1"),
    ]))
    .await;
    let r = until_z(&mut c).await;
    assert_eq!(r.status, 'I', "batch + Query: {r:?}");
    if r.errs.is_empty() {
        // As on Postgres: the batch ran and committed with the Query.
        assert_eq!(placement(&direct, k0).await, [1, 0], "{r:?}");
    }
    c.send(&cat(&[
        parse("", ins, &[]),
        bind("", "", &[], &[Some(b.as_bytes())]),
        execute("", 0),
        sync(),
    ]))
    .await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty() && r.status == 'I', "next batch: {r:?}");
    assert_eq!(
        placement(&direct, k1).await,
        [0, 1],
        "key {k1} (owner s1) misplaced"
    );
}

/// F23: `ROLLBACK TRANSACTION TO SAVEPOINT` after a statement for another shard keeps the work
/// before the savepoint, which COMMIT then makes durable.
#[tokio::test]
async fn rollback_to_savepoint_after_other_shard_keeps_earlier_work() {
    let (p, direct) = setup("rg_rb_to", "transaction", 4).await;
    let mut c = RawClient::login(p.addr, "app", &p.db).await;
    let (k0, k1) = (key_on(0, 0), key_on(1, 0));
    let steps = [
        format!("insert into users (id, name) values ({k0}, 'keep')"),
        "savepoint a".to_string(),
        format!("insert into users (id, name) values ({k1}, 'other shard')"),
    ];
    c.send(&query("begin")).await;
    let r = until_z(&mut c).await;
    assert_eq!(r.status, 'T', "begin: {r:?}");
    for q in &steps {
        c.send(&query(q)).await;
        let r = until_z(&mut c).await;
        assert!(r.status == 'T' || r.status == 'E', "{q}: {r:?}");
    }
    c.send(&query("rollback transaction to savepoint a")).await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty(), "rollback to savepoint: {r:?}");
    assert_eq!(r.status, 'T', "{r:?}");
    c.send(&query("commit")).await;
    let r = until_z(&mut c).await;
    assert!(r.errs.is_empty(), "commit: {r:?}");
    assert_eq!(r.cmds, ["COMMIT"], "{r:?}");
    assert_eq!(r.status, 'I', "{r:?}");
    assert_eq!(
        placement(&direct, k0).await,
        [1, 0],
        "work before the savepoint"
    );
    assert_eq!(
        placement(&direct, k1).await,
        [0, 0],
        "work rolled back to the savepoint"
    );
}
