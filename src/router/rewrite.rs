//! Fan-out SELECT -> the SQL every shard runs plus the [`MergePlan`] that combines their
//! answers into what one Postgres holding all the rows would return, or a refusal
//! ([`Unsupported`], SQLSTATE 0A000 at the session) naming the construct it cannot merge.
//!
//! Pure: text in, text out, no IO. The caller has already decided that the statement is one
//! SELECT running on several shards (`analyze`); this module does not route, and it refuses
//! whatever it does not know how to merge rather than guessing.
//!
//! The shard query is the client's query with the visible select list kept verbatim (so the
//! shards describe the columns), hidden helper columns appended after it, HAVING removed,
//! and LIMIT raised to LIMIT + OFFSET (or dropped when groups are merged). It is printed with
//! sqlparser's `Display`.
//!
//! - `columns`: the select list, hidden columns, and how an ORDER BY, GROUP BY or HAVING
//!   operand maps to a shard column;
//! - `aggregates`: which calls are aggregates and which the merge can combine;
//! - `having`: HAVING -> [`Predicate`] over merged columns.

mod aggregates;
mod columns;
mod having;
#[cfg(test)]
mod tests;

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, LimitClause, OrderByExpr, OrderByKind, OrderBySort, Query, Select,
    SelectFlavor, SetExpr, Statement, TableFactor, TableWithJoins, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::merge::{MergePlan, SortKey};
use aggregates::{contains_aggregate, contains_window};
use columns::{Columns, Target};

/// What the shards run and how their answers are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub shard_sql: String,
    pub plan: MergePlan,
}

/// A statement that cannot run across shards; the text names the construct (for a 0A000
/// message such as "cross-shard {0} is not supported").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

fn refuse<T>(what: impl Into<String>) -> Result<T, Unsupported> {
    Err(Unsupported(what.into()))
}

/// The expression inside any parentheses around it.
fn unnest(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

/// Rewrite one fan-out SELECT (the text of a single statement) for the shards.
pub fn rewrite_fanout(sql: &str) -> Result<Rewrite, Unsupported> {
    let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| Unsupported(format!("a statement shardgate cannot parse ({e})")))?;
    let [Statement::Query(query)] = stmts.as_slice() else {
        return refuse("a statement that is not a single SELECT");
    };
    let mut query = query.as_ref().clone();
    check_query(&query)?;
    let (limit, offset) = limits(&query)?;
    let order_exprs: Vec<Expr> = match query.order_by.as_ref().map(|o| &o.kind) {
        None => Vec::new(),
        Some(OrderByKind::All(_)) => return refuse("ORDER BY ALL"),
        Some(OrderByKind::Expressions(v)) => v.iter().map(|o| o.expr.clone()).collect(),
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return refuse("a query that is not a plain SELECT");
    };
    check_select(select)?;
    let distinct = match &select.distinct {
        None | Some(Distinct::All) => false,
        Some(Distinct::Distinct) => true,
        Some(Distinct::On(_)) => return refuse("DISTINCT ON"),
    };
    let group_exprs = group_exprs(&select.group_by)?;
    if order_exprs.iter().any(contains_window) {
        return refuse("window function");
    }
    let grouped = !group_exprs.is_empty()
        || select.having.is_some()
        || select.projection.iter().any(columns::item_aggregate)
        || order_exprs.iter().any(|e| contains_aggregate(e).is_some());

    let mut cols = Columns::new(&select.projection, grouped)?;
    let group_by = group_keys(&mut cols, &group_exprs)?;
    let having = match select.having.take() {
        Some(h) => Some(having::predicate(&mut cols, &h)?),
        None => None,
    };
    let order_by = match query.order_by.as_ref().map(|o| &o.kind) {
        Some(OrderByKind::Expressions(keys)) => sort_keys(&mut cols, keys, distinct)?,
        _ => Vec::new(),
    };
    if offset > 0 && order_by.is_empty() {
        return refuse("OFFSET without ORDER BY");
    }
    if !query.locks.is_empty() {
        if grouped || distinct {
            return refuse("FOR UPDATE/SHARE with GROUP BY, DISTINCT or aggregates");
        }
        if limit.is_some() || offset > 0 {
            // Every shard would lock up to LIMIT + OFFSET rows, more than one server would.
            return refuse("FOR UPDATE/SHARE with LIMIT or OFFSET");
        }
    }

    let built = cols.finish();
    select.projection.extend(built.hidden_items);
    // Grouped rows are partial per shard: a shard's first n groups need not be the first n
    // merged ones, so the shards return every group and the merge applies LIMIT/OFFSET.
    // A sum past bigint would be an error on the shard: such a limit is no limit at all.
    let shard_limit = match limit {
        Some(n) if !grouped => n.checked_add(offset).filter(|&s| i64::try_from(s).is_ok()),
        _ => None,
    };
    query.limit_clause = shard_limit.map(|n| LimitClause::LimitOffset {
        limit: Some(Expr::value(Value::Number(n.to_string(), false))),
        offset: None,
        limit_by: Vec::new(),
    });
    query.fetch = None;
    Ok(Rewrite {
        shard_sql: query.to_string(),
        plan: MergePlan {
            hidden_outputs: Vec::new(),
            visible: built.visible,
            hidden: built.hidden,
            outputs: built.outputs,
            group_by,
            aggregate: grouped,
            distinct,
            having,
            order_by,
            limit,
            offset,
        },
    })
}

/// The shard columns of the GROUP BY keys (visible, or added hidden).
fn group_keys(cols: &mut Columns, exprs: &[Expr]) -> Result<Vec<usize>, Unsupported> {
    let mut keys = Vec::with_capacity(exprs.len());
    for e in exprs {
        let column = match cols.resolve(e, "GROUP BY", true)? {
            Target::Column(i) if cols.is_aggregate(i) => {
                return refuse(format!("GROUP BY an aggregate ({e})"))
            }
            Target::Column(i) => i,
            Target::Expr(x) => cols.group_key(&x)?,
        };
        if !keys.contains(&column) {
            keys.push(column);
        }
    }
    Ok(keys)
}

/// The sort keys. With DISTINCT, Postgres only sorts by select-list columns (it raises an
/// error otherwise), so a key that would need a hidden column is refused; under `*` the
/// select list is unknown and keys are hidden copies.
fn sort_keys(
    cols: &mut Columns,
    keys: &[OrderByExpr],
    distinct: bool,
) -> Result<Vec<SortKey>, Unsupported> {
    let mut sort = Vec::with_capacity(keys.len());
    for k in keys {
        let descending = match k.options.sort {
            None | Some(OrderBySort::Asc) => false,
            Some(OrderBySort::Desc) => true,
            Some(OrderBySort::Using(_)) => return refuse("ORDER BY ... USING an operator"),
        };
        if k.with_fill.is_some() {
            return refuse("ORDER BY ... WITH FILL");
        }
        let column = match cols.resolve(&k.expr, "ORDER BY", false)? {
            Target::Column(i) if !distinct || cols.is_visible(i) => i,
            Target::Expr(x) if !distinct || cols.wildcard() => cols.operand(&x, "o")?,
            _ => {
                return refuse(format!(
                    "ORDER BY an expression not in the select list with DISTINCT ({})",
                    k.expr
                ))
            }
        };
        sort.push(SortKey {
            column,
            descending,
            // Postgres puts NULLs last ascending and first descending unless told.
            nulls_first: k.options.nulls_first.unwrap_or(descending),
        });
    }
    Ok(sort)
}

/// Query-level constructs the merge cannot reproduce.
fn check_query(q: &Query) -> Result<(), Unsupported> {
    if q.with.is_some() {
        return refuse("WITH (a common table expression)");
    }
    if q.for_clause.is_some()
        || q.settings.is_some()
        || q.format_clause.is_some()
        || !q.pipe_operators.is_empty()
        || q.order_by.as_ref().is_some_and(|o| o.interpolate.is_some())
    {
        return refuse("query syntax that is not PostgreSQL's");
    }
    match q.body.as_ref() {
        SetExpr::Select(_) => Ok(()),
        SetExpr::SetOperation {
            op, set_quantifier, ..
        } => refuse(format!("{op} {set_quantifier}").trim_end().to_string()),
        SetExpr::Query(_) => refuse("a parenthesized query"),
        SetExpr::Values(_) => refuse("VALUES"),
        SetExpr::Table(_) => refuse("TABLE"),
        _ => refuse("a data-modifying statement"),
    }
}

/// SELECT-level constructs the merge cannot reproduce.
fn check_select(s: &Select) -> Result<(), Unsupported> {
    if s.into.is_some() {
        return refuse("SELECT INTO");
    }
    if !s.named_window.is_empty() {
        return refuse("window function (WINDOW clause)");
    }
    if s.top.is_some()
        || s.qualify.is_some()
        || s.prewhere.is_some()
        || s.exclude.is_some()
        || s.select_modifiers.is_some()
        || s.value_table_mode.is_some()
        || !s.optimizer_hints.is_empty()
        || !s.lateral_views.is_empty()
        || !s.connect_by.is_empty()
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || s.flavor != SelectFlavor::Standard
    {
        return refuse("SELECT syntax that is not PostgreSQL's");
    }
    check_from(&s.from)?;
    let mut exprs: Vec<&Expr> = s.having.iter().collect();
    for item in &s.projection {
        if let Some(e) = columns::item_expr(item) {
            exprs.push(e);
        }
    }
    if exprs.into_iter().any(contains_window) {
        return refuse("window function");
    }
    Ok(())
}

/// A subquery in FROM would run per shard: its own aggregates, limits or DISTINCT would be
/// computed over one shard's rows only.
fn check_from(from: &[TableWithJoins]) -> Result<(), Unsupported> {
    for t in from {
        for f in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            match f {
                TableFactor::Table { .. }
                | TableFactor::Function { .. }
                | TableFactor::TableFunction { .. }
                | TableFactor::UNNEST { .. } => {}
                TableFactor::Derived { .. } => return refuse("a subquery in FROM"),
                TableFactor::NestedJoin {
                    table_with_joins, ..
                } => check_from(std::slice::from_ref(table_with_joins))?,
                _ => return refuse("a FROM item that is not a table, function or join"),
            }
        }
    }
    Ok(())
}

/// The GROUP BY expressions; grouping sets and their relatives are refused.
fn group_exprs(g: &GroupByExpr) -> Result<Vec<Expr>, Unsupported> {
    let exprs = match g {
        GroupByExpr::All(_) => return refuse("GROUP BY ALL"),
        GroupByExpr::Expressions(_, m) if !m.is_empty() => return refuse("GROUP BY ... WITH"),
        GroupByExpr::Expressions(v, _) => v,
    };
    for e in exprs {
        match e {
            Expr::GroupingSets(_) => return refuse("GROUPING SETS"),
            Expr::Rollup(_) => return refuse("ROLLUP"),
            Expr::Cube(_) => return refuse("CUBE"),
            Expr::Tuple(t) if t.is_empty() => return refuse("an empty grouping set"),
            _ => {}
        }
    }
    Ok(exprs.clone())
}

/// LIMIT (or FETCH FIRST) and OFFSET as constants: `(limit, offset)`.
fn limits(q: &Query) -> Result<(Option<u64>, u64), Unsupported> {
    let (mut limit, mut offset) = (None, 0);
    match &q.limit_clause {
        None => {}
        Some(LimitClause::LimitOffset {
            limit: l,
            offset: o,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return refuse("LIMIT BY");
            }
            if let Some(e) = l {
                limit = constant(e, "LIMIT")?;
            }
            if let Some(o) = o {
                offset = constant(&o.value, "OFFSET")?.unwrap_or(0);
            }
        }
        Some(LimitClause::OffsetCommaLimit { .. }) => return refuse("LIMIT offset, count"),
    }
    if let Some(f) = &q.fetch {
        if limit.is_some() {
            return refuse("both LIMIT and FETCH");
        }
        if f.with_ties {
            return refuse("FETCH ... WITH TIES");
        }
        if f.percent {
            return refuse("FETCH ... PERCENT");
        }
        limit = match &f.quantity {
            None => Some(1),
            Some(e) => constant(e, "FETCH")?,
        };
    }
    Ok((limit, offset))
}

/// A non-negative bigint constant; NULL means no limit (and offset 0), as in Postgres.
fn constant(e: &Expr, clause: &str) -> Result<Option<u64>, Unsupported> {
    match e {
        Expr::Nested(inner) => constant(inner, clause),
        Expr::Value(v) => match &v.value {
            Value::Number(s, _) => {
                match s.parse::<i64>().ok().and_then(|n| u64::try_from(n).ok()) {
                    Some(n) => Ok(Some(n)),
                    None => refuse(format!("{clause} {s}: not a non-negative bigint")),
                }
            }
            Value::Null => Ok(None),
            _ => refuse(format!("FETCH/LIMIT with a non-constant ({clause} {e})")),
        },
        _ => refuse(format!("FETCH/LIMIT with a non-constant ({clause} {e})")),
    }
}
