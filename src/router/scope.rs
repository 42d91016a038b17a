//! Which configured tables a statement reads or writes, in which SELECT scope, and what its
//! conditions say about their shard keys.
//!
//! A sqlparser `Visitor` records every table instance (`FROM users u`) in the scope of the
//! SELECT it appears in, and each scope's conditions (WHERE and JOIN ... ON). Conditions are
//! then read as constraints: `key = literal/$n`, `key IN (...)`, `key = ANY($n)`, `OR`s of
//! those, and `a.key = b.key` joins. Instances joined on their keys form one co-located group
//! (union-find); a group is routed by any key fixed on one of its members. Column references
//! are resolved conservatively: an unqualified column counts only when its scope has exactly
//! one table, because the proxy does not know the other tables' columns.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, InTarget, JoinConstraint, JoinOperator, ObjectName, Query, Select,
    Statement, TableFactor, Visitor,
};

use super::keys::{key_source, KeySource};
use crate::config::{KeyType, TableConfig};

/// A table as the router knows it from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableMeta {
    Sharded {
        scheme: String,
        key: String,
        key_type: KeyType,
    },
    Reference,
}

impl TableMeta {
    pub fn from_config(t: &TableConfig) -> Self {
        match t {
            TableConfig::Sharded {
                scheme,
                key,
                key_type,
            } => TableMeta::Sharded {
                scheme: scheme.clone(),
                key: key.clone(),
                key_type: *key_type,
            },
            TableConfig::Reference => TableMeta::Reference,
        }
    }
}

/// Looks a relation name up in the config's tables.
pub trait Tables {
    /// The config name and meta of `name`, when it is a configured table.
    fn lookup(&self, name: &ObjectName) -> Option<(String, TableMeta)>;
    /// Whether `name` is in pg_catalog or information_schema.
    fn is_system(&self, name: &ObjectName) -> bool;
}

/// One occurrence of a table in a statement.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The config table name, or the relation name as written for other tables.
    pub table: String,
    pub meta: Option<TableMeta>,
    pub alias: Option<String>,
    pub scope: usize,
}

#[derive(Debug, Default)]
struct Scope {
    parent: Option<usize>,
    /// Conditions, and whether each restricts the statement's rows (so a key it fixes decides
    /// the shard): WHERE of the statement, of derived tables and CTEs, ON of inner joins yes;
    /// ON of outer joins and anything inside an expression subquery (EXISTS, IN, scalar) no.
    conds: Vec<(Expr, bool)>,
}

/// Everything the visitor saw.
#[derive(Debug, Default)]
pub struct Walk {
    pub instances: Vec<Instance>,
    scopes: Vec<Scope>,
    stack: Vec<usize>,
    ctes: HashSet<String>,
    pub system: bool,
    /// Depth of expression subqueries (EXISTS, IN, scalar) being visited.
    expr_subqueries: usize,
    /// A construct found while visiting that must be refused (0A000).
    pub refusal: Option<String>,
}

/// A key constraint found in a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Constraint {
    Key(usize, Vec<KeySource>),
    Join(usize, usize),
}

pub fn ident_name(id: &sqlparser::ast::Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_ascii_lowercase()
    }
}

impl Walk {
    pub fn new() -> Self {
        Walk {
            scopes: vec![Scope::default()],
            stack: vec![0],
            ..Default::default()
        }
    }

    fn current(&self) -> usize {
        *self.stack.last().unwrap_or(&0)
    }

    pub fn sharded(&self) -> impl Iterator<Item = (usize, &Instance)> {
        self.instances
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i.meta, Some(TableMeta::Sharded { .. })))
    }

    /// Relations that are neither configured, system catalogs nor CTEs.
    pub fn unconfigured(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(|i| i.meta.is_none())
    }
}

/// The visitor: scopes are pushed per SELECT; every table factor joins the current scope.
pub struct Collector<'a, T: Tables> {
    pub walk: Walk,
    pub tables: &'a T,
    /// Set once the first statement was visited: later ones are nested.
    pub nested_statement: bool,
}

impl<T: Tables> Visitor for Collector<'_, T> {
    type Break = ();

    fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
        // UPDATE/DELETE conditions (top level or inside a data-modifying CTE) belong to the
        // scope their target table is visited in.
        let cond = match st {
            Statement::Update(u) => u.selection.as_ref(),
            Statement::Delete(d) => d.selection.as_ref(),
            _ => None,
        };
        if let Some(e) = cond {
            let scope = self.walk.current();
            let fixes = self.walk.expr_subqueries == 0;
            self.walk.scopes[scope].conds.push((e.clone(), fixes));
        }
        match st {
            Statement::Insert(ins) if self.walk.stack.len() > 1 || self.nested_statement => {
                if let sqlparser::ast::TableObject::TableName(n) = &ins.table {
                    if let Some((t, _)) = self.tables.lookup(n) {
                        self.walk.refusal.get_or_insert(format!(
                            "an INSERT into configured table \"{t}\" inside another statement (a data-modifying WITH)"
                        ));
                    }
                }
            }
            Statement::Update(u) => {
                let target_key = match &u.table.relation {
                    TableFactor::Table { name, .. } => match self.tables.lookup(name) {
                        Some((_, TableMeta::Sharded { key, .. })) => Some(key),
                        _ => None,
                    },
                    _ => None,
                };
                for a in &u.assignments {
                    let names: Vec<&ObjectName> = match &a.target {
                        sqlparser::ast::AssignmentTarget::ColumnName(n) => vec![n],
                        sqlparser::ast::AssignmentTarget::Tuple(v) => v.iter().collect(),
                    };
                    for n in names {
                        let col = n.0.last().and_then(|p| p.as_ident()).map(ident_name);
                        if let Some(c) = col {
                            if target_key.as_deref() == Some(c.as_str()) {
                                self.walk.refusal.get_or_insert(format!(
                                    "an UPDATE of the shard key column \"{c}\" (rows cannot move between shards yet)"
                                ));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        self.nested_statement = true;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if is_expr_subquery(e) {
            self.walk.expr_subqueries += 1;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if is_expr_subquery(e) {
            self.walk.expr_subqueries = self.walk.expr_subqueries.saturating_sub(1);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = ident_name(&cte.alias.name);
                let as_table = ObjectName::from(vec![sqlparser::ast::Ident::new(name.clone())]);
                if let Some((t, _)) = self.tables.lookup(&as_table) {
                    // The CTE would hide the real table in some places and not others.
                    self.walk.refusal.get_or_insert(format!(
                        "a WITH query named like configured table \"{t}\": rename it"
                    ));
                }
                self.walk.ctes.insert(name);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        let parent = self.walk.current();
        let mut scope = Scope {
            parent: Some(parent),
            conds: Vec::new(),
        };
        let restricting = self.walk.expr_subqueries == 0;
        for twj in &s.from {
            for j in &twj.joins {
                if let Some(JoinConstraint::On(e)) = join_constraint(&j.join_operator) {
                    let inner = matches!(
                        j.join_operator,
                        JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
                    );
                    scope.conds.push((e.clone(), restricting && inner));
                }
            }
        }
        if let Some(w) = &s.selection {
            scope.conds.push((w.clone(), restricting));
        }
        self.walk.scopes.push(scope);
        let id = self.walk.scopes.len() - 1;
        self.walk.stack.push(id);
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, _s: &Select) -> ControlFlow<()> {
        self.walk.stack.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name, alias, args, ..
        } = tf
        {
            if args.is_some() {
                return ControlFlow::Continue(()); // a table function
            }
            let scope = self.walk.current();
            let alias = alias.as_ref().map(|a| ident_name(&a.name));
            if self.tables.is_system(name) {
                self.walk.system = true;
            }
            let written = name
                .0
                .iter()
                .filter_map(|p| p.as_ident())
                .map(ident_name)
                .collect::<Vec<_>>()
                .join(".");
            if name.0.len() == 1 && self.walk.ctes.contains(&written) {
                return ControlFlow::Continue(());
            }
            let (table, meta) = match self.tables.lookup(name) {
                Some((t, m)) => (t, Some(m)),
                None if self.tables.is_system(name) => return ControlFlow::Continue(()),
                None => (written, None),
            };
            self.walk.instances.push(Instance {
                table,
                meta,
                alias,
                scope,
            });
        }
        ControlFlow::Continue(())
    }
}

/// A subquery used as a value or a test (scalar, EXISTS, IN): its conditions do not filter
/// the statement's rows.
fn is_expr_subquery(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Subquery(_)
            | Expr::Exists { .. }
            | Expr::In {
                target: InTarget::Subquery(_),
                ..
            }
    )
}

fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    use JoinOperator::*;
    match op {
        Join(c) | Inner(c) | Left(c) | LeftOuter(c) | Right(c) | RightOuter(c) | FullOuter(c)
        | CrossJoin(c) | Semi(c) | LeftSemi(c) | RightSemi(c) | Anti(c) | LeftAnti(c)
        | RightAnti(c) => Some(c),
        _ => None,
    }
}

/// Top-level AND conjuncts, parentheses removed.
fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Nested(inner) => conjuncts(inner, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        _ => out.push(e),
    }
}

impl Walk {
    /// The instance whose shard-key column `e` names, seen from `scope`.
    fn key_column(&self, e: &Expr, scope: usize) -> Option<usize> {
        let (qualifier, col) = match e {
            Expr::Nested(inner) => return self.key_column(inner, scope),
            Expr::Identifier(id) => (None, ident_name(id)),
            Expr::CompoundIdentifier(ids) if ids.len() >= 2 => (
                Some(ident_name(&ids[ids.len() - 2])),
                ident_name(&ids[ids.len() - 1]),
            ),
            _ => return None,
        };
        let mut s = Some(scope);
        while let Some(sc) = s {
            let here: Vec<usize> = (0..self.instances.len())
                .filter(|&i| self.instances[i].scope == sc)
                .collect();
            let found = match &qualifier {
                Some(q) => here.into_iter().find(|&i| {
                    let inst = &self.instances[i];
                    match &inst.alias {
                        Some(a) => a == q,
                        None => {
                            inst.table == *q || inst.table.rsplit('.').next() == Some(q.as_str())
                        }
                    }
                }),
                // Unqualified: only unambiguous when the scope has a single table.
                None if here.len() == 1 => Some(here[0]),
                None if here.is_empty() => None,
                None => return None,
            };
            if let Some(i) = found {
                return match &self.instances[i].meta {
                    Some(TableMeta::Sharded { key, .. }) if *key == col => Some(i),
                    _ => None,
                };
            }
            s = self.scopes[sc].parent;
        }
        None
    }

    fn key_type(&self, i: usize) -> KeyType {
        match &self.instances[i].meta {
            Some(TableMeta::Sharded { key_type, .. }) => *key_type,
            _ => KeyType::Bigint,
        }
    }

    fn constraint(&self, e: &Expr, scope: usize) -> Option<Constraint> {
        match e {
            Expr::Nested(inner) => self.constraint(inner, scope),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => match (self.key_column(left, scope), self.key_column(right, scope)) {
                (Some(a), Some(b)) => Some(Constraint::Join(a, b)),
                (Some(a), None) => {
                    key_source(right, self.key_type(a)).map(|k| Constraint::Key(a, vec![k]))
                }
                (None, Some(b)) => {
                    key_source(left, self.key_type(b)).map(|k| Constraint::Key(b, vec![k]))
                }
                (None, None) => None,
            },
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Or,
                right,
            } => match (
                self.constraint(left, scope)?,
                self.constraint(right, scope)?,
            ) {
                (Constraint::Key(a, mut ka), Constraint::Key(b, kb)) if a == b => {
                    ka.extend(kb);
                    Some(Constraint::Key(a, ka))
                }
                _ => None,
            },
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated: false,
                ..
            } => {
                let i = self.key_column(expr, scope)?;
                let kt = self.key_type(i);
                let keys = list
                    .iter()
                    .map(|x| key_source(x, kt))
                    .collect::<Option<Vec<_>>>()?;
                Some(Constraint::Key(i, keys))
            }
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } => {
                let i = self.key_column(left, scope)?;
                let kt = self.key_type(i);
                let mut r: &Expr = right;
                while let Expr::Nested(x) | Expr::Cast { expr: x, .. } = r {
                    r = x;
                }
                match r {
                    Expr::Array(arr) => {
                        let keys = arr
                            .elem
                            .iter()
                            .map(|x| key_source(x, kt))
                            .collect::<Option<Vec<_>>>()?;
                        Some(Constraint::Key(i, keys))
                    }
                    _ => match key_source(r, kt)? {
                        KeySource::Param(n) => {
                            Some(Constraint::Key(i, vec![KeySource::AnyParam(n)]))
                        }
                        _ => None,
                    },
                }
            }
            _ => None,
        }
    }

    /// Group the sharded instances by key-equality joins; each group carries the keys fixed on
    /// any of its members (None: no key, the group spans every shard of its scheme).
    pub fn groups(&self) -> Vec<(Vec<usize>, Option<Vec<KeySource>>)> {
        let n = self.instances.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while p[r] != r {
                r = p[r];
            }
            p[x] = r;
            r
        }
        let mut keys: Vec<Option<Vec<KeySource>>> = vec![None; n];
        for (sc, scope) in self.scopes.iter().enumerate() {
            for (cond, fixes) in &scope.conds {
                let mut parts = Vec::new();
                conjuncts(cond, &mut parts);
                for c in parts {
                    match self.constraint(c, sc) {
                        Some(Constraint::Join(a, b)) => {
                            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                            parent[ra] = rb;
                        }
                        Some(Constraint::Key(i, k)) if *fixes && keys[i].is_none() => {
                            keys[i] = Some(k)
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut groups: Vec<(Vec<usize>, Option<Vec<KeySource>>)> = Vec::new();
        let mut root_of = std::collections::HashMap::new();
        for (i, _) in self.sharded() {
            let r = find(&mut parent, i);
            let g = *root_of.entry(r).or_insert_with(|| {
                groups.push((Vec::new(), None));
                groups.len() - 1
            });
            groups[g].0.push(i);
            if groups[g].1.is_none() {
                groups[g].1 = keys[i].clone();
            }
        }
        groups
    }
}
