//! Statement text -> [`Plan`]: what a statement touches and what fixes its shard, before any
//! parameter is known. Plans depend only on the text and the config's tables, so they are
//! cached by text (`Router`), and a prepared statement is analysed once.
//!
//! Does not pick shards (that needs parameters and the bucket map: `place`), and never
//! guesses: anything it cannot prove single-shard either fans out or is refused.

use sqlparser::ast::{
    Distinct, Expr, FunctionArguments, GroupByExpr, ObjectName, ObjectType, Query, SelectItem,
    SetExpr, Statement, TableObject, Visit,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::classify::{self, Hint, Kind};
use super::keys::{key_source, KeySource};
use super::scope::{ident_name, Collector, TableMeta, Tables, Walk};
use crate::config::KeyType;

/// What a statement needs, independent of parameter values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No configured table: the default shard (`why` says which rule).
    Default(&'static str),
    /// Names no table at all (`SELECT 1`, `SELECT now()`): any shard answers alike.
    Anywhere,
    /// Only reference tables (and no sharded one).
    Reference { write: bool, table: String },
    /// Sharded tables of one scheme, co-located. `keys` None: no key, every shard of the
    /// scheme. `merge`: what a fan-out of this statement would need merged.
    Sharded {
        scheme: String,
        table: String,
        key_type: KeyType,
        keys: Option<Vec<KeySource>>,
        write: bool,
        merge: Option<String>,
        /// Several co-located groups, each with fixed keys: only valid when they all land on
        /// one shard.
        must_be_single: bool,
    },
    /// DDL on a configured table: every shard, atomically.
    Broadcast { what: String },
    /// Maintenance (VACUUM, ANALYZE ...): every shard, no transaction.
    Maintenance,
    /// Transaction control and session commands: handled by the session.
    Control(Kind),
    /// A routing hint overrides everything.
    Hinted(Hint),
    /// `COPY ... FROM STDIN` into a sharded (`scheme` Some) or reference table: the session
    /// splits the rows by key (or sends every row everywhere).
    CopyIn(CopySpec),
    /// Cannot run correctly across shards (0A000); the message names the construct.
    Refuse(String),
}

/// What the session needs to split COPY data rows by shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    pub table: String,
    /// The table's scheme; None for a reference table (every row to every shard).
    pub scheme: Option<String>,
    pub key_type: KeyType,
    /// Position of the key among the COPY's columns.
    pub key_pos: usize,
    pub csv: bool,
    pub delimiter: u8,
    pub quote: u8,
    pub escape: u8,
    pub header: bool,
}

/// Analyse one statement (the text of one statement, as `split_statements` gives it).
pub fn analyze<T: Tables>(sql: &str, tables: &T) -> Plan {
    let (rest, hint) = classify::strip_leading(sql);
    if let Some(h) = hint {
        return Plan::Hinted(h);
    }
    match classify::kind(rest) {
        Kind::Parse => {}
        Kind::Empty => return Plan::Anywhere,
        Kind::Maintenance => {
            // VACUUM/ANALYZE of configured tables, or of everything, runs on every shard;
            // of unconfigured tables, where they live.
            return if named_table(rest, tables).is_some() || names_nothing(rest) {
                Plan::Maintenance
            } else {
                Plan::Default("maintenance of a table that is not configured")
            };
        }
        Kind::Opaque => {
            return match named_table(rest, tables) {
                Some(t) => Plan::Refuse(format!(
                    "shardgate cannot tell where this statement runs, and it names table \"{t}\": add a hint such as /* shardgate: shard=s0 */"
                )),
                None => Plan::Default("statement names no configured table"),
            }
        }
        k => return Plan::Control(k),
    }
    let stmts = match Parser::parse_sql(&PostgreSqlDialect {}, rest) {
        Ok(s) => s,
        Err(e) => {
            return match named_table(rest, tables) {
                Some(t) => Plan::Refuse(format!(
                    "shardgate cannot parse this statement, which names table \"{t}\": {e}"
                )),
                None => Plan::Default("unparsed statement names no configured table"),
            }
        }
    };
    match stmts.as_slice() {
        [one] => plan_statement(one, tables),
        _ => Plan::Refuse("several statements where one was expected".into()),
    }
}

/// A maintenance command with options only (`VACUUM (VERBOSE) ANALYZE`, `CHECKPOINT`).
fn names_nothing(sql: &str) -> bool {
    let mut depth = 0;
    let mut words = Vec::new();
    for w in sql.split_inclusive(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ';') {
        let opens = w.ends_with('(');
        let closes = w.ends_with(')');
        let word =
            w.trim_end_matches(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ';');
        if depth == 0 && !word.is_empty() {
            words.push(word.to_ascii_lowercase());
        }
        if opens {
            depth += 1;
        }
        if closes && depth > 0 {
            depth -= 1;
        }
    }
    words.iter().skip(1).all(|w| {
        matches!(
            w.as_str(),
            "full"
                | "freeze"
                | "verbose"
                | "analyze"
                | "analyse"
                | "database"
                | "system"
                | "concurrently"
        )
    })
}

/// Whether the text names a configured table anywhere (identifier tokens, lowercased).
fn named_table<T: Tables>(sql: &str, tables: &T) -> Option<String> {
    sql.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .filter(|w| !w.is_empty())
        .find_map(|w| {
            let name = ObjectName::from(
                w.split('.')
                    .map(|p| sqlparser::ast::Ident::new(p.to_ascii_lowercase()))
                    .collect::<Vec<_>>(),
            );
            tables.lookup(&name).map(|(t, _)| t)
        })
}

fn collect<T: Tables, V: Visit + 'static>(node: &V, tables: &T) -> Walk {
    // Any statement met while visiting a query is nested in it (a data-modifying WITH);
    // visiting a statement, the first one met is that statement itself.
    let is_statement = std::any::TypeId::of::<V>() == std::any::TypeId::of::<Statement>();
    let mut c = Collector {
        walk: Walk::new(),
        tables,
        nested_statement: !is_statement,
    };
    let _ = node.visit(&mut c);
    c.walk
}

fn plan_statement<T: Tables>(stmt: &Statement, tables: &T) -> Plan {
    match stmt {
        Statement::Query(q) => {
            let write = is_data_modifying(q);
            let walk = collect(q.as_ref(), tables);
            plan_from_walk(&walk, write, merge_need(q))
        }
        // The visitor refuses an UPDATE that assigns its target's shard key (scope.rs).
        Statement::Update(_) | Statement::Delete(_) => {
            let walk = collect(stmt, tables);
            plan_from_walk(&walk, true, None)
        }
        Statement::Insert(ins) => plan_insert(ins, tables),
        Statement::Copy {
            source,
            to,
            target,
            options,
            ..
        } => match source {
            sqlparser::ast::CopySource::Query(q) => {
                // Concatenated like any read; one that needs a merge is refused by the session
                // (the merge rewrites SELECTs, not COPY).
                let walk = collect(q.as_ref(), tables);
                match plan_from_walk(&walk, false, merge_need(q)) {
                    Plan::Sharded { merge: Some(m), .. } => Plan::Refuse(format!(
                        "COPY (query) TO STDOUT over several shards with {m} (rows cannot be merged inside COPY)"
                    )),
                    other => other,
                }
            }
            sqlparser::ast::CopySource::Table {
                table_name,
                columns,
            } => match tables.lookup(table_name) {
                None => Plan::Default("table is not configured"),
                Some((t, TableMeta::Reference)) if *to => Plan::Reference {
                    write: false,
                    table: t,
                },
                Some((t, _)) if *to && copy_header(options) => Plan::Refuse(format!(
                    "COPY sharded table \"{t}\" TO STDOUT with HEADER (each shard would send one)"
                )),
                Some((
                    t,
                    TableMeta::Sharded {
                        scheme, key_type, ..
                    },
                )) if *to => Plan::Sharded {
                    scheme,
                    table: t,
                    key_type,
                    keys: None,
                    write: false,
                    merge: None,
                    must_be_single: false,
                },
                Some((t, meta)) => copy_in(t, meta, columns, target, options),
            },
        },
        Statement::Explain { statement, .. } => match plan_statement(statement, tables) {
            p @ (Plan::Default(_) | Plan::Anywhere | Plan::Reference { .. } | Plan::Refuse(_)) => p,
            Plan::Sharded {
                scheme,
                table,
                key_type,
                keys: Some(k),
                must_be_single,
                ..
            } => Plan::Sharded {
                scheme,
                table,
                key_type,
                keys: Some(k),
                write: false,
                merge: Some("EXPLAIN".into()),
                must_be_single,
            },
            _ => Plan::Refuse("EXPLAIN of a statement that runs on several shards".into()),
        },
        Statement::CreateTable(ct) => {
            if let Some(q) = &ct.query {
                let walk = collect(q.as_ref(), tables);
                if let Some(i) = walk.instances.iter().find(|i| i.meta.is_some()) {
                    return Plan::Refuse(format!(
                        "CREATE TABLE ... AS reading configured table \"{}\" (its rows live on several shards)",
                        i.table
                    ));
                }
            }
            ddl(&[&ct.name], tables, "CREATE TABLE")
        }
        Statement::CreateIndex(ci) => ddl(&[&ci.table_name], tables, "CREATE INDEX"),
        Statement::AlterTable(at) => ddl(&[&at.name], tables, "ALTER TABLE"),
        Statement::Truncate(t) => {
            let names: Vec<&ObjectName> = t.table_names.iter().map(|n| &n.name).collect();
            ddl(&names, tables, "TRUNCATE")
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => ddl(&names.iter().collect::<Vec<_>>(), tables, "DROP TABLE"),
        Statement::Drop {
            object_type: ObjectType::Index,
            ..
        } => Plan::Broadcast {
            what: "DROP INDEX (the index may belong to a sharded table)".into(),
        },
        Statement::StartTransaction { .. } => Plan::Control(Kind::Begin),
        Statement::Commit { .. } => Plan::Control(Kind::Commit),
        Statement::Rollback {
            savepoint: None, ..
        } => Plan::Control(Kind::Rollback),
        Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => Plan::Control(Kind::Savepoint),
        other => {
            // Views, functions, grants ...: whatever they name decides.
            let mut found = None;
            let _ = sqlparser::ast::visit_relations(other, |r| {
                if let Some((t, _)) = tables.lookup(r) {
                    found = Some(t);
                    return std::ops::ControlFlow::Break(());
                }
                std::ops::ControlFlow::Continue(())
            });
            match found {
                Some(t) => Plan::Broadcast {
                    what: format!("a statement on configured table \"{t}\""),
                },
                None => Plan::Default("statement names no configured table"),
            }
        }
    }
}

fn ddl<T: Tables>(names: &[&ObjectName], tables: &T, what: &str) -> Plan {
    let configured: Vec<String> = names
        .iter()
        .filter_map(|n| tables.lookup(n).map(|(t, _)| t))
        .collect();
    match configured.len() {
        0 => Plan::Default("DDL on a table that is not configured"),
        n if n == names.len() => Plan::Broadcast {
            what: format!("{what} on configured table \"{}\"", configured[0]),
        },
        _ => Plan::Refuse(format!(
            "{what} mixing configured and unconfigured tables: run them separately"
        )),
    }
}

fn is_data_modifying(q: &Query) -> bool {
    let body_writes = |b: &SetExpr| {
        matches!(
            b,
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        )
    };
    if body_writes(&q.body) {
        return true;
    }
    if let SetExpr::Select(s) = q.body.as_ref() {
        if s.into.is_some() {
            return true;
        }
    }
    q.with
        .as_ref()
        .is_some_and(|w| w.cte_tables.iter().any(|c| is_data_modifying(&c.query)))
}

/// The first construct of the top-level query that a fan-out would have to merge.
fn merge_need(q: &Query) -> Option<String> {
    if q.order_by.is_some() {
        return Some("ORDER BY".into());
    }
    if q.limit_clause.is_some() || q.fetch.is_some() {
        return Some("LIMIT/OFFSET".into());
    }
    match q.body.as_ref() {
        SetExpr::SetOperation { op, .. } => Some(format!("{op}")),
        SetExpr::Query(inner) => merge_need(inner),
        SetExpr::Select(s) => {
            if let Some(Distinct::Distinct | Distinct::On(_)) = &s.distinct {
                return Some("DISTINCT".into());
            }
            if matches!(&s.group_by, GroupByExpr::Expressions(v, _) if !v.is_empty())
                || matches!(&s.group_by, GroupByExpr::All(_))
            {
                return Some("GROUP BY".into());
            }
            if s.having.is_some() {
                return Some("HAVING".into());
            }
            for item in &s.projection {
                let e = match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                    _ => continue,
                };
                if let Some(what) = aggregate_or_window(e) {
                    return Some(what);
                }
            }
            None
        }
        _ => None,
    }
}

/// Built-in aggregate functions, by name: a call to one makes a query an aggregate (also
/// used by `rewrite`, which merges a few of them and refuses the rest by name).
pub(crate) const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "bool_and",
    "bool_or",
    "every",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "xmlagg",
    "range_agg",
    "range_intersect_agg",
];

fn aggregate_or_window(e: &Expr) -> Option<String> {
    let mut found = None;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        if let Expr::Function(f) = x {
            let name = f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(ident_name)
                .unwrap_or_default();
            if f.over.is_some() {
                found = Some("window function".to_string());
                return std::ops::ControlFlow::Break(());
            }
            if AGGREGATES.contains(&name.as_str()) && !matches!(f.args, FunctionArguments::None) {
                found = Some(format!("aggregate {name}()"));
                return std::ops::ControlFlow::Break(());
            }
        }
        if matches!(x, Expr::Subquery(_)) {
            // A scalar subquery is evaluated per shard; its own aggregates are local.
            return std::ops::ControlFlow::Continue(());
        }
        std::ops::ControlFlow::Continue(())
    });
    found
}

/// Turn what the walker found into a plan.
fn plan_from_walk(walk: &Walk, write: bool, merge: Option<String>) -> Plan {
    if let Some(r) = &walk.refusal {
        return Plan::Refuse(r.clone());
    }
    let sharded: Vec<_> = walk.sharded().collect();
    let references: Vec<_> = walk
        .instances
        .iter()
        .filter(|i| matches!(i.meta, Some(TableMeta::Reference)))
        .collect();
    if let Some(other) = walk.unconfigured().next() {
        if let Some((_, s)) = sharded.first() {
            return Plan::Refuse(format!(
                "table \"{}\" is not configured (it lives on the default shard only) and cannot be combined with sharded table \"{}\"",
                other.table, s.table
            ));
        }
        if let Some(r) = references.first() {
            if write && matches!(r.meta, Some(TableMeta::Reference)) {
                return Plan::Refuse(format!(
                    "a write combining reference table \"{}\" with unconfigured table \"{}\"",
                    r.table, other.table
                ));
            }
        }
        return Plan::Default("statement names no sharded table");
    }
    // A write whose target is a reference table must reach every shard; joined with a
    // sharded table it would be routed like the sharded one.
    if write {
        if let (Some(target), Some((_, s))) = (walk.instances.first(), sharded.first()) {
            if matches!(target.meta, Some(TableMeta::Reference)) {
                return Plan::Refuse(format!(
                    "a write to reference table \"{}\" that also reads sharded table \"{}\"",
                    target.table, s.table
                ));
            }
        }
    }
    let Some((_, first)) = sharded.first() else {
        return match references.first() {
            Some(r) => Plan::Reference {
                write,
                table: r.table.clone(),
            },
            None if walk.system => Plan::Default("system catalog query"),
            None if write => Plan::Default("statement names no configured table"),
            None => Plan::Anywhere,
        };
    };
    let Some(TableMeta::Sharded {
        scheme, key_type, ..
    }) = &first.meta
    else {
        return Plan::Refuse("internal: sharded instance without meta".into());
    };
    for (_, inst) in &sharded {
        if let Some(TableMeta::Sharded { scheme: s, .. }) = &inst.meta {
            if s != scheme {
                return Plan::Refuse(format!(
                    "a join of \"{}\" (scheme {scheme}) with \"{}\" (scheme {s}): tables of different schemes are not co-located",
                    first.table, inst.table
                ));
            }
        }
    }
    let groups = walk.groups();
    let (keys, must_be_single) = match groups.as_slice() {
        [(_, k)] => (k.clone(), false),
        many if many.iter().all(|(_, k)| k.is_some()) => (
            Some(many.iter().flat_map(|(_, k)| k.clone().unwrap_or_default()).collect()),
            true,
        ),
        _ => {
            return Plan::Refuse(format!(
                "a join or subquery across shards: tables of scheme {scheme} must be joined on their shard keys (or each have its key fixed)"
            ))
        }
    };
    Plan::Sharded {
        scheme: scheme.clone(),
        table: first.table.clone(),
        key_type: *key_type,
        keys,
        write,
        merge,
        must_be_single,
    }
}

fn plan_insert<T: Tables>(ins: &sqlparser::ast::Insert, tables: &T) -> Plan {
    let TableObject::TableName(name) = &ins.table else {
        return Plan::Default("INSERT into a table function");
    };
    let Some((table, meta)) = tables.lookup(name) else {
        // The source may still read sharded tables: that would be a cross-shard statement.
        if let Some(src) = &ins.source {
            let walk = collect(src.as_ref(), tables);
            if walk.sharded().next().is_some() || walk.instances.iter().any(|i| i.meta.is_some()) {
                return Plan::Refuse(format!(
                    "INSERT into unconfigured table \"{}\" reading configured tables",
                    name
                ));
            }
        }
        return Plan::Default("INSERT into a table that is not configured");
    };
    if let Some(src) = &ins.source {
        let walk = collect(src.as_ref(), tables);
        if walk.instances.iter().any(|i| i.meta.is_some()) {
            return Plan::Refuse(format!(
                "INSERT into \"{table}\" reading configured tables (INSERT ... SELECT across shards)"
            ));
        }
    }
    let TableMeta::Sharded {
        scheme,
        key,
        key_type,
    } = meta
    else {
        return Plan::Reference { write: true, table };
    };
    if let Some(sqlparser::ast::OnInsert::OnConflict(oc)) = &ins.on {
        if let sqlparser::ast::OnConflictAction::DoUpdate(du) = &oc.action {
            for a in &du.assignments {
                if let sqlparser::ast::AssignmentTarget::ColumnName(n) = &a.target {
                    let col = n.0.last().and_then(|p| p.as_ident()).map(ident_name);
                    if col.as_deref() == Some(key.as_str()) {
                        return Plan::Refuse(format!(
                            "ON CONFLICT DO UPDATE of the shard key \"{key}\" of \"{table}\" (rows cannot move between shards yet)"
                        ));
                    }
                }
            }
        }
    }
    let Some(src) = &ins.source else {
        return Plan::Refuse(format!(
            "INSERT into sharded table \"{table}\" without VALUES"
        ));
    };
    let SetExpr::Values(values) = src.body.as_ref() else {
        return Plan::Refuse(format!(
            "INSERT ... SELECT into sharded table \"{table}\" (rows cannot be split across shards yet)"
        ));
    };
    let cols: Vec<String> = ins
        .columns
        .iter()
        .filter_map(|c| c.0.last().and_then(|p| p.as_ident()).map(ident_name))
        .collect();
    let Some(pos) = cols.iter().position(|c| *c == key) else {
        return Plan::Refuse(if cols.is_empty() {
            format!("INSERT into sharded table \"{table}\" must name its columns, including the shard key \"{key}\"")
        } else {
            format!(
                "INSERT into sharded table \"{table}\" without a value for the shard key \"{key}\""
            )
        });
    };
    let mut keys = Vec::with_capacity(values.rows.len());
    for (n, row) in values.rows.iter().enumerate() {
        match row.content.get(pos).and_then(|e| key_source(e, key_type)) {
            Some(k) => keys.push(k),
            None => {
                return Plan::Refuse(format!(
                    "row {} of the INSERT into \"{table}\" has no literal or parameter value for the shard key \"{key}\"",
                    n + 1
                ))
            }
        }
    }
    Plan::Sharded {
        scheme,
        table,
        key_type,
        keys: Some(keys),
        write: true,
        merge: None,
        must_be_single: false,
    }
}

fn copy_header(options: &[sqlparser::ast::CopyOption]) -> bool {
    options
        .iter()
        .any(|o| matches!(o, sqlparser::ast::CopyOption::Header(true)))
}

/// `COPY t (cols) FROM STDIN [WITH (...)]` into a configured table.
fn copy_in(
    table: String,
    meta: TableMeta,
    columns: &[sqlparser::ast::Ident],
    target: &sqlparser::ast::CopyTarget,
    options: &[sqlparser::ast::CopyOption],
) -> Plan {
    use sqlparser::ast::CopyOption;
    if !matches!(target, sqlparser::ast::CopyTarget::Stdin) {
        return Plan::Refuse(format!(
            "COPY into configured table \"{table}\" from a server-side file or program (use FROM STDIN)"
        ));
    }
    let mut spec = CopySpec {
        table: table.clone(),
        scheme: None,
        key_type: KeyType::Bigint,
        key_pos: 0,
        csv: false,
        delimiter: b'\t',
        quote: b'"',
        escape: b'"',
        header: false,
    };
    let mut escape_set = false;
    for o in options {
        match o {
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("csv") => {
                spec.csv = true;
                if spec.delimiter == b'\t' {
                    spec.delimiter = b',';
                }
            }
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("text") => {}
            CopyOption::Format(f) => {
                return Plan::Refuse(format!("COPY FORMAT {} into a configured table", f.value))
            }
            CopyOption::Delimiter(c) if c.is_ascii() => spec.delimiter = *c as u8,
            CopyOption::Quote(c) if c.is_ascii() => spec.quote = *c as u8,
            CopyOption::Escape(c) if c.is_ascii() => {
                spec.escape = *c as u8;
                escape_set = true;
            }
            CopyOption::Header(h) => spec.header = *h,
            CopyOption::Null(_)
            | CopyOption::ForceNotNull(_)
            | CopyOption::ForceNull(_)
            | CopyOption::Freeze(_) => {}
            other => return Plan::Refuse(format!("COPY option {other} into a configured table")),
        }
    }
    if !escape_set {
        spec.escape = spec.quote;
    }
    if let TableMeta::Sharded {
        scheme,
        key,
        key_type,
    } = meta
    {
        let names: Vec<String> = columns.iter().map(ident_name).collect();
        let Some(pos) = names.iter().position(|c| *c == key) else {
            return Plan::Refuse(if names.is_empty() {
                format!("COPY into sharded table \"{table}\" must name its columns, including the shard key \"{key}\"")
            } else {
                format!("COPY into sharded table \"{table}\" without the shard key \"{key}\"")
            });
        };
        spec.scheme = Some(scheme);
        spec.key_type = key_type;
        spec.key_pos = pos;
    }
    Plan::CopyIn(spec)
}
