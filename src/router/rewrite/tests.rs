//! Table-driven rewrite tests, one case a line: `sql -> shard SQL + plan` or `sql -> refused`.
//!
//! Plans are written compactly: `V+H` (visible + hidden columns), `out=` one entry per shard
//! column (`c` a pass-through column, `count|sum|min|max|and|or` an aggregate of itself,
//! `avg(S,C)`), then only what is set: `agg`, `group=i,j`, `distinct`, `having=...`
//! (`cN` is shard column N), `order=` keys (`N`, `d` descending, `nf`/`nl` when the NULLS
//! placement is not the default), `limit=`, `offset=`.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::*;
use crate::merge::{AggKind, CmpOp, Output, Predicate};

fn describe(p: &MergePlan) -> String {
    let out: Vec<String> = p
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| match *o {
            Output::Column(c) if c == i => "c".to_string(),
            Output::Column(c) => format!("c{c}"),
            Output::Agg { kind, input } => {
                let k = match kind {
                    AggKind::Count => "count",
                    AggKind::Sum => "sum",
                    AggKind::Min => "min",
                    AggKind::Max => "max",
                    AggKind::BoolAnd => "and",
                    AggKind::BoolOr => "or",
                };
                if input == i {
                    k.to_string()
                } else {
                    format!("{k}@{input}")
                }
            }
            Output::Avg { sum, count } => format!("avg({sum},{count})"),
        })
        .collect();
    let mut s = format!("{}+{} out={}", p.visible, p.hidden, out.join(","));
    let list = |v: &[usize]| {
        v.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if p.aggregate {
        s += " agg";
    }
    if !p.group_by.is_empty() {
        s += &format!(" group={}", list(&p.group_by));
    }
    if p.distinct {
        s += " distinct";
    }
    if let Some(h) = &p.having {
        s += &format!(" having={}", pred(h));
    }
    if !p.order_by.is_empty() {
        let keys: Vec<String> = p
            .order_by
            .iter()
            .map(|k| {
                let nulls = match (k.descending, k.nulls_first) {
                    (false, true) => "nf",
                    (true, false) => "nl",
                    _ => "",
                };
                format!("{}{}{nulls}", k.column, if k.descending { "d" } else { "" })
            })
            .collect();
        s += &format!(" order={}", keys.join(","));
    }
    if let Some(l) = p.limit {
        s += &format!(" limit={l}");
    }
    if p.offset > 0 {
        s += &format!(" offset={}", p.offset);
    }
    s
}

fn pred(p: &Predicate) -> String {
    let op = |o: &CmpOp| match o {
        CmpOp::Eq => "=",
        CmpOp::NotEq => "<>",
        CmpOp::Lt => "<",
        CmpOp::LtEq => "<=",
        CmpOp::Gt => ">",
        CmpOp::GtEq => ">=",
    };
    match p {
        Predicate::And(a, b) => format!("({} and {})", pred(a), pred(b)),
        Predicate::Or(a, b) => format!("({} or {})", pred(a), pred(b)),
        Predicate::Not(a) => format!("not {}", pred(a)),
        Predicate::Compare {
            column,
            op: o,
            literal,
        } => format!("c{column}{}{literal}", op(o)),
        Predicate::CompareColumns { left, op: o, right } => format!("c{left}{}c{right}", op(o)),
        Predicate::IsNull { column, negated } => {
            format!("c{column} is {}null", if *negated { "not " } else { "" })
        }
    }
}

/// `(client SQL, shard SQL, plan)`.
#[rustfmt::skip]
const REWRITTEN: &[(&str, &str, &str)] = &[
    // Pass-through: no merge work beyond concatenation.
    ("SELECT id, name FROM users", "SELECT id, name FROM users", "2+0 out=c,c"),
    ("SELECT * FROM users WHERE name = 'x'", "SELECT * FROM users WHERE name = 'x'", "0+0 out="),
    ("SELECT u.*, p.title FROM users u JOIN posts p ON p.user_id = u.id", "SELECT u.*, p.title FROM users u JOIN posts p ON p.user_id = u.id", "0+0 out="),
    ("SELECT id, (SELECT name FROM countries c WHERE c.code = users.cc) FROM users", "SELECT id, (SELECT name FROM countries c WHERE c.code = users.cc) FROM users", "2+0 out=c,c"),
    ("SELECT id FROM users, generate_series(1, 3) g", "SELECT id FROM users, generate_series(1, 3) g", "1+0 out=c"),
    ("SELECT id FROM users FOR UPDATE", "SELECT id FROM users FOR UPDATE", "1+0 out=c"),
    ("SELECT ALL name FROM users", "SELECT ALL name FROM users", "1+0 out=c"),
    ("/* shardgate: note */ SELECT id FROM users", "SELECT id FROM users", "1+0 out=c"),
    // ORDER BY: visible columns by name, alias, position or equal expression.
    ("SELECT id, name FROM users ORDER BY name", "SELECT id, name FROM users ORDER BY name", "2+0 out=c,c order=1"),
    ("SELECT id, name FROM users ORDER BY 2 DESC", "SELECT id, name FROM users ORDER BY 2 DESC", "2+0 out=c,c order=1d"),
    ("SELECT id, name AS n FROM users ORDER BY n", "SELECT id, name AS n FROM users ORDER BY n", "2+0 out=c,c order=1"),
    ("SELECT id, name FROM users ORDER BY name, id DESC", "SELECT id, name FROM users ORDER BY name, id DESC", "2+0 out=c,c order=1,0d"),
    ("SELECT id FROM users ORDER BY id NULLS FIRST", "SELECT id FROM users ORDER BY id NULLS FIRST", "1+0 out=c order=0nf"),
    ("SELECT id FROM users ORDER BY id DESC NULLS LAST", "SELECT id FROM users ORDER BY id DESC NULLS LAST", "1+0 out=c order=0dnl"),
    ("SELECT id FROM users ORDER BY id ASC NULLS LAST", "SELECT id FROM users ORDER BY id ASC NULLS LAST", "1+0 out=c order=0"),
    ("SELECT lower(name) FROM users ORDER BY LOWER(Name)", "SELECT lower(name) FROM users ORDER BY LOWER(Name)", "1+0 out=c order=0"),
    ("SELECT u.id FROM users u ORDER BY id", "SELECT u.id FROM users u ORDER BY id", "1+0 out=c order=0"),
    ("SELECT id + 1 AS next FROM users ORDER BY (id + 1)", "SELECT id + 1 AS next FROM users ORDER BY (id + 1)", "1+0 out=c order=0"),
    ("SELECT id, id FROM users ORDER BY id", "SELECT id, id FROM users ORDER BY id", "2+0 out=c,c order=0"),
    // ORDER BY an expression not in the select list: a hidden column after the visible ones.
    ("SELECT name FROM users ORDER BY id", "SELECT name, id AS __sg_o0 FROM users ORDER BY id", "1+1 out=c,c order=1"),
    ("SELECT name FROM users ORDER BY id DESC, created_at", "SELECT name, id AS __sg_o0, created_at AS __sg_o1 FROM users ORDER BY id DESC, created_at", "1+2 out=c,c,c order=1d,2"),
    ("SELECT name FROM users ORDER BY id, id DESC", "SELECT name, id AS __sg_o0 FROM users ORDER BY id, id DESC", "1+1 out=c,c order=1,1d"),
    ("SELECT id FROM users u ORDER BY u.id", "SELECT id, u.id AS __sg_o0 FROM users u ORDER BY u.id", "1+1 out=c,c order=1"),
    ("SELECT id FROM users ORDER BY random()", "SELECT id, random() AS __sg_o0 FROM users ORDER BY random()", "1+1 out=c,c order=1"),
    // `*`: the column count is the shards'; every sort key is a hidden copy.
    ("SELECT * FROM users ORDER BY id", "SELECT *, id AS __sg_o0 FROM users ORDER BY id", "0+1 out=c order=0"),
    ("SELECT *, lower(name) AS l FROM users ORDER BY l DESC", "SELECT *, lower(name) AS l, lower(name) AS __sg_o0 FROM users ORDER BY l DESC", "0+1 out=c order=0d"),
    ("SELECT id, * FROM users ORDER BY 1", "SELECT id, *, id AS __sg_o0 FROM users ORDER BY 1", "0+1 out=c order=0"),
    ("SELECT u.* FROM users u ORDER BY u.id LIMIT 5", "SELECT u.*, u.id AS __sg_o0 FROM users u ORDER BY u.id LIMIT 5", "0+1 out=c order=0 limit=5"),
    ("SELECT DISTINCT * FROM users ORDER BY id", "SELECT DISTINCT *, id AS __sg_o0 FROM users ORDER BY id", "0+1 out=c distinct order=0"),
    // LIMIT / OFFSET / FETCH: shards are asked for limit + offset rows.
    ("SELECT id FROM users ORDER BY id LIMIT 10", "SELECT id FROM users ORDER BY id LIMIT 10", "1+0 out=c order=0 limit=10"),
    ("SELECT id FROM users ORDER BY id LIMIT 10 OFFSET 5", "SELECT id FROM users ORDER BY id LIMIT 15", "1+0 out=c order=0 limit=10 offset=5"),
    ("SELECT id FROM users ORDER BY id OFFSET 5 LIMIT 10", "SELECT id FROM users ORDER BY id LIMIT 15", "1+0 out=c order=0 limit=10 offset=5"),
    ("SELECT id FROM users ORDER BY id OFFSET 5", "SELECT id FROM users ORDER BY id", "1+0 out=c order=0 offset=5"),
    ("SELECT id FROM users LIMIT 3", "SELECT id FROM users LIMIT 3", "1+0 out=c limit=3"),
    ("SELECT id FROM users LIMIT 0", "SELECT id FROM users LIMIT 0", "1+0 out=c limit=0"),
    ("SELECT id FROM users OFFSET 0", "SELECT id FROM users", "1+0 out=c"),
    ("SELECT id FROM users ORDER BY id LIMIT ALL", "SELECT id FROM users ORDER BY id", "1+0 out=c order=0"),
    ("SELECT id FROM users ORDER BY id LIMIT NULL OFFSET 2", "SELECT id FROM users ORDER BY id", "1+0 out=c order=0 offset=2"),
    ("SELECT id FROM users ORDER BY id FETCH FIRST 5 ROWS ONLY", "SELECT id FROM users ORDER BY id LIMIT 5", "1+0 out=c order=0 limit=5"),
    ("SELECT id FROM users ORDER BY id OFFSET 2 ROWS FETCH NEXT 3 ROWS ONLY", "SELECT id FROM users ORDER BY id LIMIT 5", "1+0 out=c order=0 limit=3 offset=2"),
    ("SELECT id FROM users ORDER BY id FETCH FIRST ROW ONLY", "SELECT id FROM users ORDER BY id LIMIT 1", "1+0 out=c order=0 limit=1"),
    ("SELECT name FROM users ORDER BY id LIMIT 2 OFFSET 1", "SELECT name, id AS __sg_o0 FROM users ORDER BY id LIMIT 3", "1+1 out=c,c order=1 limit=2 offset=1"),
    ("SELECT name FROM users WHERE id > $1 ORDER BY abs(score - $2) LIMIT 5", "SELECT name, abs(score - $2) AS __sg_o0 FROM users WHERE id > $1 ORDER BY abs(score - $2) LIMIT 5", "1+1 out=c,c order=1 limit=5"),
    ("SELECT id FROM users ORDER BY id LIMIT 9223372036854775807 OFFSET 1", "SELECT id FROM users ORDER BY id", "1+0 out=c order=0 limit=9223372036854775807 offset=1"),
    ("SELECT DISTINCT name FROM users ORDER BY name LIMIT 5 OFFSET 5", "SELECT DISTINCT name FROM users ORDER BY name LIMIT 10", "1+0 out=c distinct order=0 limit=5 offset=5"),
    // Aggregates: each shard computes a partial in the same column.
    ("SELECT count(*) FROM users", "SELECT count(*) FROM users", "1+0 out=count agg"),
    ("SELECT COUNT(*) AS n FROM users WHERE active", "SELECT COUNT(*) AS n FROM users WHERE active", "1+0 out=count agg"),
    ("SELECT count(id), sum(score), min(score), max(score), bool_and(active), bool_or(active) FROM users", "SELECT count(id), sum(score), min(score), max(score), bool_and(active), bool_or(active) FROM users", "6+0 out=count,sum,min,max,and,or agg"),
    ("SELECT every(active), max(DISTINCT score) FROM users", "SELECT every(active), max(DISTINCT score) FROM users", "2+0 out=and,max agg"),
    ("SELECT (count(*)) FROM users", "SELECT (count(*)) FROM users", "1+0 out=count agg"),
    ("SELECT pg_catalog.count(*) FROM users", "SELECT pg_catalog.count(*) FROM users", "1+0 out=count agg"),
    ("SELECT count(*) FILTER (WHERE active) FROM users", "SELECT count(*) FILTER (WHERE active) FROM users", "1+0 out=count agg"),
    ("SELECT count(*), 'x' AS tag FROM users", "SELECT count(*), 'x' AS tag FROM users", "2+0 out=count,c agg"),
    ("SELECT count(*) FROM users LIMIT 1", "SELECT count(*) FROM users", "1+0 out=count agg limit=1"),
    // avg(x): visible for its name and type; hidden sum and count carry the merge.
    ("SELECT avg(score) FROM users", "SELECT avg(score), sum(score) AS __sg_sum0, count(score) AS __sg_cnt1 FROM users", "1+2 out=avg(1,2),sum,count agg"),
    ("SELECT sum(score), avg(score) FROM users", "SELECT sum(score), avg(score), count(score) AS __sg_cnt0 FROM users", "2+1 out=sum,avg(0,2),count agg"),
    ("SELECT avg(score) FILTER (WHERE active) FROM users", "SELECT avg(score) FILTER (WHERE active), sum(score) FILTER (WHERE active) AS __sg_sum0, count(score) FILTER (WHERE active) AS __sg_cnt1 FROM users", "1+2 out=avg(1,2),sum,count agg"),
    ("SELECT avg(score), avg(score) AS again FROM users", "SELECT avg(score), avg(score) AS again, sum(score) AS __sg_sum0, count(score) AS __sg_cnt1 FROM users", "2+2 out=avg(2,3),avg(2,3),sum,count agg"),
    // GROUP BY: keys map to visible columns or hidden ones.
    ("SELECT dept, count(*) FROM users GROUP BY dept", "SELECT dept, count(*) FROM users GROUP BY dept", "2+0 out=c,count agg group=0"),
    ("SELECT count(*) FROM users GROUP BY dept", "SELECT count(*), dept AS __sg_g0 FROM users GROUP BY dept", "1+1 out=count,c agg group=1"),
    ("SELECT dept AS d, count(*) FROM users GROUP BY d", "SELECT dept AS d, count(*) FROM users GROUP BY d", "2+0 out=c,count agg group=0"),
    ("SELECT dept, count(*) FROM users GROUP BY 1", "SELECT dept, count(*) FROM users GROUP BY 1", "2+0 out=c,count agg group=0"),
    ("SELECT dept, city, sum(score) FROM users GROUP BY city, dept", "SELECT dept, city, sum(score) FROM users GROUP BY city, dept", "3+0 out=c,c,sum agg group=1,0"),
    ("SELECT dept, count(*) FROM users GROUP BY dept, 1", "SELECT dept, count(*) FROM users GROUP BY dept, 1", "2+0 out=c,count agg group=0"),
    ("SELECT lower(dept), count(*) FROM users GROUP BY LOWER(dept)", "SELECT lower(dept), count(*) FROM users GROUP BY LOWER(dept)", "2+0 out=c,count agg group=0"),
    ("SELECT upper(dept), count(*) FROM users GROUP BY dept", "SELECT upper(dept), count(*), dept AS __sg_g0 FROM users GROUP BY dept", "2+1 out=c,count,c agg group=2"),
    ("SELECT date_trunc('day', created_at) AS created_at, count(*) FROM events GROUP BY created_at", "SELECT date_trunc('day', created_at) AS created_at, count(*), created_at AS __sg_g0 FROM events GROUP BY created_at", "2+1 out=c,count,c agg group=2"),
    ("SELECT DISTINCT dept, count(*) FROM users GROUP BY dept", "SELECT DISTINCT dept, count(*) FROM users GROUP BY dept", "2+0 out=c,count agg group=0 distinct"),
    ("SELECT dept FROM users GROUP BY dept", "SELECT dept FROM users GROUP BY dept", "1+0 out=c agg group=0"),
    ("SELECT DISTINCT count(*) FROM users GROUP BY dept", "SELECT DISTINCT count(*), dept AS __sg_g0 FROM users GROUP BY dept", "1+1 out=count,c agg group=1 distinct"),
    ("SELECT lower(name) AS name, count(*) FROM users GROUP BY name", "SELECT lower(name) AS name, count(*), name AS __sg_g0 FROM users GROUP BY name", "2+1 out=c,count,c agg group=2"),
    ("SELECT 1 AS one FROM users GROUP BY dept", "SELECT 1 AS one, dept AS __sg_g0 FROM users GROUP BY dept", "1+1 out=c,c agg group=1"),
    ("SELECT max(name), min(created_at) FROM users GROUP BY dept HAVING max(name) > 'm'", "SELECT max(name), min(created_at), dept AS __sg_g0 FROM users GROUP BY dept", "2+1 out=max,min,c agg group=2 having=c0>m"),
    ("SELECT count(*) FROM users u JOIN posts p ON p.user_id = u.id WHERE p.title <> ''", "SELECT count(*) FROM users u JOIN posts p ON p.user_id = u.id WHERE p.title <> ''", "1+0 out=count agg"),
    // Grouped ORDER BY and LIMIT: the shards return every group, unlimited.
    ("SELECT dept, count(*) FROM users GROUP BY dept ORDER BY 2 DESC LIMIT 3", "SELECT dept, count(*) FROM users GROUP BY dept ORDER BY 2 DESC", "2+0 out=c,count agg group=0 order=1d limit=3"),
    ("SELECT dept, count(*) AS n FROM users GROUP BY dept ORDER BY n DESC, dept LIMIT 2 OFFSET 1", "SELECT dept, count(*) AS n FROM users GROUP BY dept ORDER BY n DESC, dept", "2+0 out=c,count agg group=0 order=1d,0 limit=2 offset=1"),
    ("SELECT dept, avg(score) FROM users GROUP BY dept ORDER BY avg(score) DESC", "SELECT dept, avg(score), sum(score) AS __sg_sum0, count(score) AS __sg_cnt1 FROM users GROUP BY dept ORDER BY avg(score) DESC", "2+2 out=c,avg(2,3),sum,count agg group=0 order=1d"),
    ("SELECT dept FROM users GROUP BY dept ORDER BY count(*) DESC", "SELECT dept, count(*) AS __sg_o0 FROM users GROUP BY dept ORDER BY count(*) DESC", "1+1 out=c,count agg group=0 order=1d"),
    ("SELECT count(*) FROM users GROUP BY dept ORDER BY dept", "SELECT count(*), dept AS __sg_g0 FROM users GROUP BY dept ORDER BY dept", "1+1 out=count,c agg group=1 order=1"),
    ("SELECT count(*) FROM users GROUP BY dept ORDER BY lower(dept)", "SELECT count(*), dept AS __sg_g0, lower(dept) AS __sg_o1 FROM users GROUP BY dept ORDER BY lower(dept)", "1+2 out=count,c,c agg group=1 order=2"),
    // HAVING: removed from the shards, evaluated on merged groups.
    ("SELECT dept, count(*) FROM users GROUP BY dept HAVING count(*) > 10", "SELECT dept, count(*) FROM users GROUP BY dept", "2+0 out=c,count agg group=0 having=c1>10"),
    ("SELECT dept FROM users GROUP BY dept HAVING sum(score) >= 100", "SELECT dept, sum(score) AS __sg_h0 FROM users GROUP BY dept", "1+1 out=c,sum agg group=0 having=c1>=100"),
    ("SELECT dept, count(*) FROM users GROUP BY dept HAVING 10 < count(*)", "SELECT dept, count(*) FROM users GROUP BY dept", "2+0 out=c,count agg group=0 having=c1>10"),
    ("SELECT dept, count(*) FROM users GROUP BY dept HAVING count(*) > 1 AND max(score) < 50", "SELECT dept, count(*), max(score) AS __sg_h0 FROM users GROUP BY dept", "2+1 out=c,count,max agg group=0 having=(c1>1 and c2<50)"),
    ("SELECT dept, count(*) FROM users GROUP BY dept HAVING NOT (count(*) = 1 OR dept = 'x')", "SELECT dept, count(*) FROM users GROUP BY dept", "2+0 out=c,count agg group=0 having=not (c1=1 or c0=x)"),
    ("SELECT dept FROM users GROUP BY dept HAVING max(score) IS NULL OR min(score) IS NOT NULL", "SELECT dept, max(score) AS __sg_h0, min(score) AS __sg_h1 FROM users GROUP BY dept", "1+2 out=c,max,min agg group=0 having=(c1 is null or c2 is not null)"),
    ("SELECT dept, count(*) FROM users GROUP BY dept HAVING count(*) BETWEEN 2 AND 5", "SELECT dept, count(*) FROM users GROUP BY dept", "2+0 out=c,count agg group=0 having=(c1>=2 and c1<=5)"),
    ("SELECT dept, count(*) FROM users GROUP BY dept HAVING count(*) NOT BETWEEN 2 AND 5", "SELECT dept, count(*) FROM users GROUP BY dept", "2+0 out=c,count agg group=0 having=(c1<2 or c1>5)"),
    ("SELECT dept, count(*) FROM users GROUP BY dept HAVING dept IN ('a', 'b')", "SELECT dept, count(*) FROM users GROUP BY dept", "2+0 out=c,count agg group=0 having=(c0=a or c0=b)"),
    ("SELECT dept, count(*) FROM users GROUP BY dept HAVING dept NOT IN ('a', 'b')", "SELECT dept, count(*) FROM users GROUP BY dept", "2+0 out=c,count agg group=0 having=(c0<>a and c0<>b)"),
    ("SELECT dept FROM users GROUP BY dept HAVING min(score) = max(score)", "SELECT dept, min(score) AS __sg_h0, max(score) AS __sg_h1 FROM users GROUP BY dept", "1+2 out=c,min,max agg group=0 having=c1=c2"),
    ("SELECT dept FROM users GROUP BY dept HAVING avg(score) > 3.5", "SELECT dept, avg(score) AS __sg_h0, sum(score) AS __sg_sum1, count(score) AS __sg_cnt2 FROM users GROUP BY dept", "1+3 out=c,avg(2,3),sum,count agg group=0 having=c1>3.5"),
    ("SELECT dept FROM users GROUP BY dept HAVING count(*) > 1 AND count(*) < 5", "SELECT dept, count(*) AS __sg_h0 FROM users GROUP BY dept", "1+1 out=c,count agg group=0 having=(c1>1 and c1<5)"),
    ("SELECT dept FROM users GROUP BY dept HAVING bool_or(active)", "SELECT dept, bool_or(active) AS __sg_h0 FROM users GROUP BY dept", "1+1 out=c,or agg group=0 having=c1=true"),
    ("SELECT dept FROM users GROUP BY dept HAVING count(*) <> -1", "SELECT dept, count(*) AS __sg_h0 FROM users GROUP BY dept", "1+1 out=c,count agg group=0 having=c1<>-1"),
    ("SELECT dept FROM users GROUP BY dept HAVING max(created_at) > '2024-01-01'::DATE", "SELECT dept, max(created_at) AS __sg_h0, '2024-01-01'::DATE AS __sg_h1 FROM users GROUP BY dept", "1+2 out=c,max,c agg group=0 having=c1>c2"),
    ("SELECT count(*) FROM users HAVING count(*) > 0", "SELECT count(*) FROM users", "1+0 out=count agg having=c0>0"),
    ("SELECT count(*) FROM users GROUP BY dept HAVING lower(dept) = 'x'", "SELECT count(*), dept AS __sg_g0, lower(dept) AS __sg_h1 FROM users GROUP BY dept", "1+2 out=count,c,c agg group=1 having=c2=x"),
];

/// `(client SQL, words the refusal must contain)`.
#[rustfmt::skip]
const REFUSED: &[(&str, &str)] = &[
    // Aggregates the merge cannot combine.
    ("SELECT count(DISTINCT name) FROM users", "count(DISTINCT name)"),
    ("SELECT sum(DISTINCT score) FROM users", "sum(DISTINCT score)"),
    ("SELECT avg(DISTINCT score) FROM users", "avg(DISTINCT score)"),
    ("SELECT sum(score) + 1 FROM users", "an aggregate inside an expression (sum(score) + 1)"),
    ("SELECT count(*) * 2 FROM users", "an aggregate inside an expression"),
    ("SELECT count(*)::INT FROM users", "an aggregate inside an expression"),
    ("SELECT coalesce(sum(score), 0) FROM users", "an aggregate inside an expression"),
    ("SELECT array_agg(name) FROM users", "aggregate array_agg()"),
    ("SELECT string_agg(name, ',') FROM users", "aggregate string_agg()"),
    ("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY score) FROM users", "aggregate percentile_cont()"),
    ("SELECT stddev(score) FROM users", "aggregate stddev()"),
    ("SELECT sum(score ORDER BY id) FROM users", "sum() with ORDER BY"),
    ("SELECT dept FROM users GROUP BY dept ORDER BY count(*) + 1", "an aggregate inside an expression"),
    // Windows, DISTINCT ON, set operations, CTEs, derived tables.
    ("SELECT id, row_number() OVER (ORDER BY id) FROM users", "window function"),
    ("SELECT id, sum(score) OVER w FROM users WINDOW w AS (PARTITION BY dept)", "window function"),
    ("SELECT id FROM users ORDER BY rank() OVER (ORDER BY score)", "window function"),
    ("SELECT DISTINCT ON (name) name, id FROM users ORDER BY name, id", "DISTINCT ON"),
    ("SELECT id FROM users UNION SELECT user_id FROM posts", "UNION"),
    ("SELECT id FROM users UNION ALL SELECT user_id FROM posts", "UNION ALL"),
    ("SELECT id FROM users INTERSECT SELECT user_id FROM posts", "INTERSECT"),
    ("SELECT id FROM users EXCEPT SELECT user_id FROM posts", "EXCEPT"),
    ("WITH u AS (SELECT id FROM users) SELECT id FROM u", "WITH"),
    ("SELECT * FROM (SELECT dept, count(*) FROM users GROUP BY dept) s", "a subquery in FROM"),
    ("SELECT * FROM users u JOIN (SELECT user_id FROM posts LIMIT 1) p ON p.user_id = u.id", "a subquery in FROM"),
    ("SELECT * FROM users u, LATERAL (SELECT title FROM posts p WHERE p.user_id = u.id LIMIT 1) x", "a subquery in FROM"),
    ("SELECT * FROM (users u JOIN (SELECT 1 AS one) o ON true)", "a subquery in FROM"),
    // ORDER BY that cannot be mapped.
    ("SELECT DISTINCT name FROM users ORDER BY id", "ORDER BY an expression not in the select list"),
    ("SELECT DISTINCT dept, count(*) FROM users GROUP BY dept ORDER BY max(score)", "ORDER BY an expression not in the select list"),
    ("SELECT id FROM users ORDER BY 3", "position 3 is not in the select list"),
    ("SELECT id FROM users ORDER BY 0", "position 0 is not in the select list"),
    ("SELECT *, name FROM users ORDER BY 2", "with * in the select list"),
    ("SELECT id, name AS id FROM users ORDER BY id", "ambiguous"),
    ("SELECT id FROM users ORDER BY id USING <", "USING"),
    // LIMIT / OFFSET.
    ("SELECT id FROM users OFFSET 5", "OFFSET without ORDER BY"),
    ("SELECT id FROM users LIMIT 3 OFFSET 5", "OFFSET without ORDER BY"),
    ("SELECT id FROM users ORDER BY id LIMIT $1", "FETCH/LIMIT with a non-constant (LIMIT $1)"),
    ("SELECT id FROM users ORDER BY id LIMIT 10 OFFSET $2", "FETCH/LIMIT with a non-constant (OFFSET $2)"),
    ("SELECT id FROM users ORDER BY id LIMIT 1 + 1", "FETCH/LIMIT with a non-constant"),
    ("SELECT id FROM users ORDER BY id FETCH FIRST $1 ROWS ONLY", "FETCH/LIMIT with a non-constant"),
    ("SELECT id FROM users ORDER BY id FETCH FIRST 5 ROWS WITH TIES", "WITH TIES"),
    ("SELECT id FROM users ORDER BY id LIMIT 1.5", "not a non-negative bigint"),
    ("SELECT id FROM users ORDER BY id LIMIT 9223372036854775808", "not a non-negative bigint"),
    ("SELECT id FROM users ORDER BY id LIMIT -1", "FETCH/LIMIT with a non-constant"),
    // GROUP BY.
    ("SELECT dept, count(*) FROM users GROUP BY ROLLUP (dept)", "ROLLUP"),
    ("SELECT dept, count(*) FROM users GROUP BY CUBE (dept)", "CUBE"),
    ("SELECT dept, count(*) FROM users GROUP BY GROUPING SETS ((dept), ())", "GROUPING SETS"),
    ("SELECT dept, count(*) FROM users GROUP BY 2", "GROUP BY an aggregate"),
    ("SELECT dept, count(*) FROM users GROUP BY 3", "position 3 is not in the select list"),
    ("SELECT *, count(*) FROM users GROUP BY id", "* in the select list of a query with aggregates"),
    ("SELECT * FROM users GROUP BY id", "* in the select list of a query with aggregates"),
    ("SELECT dept, (SELECT max(code) FROM countries) FROM users GROUP BY dept", "a subquery in the select list of a grouped query"),
    // HAVING conditions the merge cannot evaluate.
    ("SELECT dept FROM users GROUP BY dept HAVING count(*) > $1", "a parameter in HAVING"),
    ("SELECT dept FROM users GROUP BY dept HAVING count(*) > NULL", "NULL in HAVING"),
    ("SELECT dept FROM users GROUP BY dept HAVING sum(score) + 1 > 10", "an aggregate inside an expression"),
    ("SELECT dept FROM users GROUP BY dept HAVING dept LIKE 'a%'", "HAVING condition"),
    ("SELECT dept FROM users GROUP BY dept HAVING EXISTS (SELECT 1 FROM countries)", "HAVING condition"),
    ("SELECT dept FROM users GROUP BY dept HAVING count(*) > (SELECT 1)", "a subquery in HAVING or ORDER BY"),
    ("SELECT dept FROM users GROUP BY dept HAVING count(*) IN (SELECT 1)", "HAVING condition"),
    ("SELECT dept FROM users GROUP BY dept HAVING 1 < 2", "two constants"),
    ("SELECT dept FROM users GROUP BY dept HAVING count(DISTINCT name) > 1", "count(DISTINCT name)"),
    // Locks, statements that are not one SELECT, other syntax.
    ("SELECT dept, count(*) FROM users GROUP BY dept FOR UPDATE", "FOR UPDATE/SHARE with GROUP BY"),
    ("SELECT DISTINCT name FROM users FOR SHARE", "FOR UPDATE/SHARE with GROUP BY, DISTINCT"),
    ("SELECT id FROM users ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED", "FOR UPDATE/SHARE with LIMIT"),
    ("INSERT INTO users (id) VALUES (1)", "not a single SELECT"),
    ("SELECT 1; SELECT 2", "not a single SELECT"),
    ("VALUES (1)", "VALUES"),
    ("SELECT id INTO t2 FROM users", "SELECT INTO"),
    ("SELEKT id FROM users", "cannot parse"),
];

#[test]
fn rewrites() {
    let mut failures = Vec::new();
    for (sql, shard, plan) in REWRITTEN {
        match rewrite_fanout(sql) {
            Ok(r) if r.shard_sql == *shard && describe(&r.plan) == *plan => {}
            Ok(r) => failures.push(format!(
                "{sql}\n   want {shard}\n        {plan}\n    got {}\n        {}",
                r.shard_sql,
                describe(&r.plan)
            )),
            Err(e) => failures.push(format!("{sql}\n   want {shard}\n    got refusal: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn refusals() {
    let mut failures = Vec::new();
    for (sql, words) in REFUSED {
        match rewrite_fanout(sql) {
            Err(Unsupported(m)) if m.contains(words) => {}
            Err(Unsupported(m)) => failures.push(format!("{sql}\n   want {words}\n    got {m}")),
            Ok(r) => failures.push(format!(
                "{sql}\n   want refusal {words}\n    got {} / {}",
                r.shard_sql,
                describe(&r.plan)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every shard query is valid SQL again, and printing it again changes nothing.
#[test]
fn shard_sql_parses_again() {
    for (sql, _, _) in REWRITTEN {
        let Ok(r) = rewrite_fanout(sql) else {
            continue; // reported by `rewrites`
        };
        let parsed = Parser::parse_sql(&PostgreSqlDialect {}, &r.shard_sql)
            .unwrap_or_else(|e| panic!("{}: {e}", r.shard_sql));
        assert_eq!(parsed.len(), 1, "{}", r.shard_sql);
        assert_eq!(parsed[0].to_string(), r.shard_sql);
    }
}

/// Every plan is consistent: one output per shard column, indices in range.
#[test]
fn plans_are_consistent() {
    for (sql, _, _) in REWRITTEN {
        let Ok(r) = rewrite_fanout(sql) else {
            continue;
        };
        let p = &r.plan;
        let n = p.visible + p.hidden;
        if p.visible > 0 {
            assert_eq!(p.outputs.len(), n, "{sql}");
        }
        let cols = p.outputs.len();
        let ok = p.group_by.iter().all(|&c| c < cols)
            && p.order_by.iter().all(|k| k.column < cols)
            && p.outputs.iter().all(|o| match *o {
                Output::Column(c) | Output::Agg { input: c, .. } => c < cols,
                Output::Avg { sum, count } => sum < cols && count < cols,
            });
        assert!(ok, "{sql}: {p:?}");
    }
}

#[test]
fn resolve_fills_in_star_columns() {
    let r =
        rewrite_fanout("SELECT DISTINCT * FROM users ORDER BY id DESC LIMIT 3").expect("supported");
    assert_eq!(
        r.shard_sql,
        "SELECT DISTINCT *, id AS __sg_o0 FROM users ORDER BY id DESC LIMIT 3"
    );
    // The shards describe 4 columns: 3 from `*` and the hidden sort key.
    let p = r.plan.resolve(4).expect("4 columns fit");
    assert_eq!(describe(&p), "3+1 out=c,c,c,c distinct order=3d limit=3");
    assert!(r.plan.resolve(0).is_none());
    // A plan without `*` only checks the count.
    let g = rewrite_fanout("SELECT dept FROM users GROUP BY dept HAVING avg(score) > 1")
        .expect("supported");
    assert_eq!(g.plan.resolve(4), Some(g.plan.clone()));
    assert_eq!(g.plan.resolve(5), None);
}
