//! The shard query's columns: the client's select list, kept verbatim and visible, and the
//! hidden helper columns appended after it; how an ORDER BY, GROUP BY or HAVING operand maps
//! to one of them.
//!
//! Does not decide which clauses may be combined (the parent module), which calls are
//! aggregates (`aggregates`) or how HAVING becomes a predicate (`having`).

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Expr, Function, Ident, ObjectName, ObjectNamePart,
    SelectItem, Value,
};

use super::aggregates::{aggregate_call, contains_aggregate, has_subquery, Agg};
use super::{refuse, unnest, Unsupported};
use crate::merge::{AggKind, Output};
use crate::router::scope::ident_name;

/// Where an ORDER BY or GROUP BY item points.
pub(super) enum Target {
    /// An existing shard column.
    Column(usize),
    /// An expression the shards must compute in a hidden column.
    Expr(Box<Expr>),
}

/// One select-list item.
struct Item {
    /// None for `*` and `t.*`.
    expr: Option<Expr>,
    /// The normalised text of `expr` ([`key`]), to recognise the same expression elsewhere.
    key: String,
    /// The output column name, for ORDER BY / GROUP BY by name.
    name: Option<String>,
}

struct Hidden {
    key: String,
    item: SelectItem,
    output: Output,
}

/// The shard columns being built.
pub(super) struct Columns {
    items: Vec<Item>,
    /// `*` in the select list: no visible column has a known index, so the plan refers to
    /// hidden columns only, numbered from 0 (see `merge::plan`).
    wildcard: bool,
    grouped: bool,
    visible: Vec<Output>,
    hidden: Vec<Hidden>,
}

/// The finished columns, for the shard query and the plan.
pub(super) struct Built {
    pub visible: usize,
    pub hidden: usize,
    pub outputs: Vec<Output>,
    pub hidden_items: Vec<SelectItem>,
}

impl Columns {
    pub fn new(projection: &[SelectItem], grouped: bool) -> Result<Columns, Unsupported> {
        let mut items = Vec::with_capacity(projection.len());
        for item in projection {
            items.push(match item {
                SelectItem::UnnamedExpr(e) => Item {
                    key: key(e),
                    name: expr_name(e),
                    expr: Some(e.clone()),
                },
                SelectItem::ExprWithAlias { expr, alias } => Item {
                    key: key(expr),
                    name: Some(ident_name(alias)),
                    expr: Some(expr.clone()),
                },
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => Item {
                    expr: None,
                    key: String::new(),
                    name: None,
                },
                SelectItem::ExprWithAliases { .. } => {
                    return refuse("a select item with several aliases")
                }
            });
        }
        let wildcard = items.iter().any(|i| i.expr.is_none());
        if wildcard && grouped {
            return refuse("* in the select list of a query with aggregates or GROUP BY");
        }
        let mut cols = Columns {
            items,
            wildcard,
            grouped,
            visible: Vec::new(),
            hidden: Vec::new(),
        };
        if !wildcard {
            for i in 0..cols.items.len() {
                let Some(e) = cols.items[i].expr.clone() else {
                    continue;
                };
                let output = cols.visible_output(i, &e)?;
                cols.visible.push(output);
            }
        }
        Ok(cols)
    }

    fn visible_output(&mut self, i: usize, e: &Expr) -> Result<Output, Unsupported> {
        match aggregate_call(e)? {
            Some((Agg::Kind(kind), _)) => Ok(Output::Agg { kind, input: i }),
            Some((Agg::Avg, f)) => {
                let (sum, count) = self.avg_parts(f)?;
                Ok(Output::Avg { sum, count })
            }
            None => {
                self.check_plain(e, "the select list")?;
                Ok(Output::Column(i))
            }
        }
    }

    /// A non-aggregate expression the merge passes through: no aggregate may hide inside it,
    /// and in a grouped query no subquery (it could read the group's aggregates per shard).
    fn check_plain(&self, e: &Expr, place: &str) -> Result<(), Unsupported> {
        if contains_aggregate(e).is_some() {
            return refuse(format!("an aggregate inside an expression ({e})"));
        }
        if self.grouped && has_subquery(e) {
            return refuse(format!("a subquery in {place} of a grouped query"));
        }
        Ok(())
    }

    pub fn wildcard(&self) -> bool {
        self.wildcard
    }

    fn base(&self) -> usize {
        if self.wildcard {
            0
        } else {
            self.items.len()
        }
    }

    pub fn is_visible(&self, i: usize) -> bool {
        !self.wildcard && i < self.items.len()
    }

    /// Whether shard column `i` holds an aggregate.
    pub fn is_aggregate(&self, i: usize) -> bool {
        let output = if self.is_visible(i) {
            self.visible.get(i)
        } else {
            i.checked_sub(self.base())
                .and_then(|k| self.hidden.get(k))
                .map(|h| &h.output)
        };
        matches!(output, Some(Output::Agg { .. } | Output::Avg { .. }))
    }

    /// The shard column already computing this expression.
    fn find(&self, key: &str) -> Option<usize> {
        if !self.wildcard {
            if let Some(i) = self
                .items
                .iter()
                .position(|it| it.expr.is_some() && it.key == key)
            {
                return Some(i);
            }
        }
        let k = self.hidden.iter().position(|h| h.key == key)?;
        Some(self.base() + k)
    }

    fn push_hidden(&mut self, e: &Expr, role: &str, output: Output) -> usize {
        let index = self.base() + self.hidden.len();
        self.hidden.push(Hidden {
            key: key(e),
            item: SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: Ident::new(format!("__sg_{role}{}", self.hidden.len())),
            },
            output,
        });
        index
    }

    /// The hidden sum(x) and count(x) behind avg(x) (with the same FILTER), reusing columns
    /// that already compute them.
    fn avg_parts(&mut self, avg: &Function) -> Result<(usize, usize), Unsupported> {
        let part = |name: &str| {
            Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new(name)]),
                ..avg.clone()
            })
        };
        let sum = self.aggregate(&part("sum"), Agg::Kind(AggKind::Sum), avg, "sum")?;
        let count = self.aggregate(&part("count"), Agg::Kind(AggKind::Count), avg, "cnt")?;
        Ok((sum, count))
    }

    /// The column of an aggregate, added hidden when the select list does not compute it.
    fn aggregate(
        &mut self,
        e: &Expr,
        agg: Agg,
        f: &Function,
        role: &str,
    ) -> Result<usize, Unsupported> {
        if let Some(i) = self.find(&key(e)) {
            return Ok(i);
        }
        let index = self.base() + self.hidden.len();
        match agg {
            Agg::Kind(kind) => Ok(self.push_hidden(e, role, Output::Agg { kind, input: index })),
            Agg::Avg => {
                let pos = self.hidden.len();
                // A placeholder until the sum and count columns exist.
                self.push_hidden(e, role, Output::Column(index));
                let (sum, count) = self.avg_parts(f)?;
                if let Some(h) = self.hidden.get_mut(pos) {
                    h.output = Output::Avg { sum, count };
                }
                Ok(index)
            }
        }
    }

    /// The column of a HAVING or ORDER BY operand: an existing column computing it, else a
    /// hidden aggregate or a hidden copy of the expression.
    pub fn operand(&mut self, e: &Expr, role: &str) -> Result<usize, Unsupported> {
        if let Some(i) = self.find(&key(e)) {
            return Ok(i);
        }
        if let Some((agg, f)) = aggregate_call(e)? {
            return self.aggregate(e, agg, f, role);
        }
        self.check_plain(e, "HAVING or ORDER BY")?;
        let index = self.base() + self.hidden.len();
        Ok(self.push_hidden(e, role, Output::Column(index)))
    }

    /// The column of a GROUP BY expression that is not in the select list.
    pub fn group_key(&mut self, e: &Expr) -> Result<usize, Unsupported> {
        if aggregate_call(e)?.is_some() || contains_aggregate(e).is_some() {
            return refuse(format!("GROUP BY an aggregate ({e})"));
        }
        self.operand(e, "g")
    }

    /// What an ORDER BY or GROUP BY item means: a position (`2`), an output name (an alias or
    /// a column's name; for GROUP BY, not when the aliased expression uses an input column
    /// of that name, which Postgres prefers), or an expression.
    pub fn resolve(&self, e: &Expr, clause: &str, group: bool) -> Result<Target, Unsupported> {
        if let Expr::Value(v) = e {
            if let Value::Number(s, _) = &v.value {
                let Ok(n) = s.parse::<usize>() else {
                    return refuse(format!("{clause} {s} (not a column position)"));
                };
                return self.position(n, clause);
            }
        }
        if let Expr::Identifier(id) = e {
            let name = ident_name(id);
            let mut matches = self
                .items
                .iter()
                .enumerate()
                .filter(|(_, it)| it.name.as_deref() == Some(name.as_str()));
            if let Some((first, item)) = matches.next() {
                if matches.any(|(_, other)| other.key != item.key) {
                    return refuse(format!("{clause} {name} is ambiguous"));
                }
                let shadows = group
                    && item.key != key(e)
                    && item.expr.as_ref().is_some_and(|x| references(x, &name));
                if !shadows {
                    return Ok(self.item_target(first));
                }
            }
        }
        Ok(match self.find(&key(e)) {
            Some(i) => Target::Column(i),
            None => Target::Expr(Box::new(e.clone())),
        })
    }

    fn position(&self, n: usize, clause: &str) -> Result<Target, Unsupported> {
        let upto = &self.items[..n.min(self.items.len())];
        if upto.iter().any(|it| it.expr.is_none()) {
            return refuse(format!("{clause} {n} with * in the select list"));
        }
        match n.checked_sub(1).filter(|&i| i < self.items.len()) {
            Some(i) => Ok(self.item_target(i)),
            None => refuse(format!("{clause} position {n} is not in the select list")),
        }
    }

    fn item_target(&self, i: usize) -> Target {
        match (&self.items[i].expr, self.wildcard) {
            (Some(e), true) => Target::Expr(Box::new(e.clone())),
            _ => Target::Column(i),
        }
    }

    pub fn finish(self) -> Built {
        let base = self.base();
        let hidden = self.hidden.len();
        let mut outputs = self.visible;
        let mut hidden_items = Vec::with_capacity(hidden);
        for h in self.hidden {
            outputs.push(h.output);
            hidden_items.push(h.item);
        }
        Built {
            visible: base,
            hidden,
            outputs,
            hidden_items,
        }
    }
}

/// The expression of a select item (None for wildcards).
pub(super) fn item_expr(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(e)
        | SelectItem::ExprWithAlias { expr: e, .. }
        | SelectItem::ExprWithAliases { expr: e, .. } => Some(e),
        _ => None,
    }
}

/// Whether a select item holds an aggregate (making the query a grouped one).
pub(super) fn item_aggregate(item: &SelectItem) -> bool {
    item_expr(item).is_some_and(|e| contains_aggregate(e).is_some())
}

/// Expression text with parentheses around it dropped and identifiers folded as Postgres
/// folds them, so that `ORDER BY Count(*)` finds `count(*)` in the select list.
fn key(e: &Expr) -> String {
    fn fold(id: &mut Ident) {
        if id.quote_style.is_none() {
            id.value = id.value.to_ascii_lowercase();
        }
        id.quote_style = None;
    }
    let mut e = unnest(e).clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        match x {
            Expr::Identifier(id) => fold(id),
            Expr::CompoundIdentifier(ids) => ids.iter_mut().for_each(fold),
            Expr::Function(f) => f.name.0.iter_mut().for_each(|p| {
                if let ObjectNamePart::Identifier(id) = p {
                    fold(id)
                }
            }),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

/// The column name Postgres gives an expression, where it is a name.
fn expr_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(id) => Some(ident_name(id)),
        Expr::CompoundIdentifier(ids) => ids.last().map(ident_name),
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(ident_name),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => expr_name(expr),
        _ => None,
    }
}

/// Whether an expression uses a column called `name`.
fn references(e: &Expr, name: &str) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Identifier(id) if ident_name(id) == name => ControlFlow::Break(()),
        Expr::CompoundIdentifier(ids) if ids.last().map(ident_name).as_deref() == Some(name) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}
