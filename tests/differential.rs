//! Differential test of cross-shard reads: random SELECTs over a fixed schema run through the
//! proxy over three shards and directly against one Postgres database holding the union of
//! the rows; the answers must be identical (in order where the query orders totally, as
//! multisets otherwise). A refusal must be 0A000; the test reports how many queries were
//! refused and for which construct.
//!
//! `SHARDGATE_DIFF_QUERIES=5000 cargo test --test differential -- --nocapture` runs more.

mod common;

use std::collections::BTreeMap;

use common::proxy::{start_proxy_on, ProxyOpts};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::SimpleQueryMessage;

const ROWS: i64 = 600;

const SCHEMA: &str = "create table t (id bigint primary key, g int, x int, y float8, n numeric(12,3), s text, b bool, d date, ts timestamp)";

fn literal_row(rng: &mut StdRng, id: i64) -> String {
    let words = [
        "apple",
        "Banana",
        "cherry",
        "date",
        "éclair",
        "fig",
        "",
        "grape",
        "apple pie",
    ];
    let g = rng.random_range(0..8);
    let values = [
        rng.random_range(-50..50).to_string(),
        format!("{:.3}", rng.random_range(-100.0..100.0f64)),
        format!(
            "{}.{:03}",
            rng.random_range(-999..999),
            rng.random_range(0..1000)
        ),
        format!("'{}'", words[rng.random_range(0..words.len())]),
        (if rng.random_bool(0.5) {
            "true"
        } else {
            "false"
        })
        .to_string(),
        format!(
            "'2024-{:02}-{:02}'",
            rng.random_range(1..13),
            rng.random_range(1..29)
        ),
        format!(
            "'2023-{:02}-{:02} {:02}:{:02}:{:02}'",
            rng.random_range(1..13),
            rng.random_range(1..29),
            rng.random_range(0..24),
            rng.random_range(0..60),
            rng.random_range(0..60)
        ),
    ];
    let cols: Vec<String> = values
        .into_iter()
        .map(|v| {
            if rng.random_bool(0.12) {
                "NULL".to_string()
            } else {
                v
            }
        })
        .collect();
    format!("({id}, {g}, {})", cols.join(", "))
}

/// A random query and whether its ORDER BY is total (so rows compare in order).
fn query(rng: &mut StdRng) -> (String, bool) {
    let filters = [
        "",
        "where x > 0",
        "where x is null",
        "where s like 'a%'",
        "where b",
        "where y < 10",
        "where g in (1, 3, 5)",
        "where n is not null and x < 20",
        "where d >= '2024-06-01'",
        "where s is not null and s <> ''",
    ];
    let f = filters[rng.random_range(0..filters.len())];
    let cols = ["x", "y", "n", "s", "b", "d", "ts", "g"];
    let col = |rng: &mut StdRng| cols[rng.random_range(0..cols.len())];
    let dir = |rng: &mut StdRng| match rng.random_range(0..4) {
        0 => "",
        1 => " desc",
        2 => " nulls first",
        _ => " desc nulls last",
    };
    let limit = |rng: &mut StdRng| match rng.random_range(0..4) {
        0 => String::new(),
        1 => format!(" limit {}", rng.random_range(0..30)),
        2 => format!(
            " limit {} offset {}",
            rng.random_range(1..20),
            rng.random_range(0..40)
        ),
        _ => format!(" offset {}", rng.random_range(0..50)),
    };
    match rng.random_range(0..9) {
        // Plain rows, ordered totally by a column then the key.
        0 | 1 => {
            let (a, b) = (col(rng), col(rng));
            let (da, db) = (dir(rng), dir(rng));
            (
                format!(
                    "select id, {a}, {b} from t {f} order by {a}{da}, {b}{db}, id{} {}",
                    dir(rng)
                        .replace(" nulls first", "")
                        .replace(" nulls last", ""),
                    limit(rng)
                ),
                true,
            )
        }
        // Ordered by a column not in the select list.
        2 => {
            let a = col(rng);
            (
                format!(
                    "select id, s from t {f} order by {a}{}, id{}",
                    dir(rng),
                    limit(rng)
                ),
                true,
            )
        }
        // Aggregates over everything (one row).
        3 => {
            let aggs = [
                "count(*)",
                "count(x)",
                "sum(x)",
                "min(y)",
                "max(s)",
                "avg(x)",
                "avg(n)",
                "sum(n)",
                "bool_and(b)",
                "bool_or(b)",
                "min(d)",
                "max(ts)",
                "avg(y)",
                "sum(y)",
            ];
            let pick: Vec<&str> = (0..rng.random_range(1..5))
                .map(|_| aggs[rng.random_range(0..aggs.len())])
                .collect();
            (format!("select {} from t {f}", pick.join(", ")), true)
        }
        // GROUP BY a key, HAVING, ordered by the group key.
        4 | 5 => {
            let aggs = [
                "count(*)",
                "sum(x)",
                "avg(x)",
                "min(s)",
                "max(n)",
                "bool_or(b)",
                "count(y)",
                "avg(n)",
            ];
            let pick: Vec<&str> = (0..rng.random_range(1..4))
                .map(|_| aggs[rng.random_range(0..aggs.len())])
                .collect();
            let having = match rng.random_range(0..4) {
                0 => " having count(*) > 70".to_string(),
                1 => " having sum(x) < 0".to_string(),
                2 => " having max(n) is not null and count(*) >= 60".to_string(),
                _ => String::new(),
            };
            (
                format!(
                    "select g, {} from t {f} group by g{having} order by g{}{}",
                    pick.join(", "),
                    dir(rng)
                        .replace(" nulls first", "")
                        .replace(" nulls last", ""),
                    limit(rng)
                ),
                true,
            )
        }
        // DISTINCT, ordered by what is selected.
        6 => {
            let a = ["g", "s", "b", "x"][rng.random_range(0..4)];
            (
                format!("select distinct {a} from t {f} order by {a}{}", dir(rng)),
                true,
            )
        }
        // Unordered plain rows: compared as multisets.
        7 => (format!("select id, {} from t {f}", col(rng)), false),
        // Shapes that are refused today, to keep the refusal count honest.
        _ => match rng.random_range(0..3) {
            0 => ("select count(distinct g) from t".to_string(), true),
            1 => (
                "select id, row_number() over (order by id) from t order by id".to_string(),
                true,
            ),
            _ => (
                "select distinct on (g) g, id from t order by g, id".to_string(),
                true,
            ),
        },
    }
}

type Rows = Vec<Vec<Option<String>>>;

/// Equal, except that float8/float4 columns may differ in their last digits: adding
/// per-shard partial sums rounds differently from one scan, exactly as Postgres' own parallel
/// aggregation does. Integers, numerics, text and every other value must match exactly.
fn same_rows(want: &Rows, got: &Rows, float_cols: &[bool]) -> bool {
    want.len() == got.len()
        && want.iter().zip(got).all(|(w, g)| {
            w.len() == g.len()
                && w.iter().zip(g).enumerate().all(|(i, (a, b))| match (a, b) {
                    (Some(a), Some(b)) if a != b && float_cols.get(i) == Some(&true) => {
                        match (a.parse::<f64>(), b.parse::<f64>()) {
                            (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                            _ => false,
                        }
                    }
                    (a, b) => a == b,
                })
        })
}

async fn run(c: &tokio_postgres::Client, sql: &str) -> Result<Rows, tokio_postgres::Error> {
    let msgs = c.simple_query(sql).await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect())
}

/// One reference database and a proxy over three shards, with the same rows.
async fn setup(
    prefix: &str,
) -> (
    tokio_postgres::Client,
    tokio_postgres::Client,
    common::proxy::TestProxy,
    StdRng,
) {
    let db = common::fresh_db(prefix);
    let servers = &common::cluster().servers;
    // The reference: one database holding every row.
    let refdb = common::fresh_db(&format!("{prefix}ref"));
    let (reference, conn) =
        tokio_postgres::connect(&servers[0].url("app", "app", &refdb), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    reference.batch_execute(SCHEMA).await.unwrap();
    for s in servers {
        let (c, conn) = tokio_postgres::connect(&s.url("app", "app", &db), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.batch_execute(SCHEMA).await.unwrap();
    }
    let p = start_proxy_on(
        &db,
        ProxyOpts {
            shards: 3,
            extra: "schemes:\n  by_id: { type: hash, buckets: 32 }\ntables:\n  t: { scheme: by_id, key: id }\n".into(),
            ..Default::default()
        },
    )
    .await;
    let c = p.connect().await;
    let mut rng = StdRng::seed_from_u64(20261129);
    let rows: Vec<String> = (1..=ROWS).map(|id| literal_row(&mut rng, id)).collect();
    for chunk in rows.chunks(50) {
        let sql = format!("insert into t values {}", chunk.join(", "));
        reference.batch_execute(&sql).await.unwrap();
        // Through the proxy: split by shard, committed atomically.
        c.batch_execute(&sql.replacen(
            "insert into t values",
            "insert into t (id, g, x, y, n, s, b, d, ts) values",
            1,
        ))
        .await
        .unwrap();
    }
    (reference, c, p, rng)
}

#[tokio::test]
async fn proxy_answers_like_one_postgres() {
    let queries: usize = std::env::var("SHARDGATE_DIFF_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let (reference, c, _p, mut rng) = setup("differential").await;
    let (mut ok, mut mismatches) = (0, Vec::new());
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..queries {
        let (sql, ordered) = query(&mut rng);
        let float_cols: Vec<bool> = match reference.prepare(&sql).await {
            Ok(st) => st
                .columns()
                .iter()
                .map(|c| {
                    matches!(
                        *c.type_(),
                        tokio_postgres::types::Type::FLOAT8 | tokio_postgres::types::Type::FLOAT4
                    )
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let want = run(&reference, &sql).await;
        let got = run(&c, &sql).await;
        match (want, got) {
            (Ok(mut w), Ok(mut g)) => {
                if !ordered {
                    w.sort();
                    g.sort();
                }
                if same_rows(&w, &g, &float_cols) {
                    ok += 1;
                } else {
                    mismatches.push(format!(
                        "{sql}\n  want {} rows {:?}\n  got  {} rows {:?}",
                        w.len(),
                        w.iter().take(3).collect::<Vec<_>>(),
                        g.len(),
                        g.iter().take(3).collect::<Vec<_>>()
                    ));
                }
            }
            (_, Err(e)) if e.code().map(|c| c.code()) == Some("0A000") => {
                let msg = e
                    .as_db_error()
                    .map(|d| d.message().to_owned())
                    .unwrap_or_default();
                let construct = msg
                    .split(" with ")
                    .nth(1)
                    .or_else(|| msg.split(" needs ").nth(1))
                    .unwrap_or(&msg);
                *refused
                    .entry(construct.chars().take(60).collect())
                    .or_default() += 1;
            }
            (Err(we), Err(ge)) if we.code() == ge.code() => ok += 1,
            (w, g) => mismatches.push(format!(
                "{sql}\n  want {:?}\n  got  {:?}",
                w.map(|r| r.len()),
                g.map(|r| r.len())
            )),
        }
    }
    let refusals: usize = refused.values().sum();
    eprintln!(
        "differential: {queries} queries, {ok} identical, {} mismatches, {refusals} refused ({:.1}%): {refused:?}",
        mismatches.len(),
        100.0 * refusals as f64 / queries as f64
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches, e.g.:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(ok >= queries * 3 / 4, "too few queries answered: {ok}");
}

/// A row's values as text, for the types tokio-postgres reads without extra features; None
/// when a column has another type (the query is then skipped).
fn typed(row: &tokio_postgres::Row) -> Option<Vec<Option<String>>> {
    use tokio_postgres::types::Type;
    (0..row.len())
        .map(|i| {
            let t = row.columns()[i].type_().clone();
            Some(match t {
                Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
                Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
                Type::INT2 => row.get::<_, Option<i16>>(i).map(|v| v.to_string()),
                Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(|v| format!("{v:.9e}")),
                Type::TEXT => row.get::<_, Option<String>>(i),
                Type::BOOL => row.get::<_, Option<bool>>(i).map(|v| v.to_string()),
                _ => return None,
            })
        })
        .collect()
}

/// The same comparison through the extended protocol (Parse/Bind/Describe/Execute, binary
/// results), as application drivers send it.
#[tokio::test]
async fn extended_protocol_answers_like_one_postgres() {
    let (reference, c, _p, mut rng) = setup("diffext").await;
    let (mut compared, mut refused, mut mismatches) = (0, 0, Vec::new());
    for _ in 0..600 {
        let (sql, ordered) = query(&mut rng);
        let Ok(want) = reference.query(&sql, &[]).await else {
            continue;
        };
        let Some(mut want): Option<Vec<_>> = want.iter().map(typed).collect() else {
            continue;
        };
        match c.query(&sql, &[]).await {
            Ok(got) => {
                let Some(mut got): Option<Vec<_>> = got.iter().map(typed).collect() else {
                    mismatches.push(format!("{sql}: unreadable types from the proxy"));
                    continue;
                };
                if !ordered {
                    want.sort();
                    got.sort();
                }
                compared += 1;
                if want != got {
                    mismatches.push(format!(
                        "{sql}\n  want {:?}\n  got  {:?}",
                        want.iter().take(3).collect::<Vec<_>>(),
                        got.iter().take(3).collect::<Vec<_>>()
                    ));
                }
            }
            Err(e) if e.code().map(|c| c.code()) == Some("0A000") => refused += 1,
            Err(e) => mismatches.push(format!("{sql}: {e:?}")),
        }
    }
    eprintln!(
        "differential (extended protocol): {compared} compared, {} mismatches, {refused} refused",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{}",
        mismatches
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(compared > 100, "too few comparable queries: {compared}");
}
