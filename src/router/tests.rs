//! Table-driven routing tests: `statement (+ params) -> expected route`, one case a line,
//! against the SPEC's example configuration (config/shardgate.yaml: shards s0, s1; users,
//! posts, comments on hash scheme by_user; events on range scheme by_event (below 1000000 ->
//! s0, rest -> s1); orgs on directory scheme by_org; countries a reference table).
//!
//! Expected forms: `single @K` (the one shard owning by_user key K, computed with the hash
//! functions, which `tests/hash_placement.rs` checks against Postgres), `single s1`,
//! `multi @K,@L`, `all`, `default`, `reference`, `refuse <words in the message>`,
//! `control <Kind>`, `lookup`. A `w` after the class means the route is a write.

use std::sync::Arc;

use super::*;
use crate::config;

fn router() -> Router {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/shardgate.yaml");
    Router::new(Arc::new(
        config::load(&path).expect("the SPEC example loads"),
    ))
}

fn owner(r: &Router, k: i64) -> String {
    let cfg = r.config();
    let b = hash::bucket_of(&KeyValue::Int(k), 1024) as usize;
    let crate::config::Scheme::Hash(h) = &cfg.schemes["by_user"] else {
        unreachable!()
    };
    cfg.shards[h.map[b]].name.clone()
}

/// Render a decision in the compact expected form.
fn render(r: &Router, d: &Decision) -> String {
    match d {
        Decision::Route(route) => {
            let names: Vec<&str> = route
                .shards
                .iter()
                .map(|&s| r.config().shards[s].name.as_str())
                .collect();
            format!(
                "{}{} {}",
                route.class.label(),
                if route.write { " w" } else { "" },
                names.join(",")
            )
        }
        Decision::Refuse(m) => format!("refuse {m}"),
        Decision::Lookup { .. } => "lookup".into(),
        Decision::Control(k) => format!("control {k:?}"),
    }
}

/// Expand `@K` to the owner of key K and compare loosely for refusals.
fn check(r: &Router, sql: &str, params: &[Option<&str>], want: &str) {
    let values: Vec<Option<&[u8]>> = params.iter().map(|p| p.map(str::as_bytes)).collect();
    let p = Params::new(&[], values);
    let got = render(r, &r.decide(&r.plan(sql), &p, &NoDirectory));
    if let Some(words) = want.strip_prefix("refuse ") {
        assert!(
            got.starts_with("refuse ")
                && words
                    .split(' ')
                    .all(|w| got.to_lowercase().contains(&w.to_lowercase())),
            "{sql}\n  want refuse containing {words:?}\n  got {got}"
        );
        return;
    }
    let mut expanded = String::new();
    for tok in want.split_inclusive([' ', ',']) {
        let (word, sep) = tok.split_at(tok.trim_end_matches([' ', ',']).len());
        match word.strip_prefix('@') {
            Some(k) => expanded.push_str(&owner(r, k.parse().expect("key"))),
            None => expanded.push_str(word),
        }
        expanded.push_str(sep);
    }
    // Multi-shard expectations list owners, which may coincide: compare as sets.
    let norm = |s: &str| {
        let (head, shards) = s.rsplit_once(' ').unwrap_or((s, ""));
        let mut v: Vec<&str> = shards.split(',').filter(|x| !x.is_empty()).collect();
        v.sort_unstable();
        v.dedup();
        let class = if v.len() == 1 {
            head.replace("multi", "single")
        } else {
            head.to_string()
        };
        format!("{class} {}", v.join(","))
    };
    assert_eq!(norm(&got), norm(&expanded), "{sql} {params:?}");
}

#[test]
fn routing_table() {
    let r = router();
    let all = "s0,s1";
    let cases: Vec<(&str, Vec<Option<&str>>, String)> = vec![
        // Point reads by key: literal, either side, casts, parentheses, aliases.
        ("SELECT * FROM users WHERE id = 42", vec![], "single @42".into()),
        ("select * from users where 42 = id", vec![], "single @42".into()),
        ("SELECT name FROM users WHERE id = 42 AND name = 'x'", vec![], "single @42".into()),
        ("SELECT * FROM users WHERE (id = 7)", vec![], "single @7".into()),
        ("SELECT * FROM users WHERE id = '42'", vec![], "single @42".into()),
        ("SELECT * FROM users WHERE id = 42::bigint", vec![], "single @42".into()),
        ("SELECT * FROM users WHERE id = -5", vec![], "single @-5".into()),
        ("SELECT * FROM users u WHERE u.id = 9", vec![], "single @9".into()),
        ("SELECT * FROM public.users WHERE users.id = 9", vec![], "single @9".into()),
        ("SELECT * FROM users WHERE name = 'a' AND (id = 3 AND true)", vec![], "single @3".into()),
        ("SELECT * FROM USERS WHERE ID = 11", vec![], "single @11".into()),
        // Parameters.
        ("SELECT * FROM users WHERE id = $1", vec![Some("42")], "single @42".into()),
        ("SELECT * FROM users WHERE id = $2 AND name = $1", vec![Some("x"), Some("8")], "single @8".into()),
        ("SELECT * FROM users WHERE id = $1", vec![], format!("all {all}")),
        ("SELECT * FROM users WHERE id = $1", vec![Some("nope")], format!("all {all}")),
        ("SELECT * FROM users WHERE id = $1::int8", vec![Some("5")], "single @5".into()),
        // IN, ANY, OR.
        ("SELECT * FROM users WHERE id IN (1, 2, 3)", vec![], "multi @1,@2,@3".into()),
        ("SELECT * FROM users WHERE id IN (42)", vec![], "single @42".into()),
        ("SELECT * FROM users WHERE id IN ($1, $2)", vec![Some("1"), Some("2")], "multi @1,@2".into()),
        ("SELECT * FROM users WHERE id = ANY($1)", vec![Some("{1,2,3,4}")], "multi @1,@2,@3,@4".into()),
        ("SELECT * FROM users WHERE id = ANY($1)", vec![Some("{42}")], "single @42".into()),
        ("SELECT * FROM users WHERE id = ANY(ARRAY[5, 6])", vec![], "multi @5,@6".into()),
        ("SELECT * FROM users WHERE id = 1 OR id = 2", vec![], "multi @1,@2".into()),
        ("SELECT * FROM users WHERE (id = 1 OR id = 2) AND name = 'x'", vec![], "multi @1,@2".into()),
        ("SELECT * FROM users WHERE id = 1 OR name = 'x'", vec![], format!("all {all}")),
        ("SELECT * FROM users WHERE id NOT IN (1)", vec![], format!("all {all}")),
        // No usable key: every shard; concatenation is fine, merges are flagged.
        ("SELECT * FROM users", vec![], format!("all {all}")),
        ("SELECT * FROM users WHERE id > 5", vec![], format!("all {all}")),
        ("SELECT * FROM users WHERE name = 'x'", vec![], format!("all {all}")),
        ("SELECT * FROM users WHERE id = id", vec![], format!("all {all}")),
        ("SELECT * FROM users WHERE id + 0 = 5", vec![], format!("all {all}")),
        // Co-located joins.
        ("SELECT * FROM users u JOIN posts p ON p.user_id = u.id WHERE u.id = 42", vec![], "single @42".into()),
        ("SELECT * FROM users u JOIN posts p ON p.user_id = u.id WHERE p.user_id = 42", vec![], "single @42".into()),
        ("SELECT * FROM users u, posts p WHERE p.user_id = u.id AND u.id = $1", vec![Some("3")], "single @3".into()),
        ("SELECT * FROM users u JOIN posts p ON p.user_id = u.id", vec![], format!("all {all}")),
        ("SELECT * FROM users u LEFT JOIN comments c ON c.user_id = u.id WHERE u.id = 1", vec![], "single @1".into()),
        ("SELECT * FROM posts p JOIN comments c ON c.user_id = p.user_id AND c.post_id = p.id WHERE p.user_id = 2", vec![], "single @2".into()),
        ("SELECT * FROM users u JOIN posts p ON p.id = u.id", vec![], "refuse join across shards".into()),
        ("SELECT * FROM users u JOIN posts p ON true WHERE u.id = 1", vec![], "refuse join across shards".into()),
        ("SELECT * FROM users u JOIN posts p ON true WHERE u.id = 1 AND p.user_id = 1", vec![], "single @1".into()),
        ("SELECT * FROM users a JOIN users b ON a.id = b.id WHERE a.id = 4", vec![], "single @4".into()),
        ("SELECT * FROM users u JOIN events e ON e.id = u.id", vec![], "refuse different schemes".into()),
        // Correlated and uncorrelated subqueries.
        ("SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM posts p WHERE p.user_id = u.id) AND u.id = 5", vec![], "single @5".into()),
        ("SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM posts p WHERE p.user_id = u.id)", vec![], format!("all {all}")),
        ("SELECT * FROM users WHERE id IN (SELECT user_id FROM posts)", vec![], "refuse across shards".into()),
        // A key fixed inside an IN subquery does not restrict the outer rows' shard.
        ("SELECT * FROM users WHERE id IN (SELECT user_id FROM posts WHERE user_id = 1) AND id = 1", vec![], "refuse across shards".into()),
        // Keys in places that do not filter the statement's rows never pick its shard.
        ("SELECT * FROM users u LEFT JOIN posts p ON p.user_id = u.id AND p.user_id = 5", vec![], format!("all {all}")),
        ("SELECT * FROM posts p RIGHT JOIN users u ON p.user_id = u.id AND u.id = 5", vec![], format!("all {all}")),
        ("SELECT u.*, (SELECT count(*) FROM posts p WHERE p.user_id = u.id AND u.id = 5) FROM users u", vec![], format!("all {all}")),
        ("SELECT * FROM users u WHERE NOT EXISTS (SELECT 1 FROM posts p WHERE p.user_id = u.id AND p.user_id = 5)", vec![], format!("all {all}")),
        ("SELECT * FROM users u WHERE u.name = 'x' OR EXISTS (SELECT 1 FROM posts p WHERE p.user_id = u.id AND p.user_id = 5)", vec![], format!("all {all}")),
        ("UPDATE users SET name = (SELECT title FROM posts p WHERE p.user_id = users.id AND p.user_id = 5)", vec![], format!("all w {all}")),
        ("SELECT * FROM users u JOIN posts p ON p.user_id = u.id AND p.user_id = 5", vec![], "single @5".into()),
        // CTEs: shadowing a configured table, or writing one from inside a WITH, is refused.
        ("WITH users AS (SELECT * FROM users WHERE id = 3) SELECT * FROM users", vec![], "refuse named like configured".into()),
        ("WITH x AS (INSERT INTO users (id, name) VALUES (5, 'a') RETURNING id) SELECT * FROM x", vec![], "refuse inside another statement".into()),
        ("WITH x AS (UPDATE users SET id = 999 WHERE id = 5 RETURNING *) SELECT * FROM x", vec![], "refuse shard key".into()),
        ("INSERT INTO users (id, name) VALUES (5, 'a') ON CONFLICT (id) DO UPDATE SET id = 999", vec![], "refuse shard key".into()),
        ("CREATE TABLE report AS SELECT * FROM users", vec![], "refuse CREATE TABLE ... AS".into()),
        ("CREATE TABLE report AS SELECT 1 AS x", vec![], "default s0".into()),
        ("UPDATE countries c SET name = 'x' FROM users u WHERE u.id = 5 AND u.country = c.code", vec![], "refuse reference table".into()),
        ("UPDATE users u SET country = c.code FROM countries c WHERE u.id = 5", vec![], "single w @5".into()),
        // A cast to another type makes the key unknown.
        ("SELECT * FROM users WHERE id = $1::text", vec![Some("5")], format!("all {all}")),
        ("SELECT * FROM users WHERE id = '5'::numeric", vec![], format!("all {all}")),
        ("SELECT nextval('counter')", vec![], "default s0".into()),
        ("ROLLBACK WORK TO a", vec![], "control Savepoint".into()),
        ("SELECT (SELECT count(*) FROM posts p WHERE p.user_id = u.id) FROM users u WHERE u.id = 6", vec![], "single @6".into()),
        ("SELECT * FROM (SELECT * FROM users WHERE id = 3) s", vec![], "single @3".into()),
        ("WITH x AS (SELECT * FROM users WHERE id = 8) SELECT * FROM x", vec![], "single @8".into()),
        ("WITH x AS (SELECT * FROM users) SELECT * FROM x", vec![], format!("all {all}")),
        // Reference tables.
        ("SELECT * FROM countries", vec![], "reference s0".into()),
        ("SELECT * FROM countries WHERE code = 'de'", vec![], "reference s0".into()),
        ("SELECT * FROM users u JOIN countries c ON c.code = u.country WHERE u.id = 1", vec![], "single @1".into()),
        ("SELECT * FROM users u JOIN countries c ON c.code = u.country", vec![], format!("all {all}")),
        ("INSERT INTO countries (code, name) VALUES ('xx', 'X')", vec![], format!("reference w {all}")),
        ("UPDATE countries SET name = 'y'", vec![], format!("reference w {all}")),
        ("DELETE FROM countries WHERE code = 'xx'", vec![], format!("reference w {all}")),
        // Unsharded tables and catalogs go to the default shard.
        ("SELECT * FROM settings", vec![], "default s0".into()),
        ("INSERT INTO audit (x) VALUES (1)", vec![], "default s0".into()),
        ("SELECT 1", vec![], "default s0".into()),
        ("SELECT now(), version()", vec![], "default s0".into()),
        ("SELECT * FROM generate_series(1, 3)", vec![], "default s0".into()),
        ("SELECT * FROM pg_catalog.pg_class", vec![], "default s0".into()),
        ("SELECT * FROM information_schema.tables", vec![], "default s0".into()),
        ("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace", vec![], "default s0".into()),
        ("SELECT * FROM users u JOIN settings s ON s.id = u.id WHERE u.id = 1", vec![], "refuse not configured".into()),
        // INSERT: row by row.
        ("INSERT INTO users (id, name) VALUES (42, 'a')", vec![], "single w @42".into()),
        ("INSERT INTO users (name, id) VALUES ('a', $1)", vec![Some("7")], "single w @7".into()),
        ("INSERT INTO users (id, name) VALUES ($1, $2)", vec![Some("9"), Some("n")], "single w @9".into()),
        ("INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')", vec![], "multi w @1,@2,@3".into()),
        ("INSERT INTO users (id) VALUES (42), (42)", vec![], "single w @42".into()),
        ("INSERT INTO users (id, name) VALUES (42, 'a') RETURNING *", vec![], "single w @42".into()),
        ("INSERT INTO users (id, name) VALUES (42, 'a') ON CONFLICT (id) DO UPDATE SET name = excluded.name", vec![], "single w @42".into()),
        ("INSERT INTO users VALUES (42, 'a')", vec![], "refuse must name its columns".into()),
        ("INSERT INTO users (name) VALUES ('a')", vec![], "refuse without a value for the shard key".into()),
        ("INSERT INTO users (id, name) VALUES (DEFAULT, 'a')", vec![], "refuse row 1".into()),
        ("INSERT INTO users (id, name) VALUES (1 + 1, 'a')", vec![], "refuse row 1".into()),
        ("INSERT INTO users (id, name) VALUES ($1, 'a')", vec![None], "refuse NULL".into()),
        ("INSERT INTO users (id, name) SELECT 1, 'a'", vec![], "refuse INSERT ... SELECT".into()),
        ("INSERT INTO users (id, name) SELECT id, name FROM users", vec![], "refuse INSERT".into()),
        ("INSERT INTO posts (id, user_id, title) VALUES (1, 42, 't')", vec![], "single w @42".into()),
        ("INSERT INTO audit (x) SELECT id FROM users", vec![], "refuse reading configured".into()),
        // UPDATE / DELETE.
        ("UPDATE users SET name = 'x' WHERE id = 42", vec![], "single w @42".into()),
        ("UPDATE users SET name = $1 WHERE id = $2", vec![Some("x"), Some("3")], "single w @3".into()),
        ("UPDATE users SET name = 'x'", vec![], format!("all w {all}")),
        ("UPDATE users SET id = 5 WHERE id = 4", vec![], "refuse shard key".into()),
        ("UPDATE users SET (name, id) = ('a', 1) WHERE id = 1", vec![], "refuse shard key".into()),
        ("DELETE FROM users WHERE id = 42", vec![], "single w @42".into()),
        ("DELETE FROM users WHERE id IN (1, 2)", vec![], "multi w @1,@2".into()),
        ("DELETE FROM users", vec![], format!("all w {all}")),
        ("DELETE FROM posts p USING users u WHERE p.user_id = u.id AND u.id = 3", vec![], "single w @3".into()),
        ("WITH d AS (DELETE FROM users WHERE id = 1 RETURNING *) SELECT * FROM d", vec![], "single w @1".into()),
        // Range scheme.
        ("SELECT * FROM events WHERE id = 5", vec![], "single s0".into()),
        ("SELECT * FROM events WHERE id = 999999", vec![], "single s0".into()),
        ("SELECT * FROM events WHERE id = 1000000", vec![], "single s1".into()),
        ("SELECT * FROM events WHERE id = $1", vec![Some("2000000")], "single s1".into()),
        ("SELECT * FROM events WHERE id IN (1, 5000000)", vec![], format!("multi {all}")),
        ("SELECT * FROM events", vec![], format!("all {all}")),
        ("INSERT INTO events (id) VALUES (10)", vec![], "single w s0".into()),
        // Directory scheme: keys go to the catalog first.
        ("SELECT * FROM orgs WHERE org_id = 'acme'", vec![], "lookup".into()),
        ("SELECT * FROM orgs", vec![], format!("all {all}")),
        // Merges a fan-out would need are reported with the route.
        ("SELECT * FROM users ORDER BY id", vec![], format!("all {all}")),
        ("SELECT count(*) FROM users WHERE id = 1", vec![], "single @1".into()),
        // DDL on configured tables runs everywhere; on others, on the default shard.
        ("CREATE TABLE users (id bigint primary key)", vec![], format!("all w {all}")),
        ("CREATE INDEX ON posts (title)", vec![], format!("all w {all}")),
        ("ALTER TABLE users ADD COLUMN x int", vec![], format!("all w {all}")),
        ("DROP TABLE users", vec![], format!("all w {all}")),
        ("DROP TABLE IF EXISTS users, posts", vec![], format!("all w {all}")),
        ("DROP TABLE users, audit", vec![], "refuse mixing".into()),
        ("TRUNCATE users", vec![], format!("all w {all}")),
        ("TRUNCATE countries", vec![], format!("all w {all}")),
        ("CREATE TABLE audit (x int)", vec![], "default s0".into()),
        ("DROP INDEX some_index", vec![], format!("all w {all}")),
        ("CREATE VIEW v AS SELECT * FROM users", vec![], format!("all w {all}")),
        ("CREATE VIEW v2 AS SELECT 1", vec![], "default s0".into()),
        // Maintenance everywhere, not in a transaction.
        ("VACUUM users", vec![], format!("all {all}")),
        ("ANALYZE", vec![], format!("all {all}")),
        ("VACUUM (VERBOSE) ANALYZE", vec![], format!("all {all}")),
        ("vacuum analyze pgbench_branches", vec![], "default s0".into()),
        ("VACUUM FULL users", vec![], format!("all {all}")),
        // Transaction control and session commands belong to the session.
        ("BEGIN", vec![], "control Begin".into()),
        ("START TRANSACTION ISOLATION LEVEL REPEATABLE READ", vec![], "control Begin".into()),
        ("COMMIT", vec![], "control Commit".into()),
        ("END", vec![], "control Commit".into()),
        ("ROLLBACK", vec![], "control Rollback".into()),
        ("SAVEPOINT a", vec![], "control Savepoint".into()),
        ("ROLLBACK TO SAVEPOINT a", vec![], "control Savepoint".into()),
        ("RELEASE a", vec![], "control Savepoint".into()),
        ("PREPARE TRANSACTION 'x'", vec![], "control ClientTwoPhase".into()),
        ("SET search_path TO public", vec![], "control Session".into()),
        ("SHOW work_mem", vec![], "control Session".into()),
        ("RESET ALL", vec![], "control Session".into()),
        ("DISCARD ALL", vec![], "control Session".into()),
        ("LISTEN x", vec![], "control Session".into()),
        ("FETCH 10 FROM c", vec![], "control Cursor".into()),
        // Hints override the router.
        ("/* shardgate: shard=s1 */ SELECT * FROM users", vec![], "single s1".into()),
        ("/* shardgate: shard=s9 */ SELECT 1", vec![], "refuse unknown shard".into()),
        ("/* shardgate: key=42 table=users */ DELETE FROM users WHERE name = 'x'", vec![], "single @42".into()),
        ("/* shardgate: key=x table=users */ SELECT 1", vec![], "refuse not a valid key".into()),
        ("/* shardgate: key=1 table=countries */ SELECT 1", vec![], "refuse not a sharded table".into()),
        // Statements sqlparser cannot read.
        ("DO $$ BEGIN PERFORM 1; END $$", vec![], "default s0".into()),
        ("DO $$ BEGIN DELETE FROM users; END $$", vec![], "refuse cannot tell users".into()),
        ("SELECT * FROM users FOR NO KEY UPDATE", vec![], "refuse cannot parse users".into()),
        ("CREATE TABLE t (LIKE audit INCLUDING ALL)", vec![], "default s0".into()),
        // COPY.
        ("COPY users FROM STDIN", vec![], "refuse COPY into sharded must name its columns".into()),
        ("COPY users (id, name) FROM STDIN", vec![], format!("all w {all}")),
        ("COPY users (name) FROM STDIN", vec![], "refuse without the shard key".into()),
        ("COPY users (id) FROM '/tmp/x'", vec![], "refuse server-side file".into()),
        ("COPY users TO STDOUT", vec![], format!("all {all}")),
        ("COPY users TO STDOUT WITH (FORMAT csv, HEADER)", vec![], "refuse HEADER".into()),
        ("COPY countries TO STDOUT", vec![], "reference s0".into()),
        ("COPY countries FROM STDIN", vec![], format!("reference w {all}")),
        ("COPY audit FROM STDIN", vec![], "default s0".into()),
        ("COPY (SELECT * FROM users WHERE id = 1) TO STDOUT", vec![], "single @1".into()),
        ("COPY (SELECT * FROM users) TO STDOUT", vec![], format!("all {all}")),
        // Set operations over unkeyed branches would need a merge of independent fan-outs.
        ("SELECT id FROM users UNION SELECT user_id FROM posts", vec![], "refuse across shards".into()),
        ("SELECT id FROM users WHERE id = 1 UNION ALL SELECT user_id FROM posts WHERE user_id = 1", vec![], "single @1".into()),
        // EXPLAIN follows its statement.
        ("EXPLAIN SELECT * FROM users WHERE id = 1", vec![], "single @1".into()),
        ("EXPLAIN SELECT 1", vec![], "default s0".into()),
        ("EXPLAIN SELECT * FROM users", vec![], "refuse EXPLAIN several shards".into()),
    ];
    assert!(cases.len() >= 150, "{} cases", cases.len());
    for (sql, params, want) in &cases {
        check(&r, sql, params, want);
    }
}

#[test]
fn merge_needs_are_named() {
    let r = router();
    let need = |sql: &str| match r.decide(&r.plan(sql), &Params::default(), &NoDirectory) {
        Decision::Route(route) => route.merge,
        other => panic!("{sql}: {other:?}"),
    };
    let cases = [
        ("SELECT * FROM users ORDER BY id", Some("ORDER BY")),
        ("SELECT * FROM users LIMIT 5", Some("LIMIT/OFFSET")),
        ("SELECT * FROM users OFFSET 5", Some("LIMIT/OFFSET")),
        ("SELECT count(*) FROM users", Some("aggregate count()")),
        ("SELECT sum(id) + 1 FROM users", Some("aggregate sum()")),
        (
            "SELECT name, count(*) FROM users GROUP BY name",
            Some("GROUP BY"),
        ),
        ("SELECT DISTINCT name FROM users", Some("DISTINCT")),
        (
            "SELECT DISTINCT ON (name) name FROM users",
            Some("DISTINCT"),
        ),
        (
            "SELECT row_number() OVER () FROM users",
            Some("window function"),
        ),
        ("SELECT id, name FROM users WHERE name = 'x'", None),
        ("SELECT lower(name) FROM users", None),
    ];
    for (sql, want) in cases {
        assert_eq!(need(sql).as_deref(), want, "{sql}");
    }
}

#[test]
fn binary_parameters_route_like_text() {
    let r = router();
    let plan = r.plan("SELECT * FROM users WHERE id = $1");
    let bin = 42i64.to_be_bytes();
    let p = Params::new(&[1], vec![Some(&bin[..])]);
    let Decision::Route(route) = r.decide(&plan, &p, &NoDirectory) else {
        panic!("route expected")
    };
    assert_eq!(r.config().shards[route.shards[0]].name, owner(&r, 42));
    // int4 width too.
    let bin4 = 42i32.to_be_bytes();
    let p = Params::new(&[1], vec![Some(&bin4[..])]);
    let Decision::Route(route4) = r.decide(&plan, &p, &NoDirectory) else {
        panic!("route expected")
    };
    assert_eq!(route4.shards, route.shards);
}

#[test]
fn explain_text_names_shards_and_reasons() {
    let r = router();
    let text = r.explain("SELECT * FROM users WHERE id = 42", &Params::default());
    assert!(
        text.contains(&format!("shards: {}", owner(&r, 42))),
        "{text}"
    );
    assert!(text.contains("bucket"), "{text}");
    let text = r.explain("SELECT count(*) FROM users", &Params::default());
    assert!(text.contains("needs aggregate count() merged"), "{text}");
}

/// Text, uuid and md5-function schemes, three shards.
fn typed_router() -> Router {
    let yaml = "shards:
  - { name: s0, url: 'postgres://u:p@127.0.0.1:1/d' }
  - { name: s1, url: 'postgres://u:p@127.0.0.1:2/d' }
  - { name: s2, url: 'postgres://u:p@127.0.0.1:3/d' }
schemes:
  by_acct: { type: hash, buckets: 64 }
  by_dev: { type: hash, buckets: 16, shards: [s1, s2] }
  by_md5: { type: hash, function: md5 }
  by_name:
    type: range
    ranges:
      - { below: 'h', shard: s0 }
      - { below: 'p', shard: s1 }
      - { shard: s2 }
tables:
  accounts: { scheme: by_acct, key: acct, key_type: text }
  devices: { scheme: by_dev, key: dev_id, key_type: uuid }
  legacy: { scheme: by_md5, key: id }
  people: { scheme: by_name, key: name, key_type: text }
  app.audit: { scheme: by_acct, key: acct, key_type: text }
";
    Router::new(Arc::new(
        config::parse(yaml, std::path::Path::new("typed.yaml")).expect("typed config"),
    ))
}

fn shard_of(r: &Router, scheme: &str, k: &KeyValue) -> String {
    let cfg = r.config();
    let id = match &cfg.schemes[scheme] {
        crate::config::Scheme::Hash(h) if h.function == crate::config::HashFunction::Md5 => {
            h.shards[hash::md5_index(k, h.shards.len())]
        }
        crate::config::Scheme::Hash(h) => h.map[hash::bucket_of(k, h.buckets) as usize],
        _ => unreachable!(),
    };
    cfg.shards[id].name.clone()
}

#[test]
fn typed_routing_table() {
    let r = typed_router();
    let t = |s: &str| KeyValue::Text(s.into());
    let u = |s: &str| KeyValue::Uuid(keys::parse_uuid(s).expect("uuid"));
    let uid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    let one = |scheme: &str, k: KeyValue| format!("single {}", shard_of(&r, scheme, &k));
    let cases: Vec<(&str, Vec<Option<&str>>, String)> = vec![
        (
            "select * from accounts where acct = 'alice'",
            vec![],
            one("by_acct", t("alice")),
        ),
        (
            "select * from accounts where acct = E'bob'",
            vec![],
            one("by_acct", t("bob")),
        ),
        (
            "select * from accounts where acct = 'café'",
            vec![],
            one("by_acct", t("café")),
        ),
        (
            "select * from accounts where acct = ''",
            vec![],
            one("by_acct", t("")),
        ),
        (
            "select * from accounts where acct = 'it''s'",
            vec![],
            one("by_acct", t("it's")),
        ),
        (
            "select * from accounts where acct = $1",
            vec![Some("zed")],
            one("by_acct", t("zed")),
        ),
        (
            "select * from accounts where acct = $1::text",
            vec![Some("zed")],
            one("by_acct", t("zed")),
        ),
        (
            "select * from accounts where acct = 'x'::varchar",
            vec![],
            one("by_acct", t("x")),
        ),
        (
            "select * from accounts where acct in ('a')",
            vec![],
            one("by_acct", t("a")),
        ),
        (
            "select * from accounts where acct = any($1)",
            vec![Some("{q}")],
            one("by_acct", t("q")),
        ),
        (
            "select * from accounts where acct = 42",
            vec![],
            "all s0,s1,s2".into(),
        ),
        (
            "select * from accounts where acct like 'a%'",
            vec![],
            "all s0,s1,s2".into(),
        ),
        (
            "select * from accounts where lower(acct) = 'a'",
            vec![],
            "all s0,s1,s2".into(),
        ),
        (
            "insert into accounts (acct, v) values ('alice', 1)",
            vec![],
            format!("single w {}", shard_of(&r, "by_acct", &t("alice"))),
        ),
        (
            "select * from app.audit where acct = 'alice'",
            vec![],
            one("by_acct", t("alice")),
        ),
        (
            "select * from audit where acct = 'alice'",
            vec![],
            "default s0".into(),
        ),
        (
            "select * from public.accounts a where a.acct = 'alice'",
            vec![],
            one("by_acct", t("alice")),
        ),
        (
            "select * from app.audit x join accounts a on a.acct = x.acct where x.acct = 'k'",
            vec![],
            one("by_acct", t("k")),
        ),
        // uuid keys: literal, cast, typed string, braces and upper case, params.
        (
            &*Box::leak(format!("select * from devices where dev_id = '{uid}'").into_boxed_str()),
            vec![],
            one("by_dev", u(uid)),
        ),
        (
            &*Box::leak(
                format!("select * from devices where dev_id = '{uid}'::uuid").into_boxed_str(),
            ),
            vec![],
            one("by_dev", u(uid)),
        ),
        (
            &*Box::leak(
                format!("select * from devices where dev_id = uuid '{uid}'").into_boxed_str(),
            ),
            vec![],
            one("by_dev", u(uid)),
        ),
        (
            "select * from devices where dev_id = '{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}'",
            vec![],
            one("by_dev", u(uid)),
        ),
        (
            "select * from devices where dev_id = 'A0EEBC999C0B4EF8BB6D6BB9BD380A11'",
            vec![],
            one("by_dev", u(uid)),
        ),
        (
            "select * from devices where dev_id = $1",
            vec![Some(uid)],
            one("by_dev", u(uid)),
        ),
        (
            "select * from devices where dev_id = 'not-a-uuid'",
            vec![],
            "all s1,s2".into(),
        ),
        ("select * from devices", vec![], "all s1,s2".into()),
        (
            "delete from devices where dev_id = $1",
            vec![Some(uid)],
            format!("single w {}", shard_of(&r, "by_dev", &u(uid))),
        ),
        // md5 placement.
        (
            "select * from legacy where id = 42",
            vec![],
            one("by_md5", KeyValue::Int(42)),
        ),
        (
            "select * from legacy where id = $1",
            vec![Some("7")],
            one("by_md5", KeyValue::Int(7)),
        ),
        (
            "select * from legacy where id = -3",
            vec![],
            one("by_md5", KeyValue::Int(-3)),
        ),
        (
            "update legacy set v = 1 where id = 9",
            vec![],
            format!("single w {}", shard_of(&r, "by_md5", &KeyValue::Int(9))),
        ),
        ("select * from legacy", vec![], "all s0,s1,s2".into()),
        // Text ranges, compared bytewise.
        (
            "select * from people where name = 'alice'",
            vec![],
            "single s0".into(),
        ),
        (
            "select * from people where name = 'henry'",
            vec![],
            "single s1".into(),
        ),
        (
            "select * from people where name = 'h'",
            vec![],
            "single s1".into(),
        ),
        (
            "select * from people where name = 'Zed'",
            vec![],
            "single s0".into(),
        ),
        (
            "select * from people where name = 'zed'",
            vec![],
            "single s2".into(),
        ),
        (
            "select * from people where name = $1",
            vec![Some("paul")],
            "single s2".into(),
        ),
        (
            "select * from people where name in ('a', 'z')",
            vec![],
            "multi s0,s2".into(),
        ),
        // Tables of different schemes cannot be joined.
        (
            "select * from accounts a join legacy l on l.id = 1 where a.acct = 'x'",
            vec![],
            "refuse different schemes".into(),
        ),
        (
            "select * from people p join accounts a on a.acct = p.name",
            vec![],
            "refuse different schemes".into(),
        ),
        // Unqualified key columns are only trusted with one table in scope.
        (
            "select * from accounts, people where acct = 'a'",
            vec![],
            "refuse different schemes".into(),
        ),
        (
            "select * from accounts a, accounts b where acct = 'a'",
            vec![],
            "refuse across shards".into(),
        ),
        (
            "select * from accounts a, accounts b where a.acct = b.acct and a.acct = 'x'",
            vec![],
            one("by_acct", t("x")),
        ),
        // Hints with typed keys.
        (
            "/* shardgate: key=alice table=accounts */ select 1",
            vec![],
            one("by_acct", t("alice")),
        ),
        (
            &*Box::leak(
                format!("/* shardgate: key={uid} table=devices */ select 1").into_boxed_str(),
            ),
            vec![],
            one("by_dev", u(uid)),
        ),
        (
            "/* shardgate: shard=s2 */ delete from accounts",
            vec![],
            "single s2".into(),
        ),
        // Parameters that are NULL or missing.
        (
            "select * from accounts where acct = $1",
            vec![None],
            "single s0".into(),
        ),
        (
            "insert into accounts (acct) values ($1)",
            vec![None],
            "refuse NULL".into(),
        ),
        (
            "select * from accounts where acct = $2",
            vec![Some("x")],
            "all s0,s1,s2".into(),
        ),
    ];
    for (sql, params, want) in &cases {
        check(&r, sql, params, want);
    }
}

/// The literal-normalised plan decides exactly as the literal text does whenever it is used
/// (one shard by key), and is not used otherwise.
#[test]
fn normalized_plans_route_as_their_literal_texts() {
    let r = router();
    let cases = [
        ("select * from users where id = 42", true),
        ("SELECT name FROM users WHERE id=7;", true),
        ("update users set name = 'x' where id = 1000001", true),
        ("delete from posts where user_id = 3 and id = 9", true),
        ("insert into users (id, name) values (5, 'a')", true),
        (
            "select * from users u join posts p on p.user_id = u.id where u.id = 12",
            true,
        ),
        ("select * from events where id = 999999", true),
        ("select * from events where id = 1000000", true),
        ("select * from users where id in (1, 1)", true),
        (
            "select * from users where id in (1, 2, 3, 4, 5, 6, 7, 8)",
            false,
        ),
        (
            "insert into users (id, name) values (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')",
            false,
        ),
        (
            "select * from users where id > 5 order by id limit 10",
            false,
        ),
        ("select * from countries where code = 'de' limit 1", false),
        ("select * from orgs where org_id = '42'", false),
        ("select * from users where id = -5", false),
        ("select 1", false),
        ("select * from unknown_table where id = 1", false),
    ];
    for (sql, used) in cases {
        let original = r.decide(&r.plan(sql), &Params::default(), &NoDirectory);
        match r.plan_normalized(sql, &NoDirectory) {
            Some((plan, lits)) => {
                assert!(used, "{sql}: normalised plan used");
                let values = lits
                    .iter()
                    .map(|l| Some(&sql.as_bytes()[l.clone()]))
                    .collect();
                let d = r.decide(&plan, &Params::new(&[], values), &NoDirectory);
                let (Decision::Route(a), Decision::Route(b)) = (&original, &d) else {
                    panic!("{sql}: {original:?} vs {d:?}");
                };
                assert_eq!(
                    (
                        &a.shards,
                        a.class,
                        a.write,
                        a.transactional,
                        a.flexible,
                        &a.row_shards,
                        &a.merge
                    ),
                    (
                        &b.shards,
                        b.class,
                        b.write,
                        b.transactional,
                        b.flexible,
                        &b.row_shards,
                        &b.merge
                    ),
                    "{sql}"
                );
            }
            None => assert!(!used, "{sql}: normalised plan not used"),
        }
    }
}
