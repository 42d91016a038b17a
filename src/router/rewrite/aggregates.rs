//! Which function calls are aggregates, and which of them the merge can combine (count,
//! sum, min, max, bool_and/every, bool_or, and avg through sum and count); the rest are
//! refused by name. Also finds window functions and subqueries.
//!
//! Aggregates are recognised by name (`analyze::AGGREGATES`): a user-defined aggregate looks
//! like a plain function here and would be passed through per shard.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, InTarget, Query, Visit, Visitor,
};

use super::{refuse, unnest, Unsupported};
use crate::merge::AggKind;
use crate::router::analyze::AGGREGATES;
use crate::router::scope::ident_name;

/// How an aggregate call merges.
#[derive(Clone, Copy)]
pub(super) enum Agg {
    Kind(AggKind),
    /// avg(x): merged from sum(x) and count(x).
    Avg,
}

fn is_aggregate(f: &Function) -> bool {
    let name = f.name.0.last().and_then(|p| p.as_ident()).map(ident_name);
    name.is_some_and(|n| AGGREGATES.contains(&n.as_str()))
        && !matches!(f.args, FunctionArguments::None)
        && f.over.is_none()
}

/// The aggregate `e` is (parentheses aside), if it is one, and whether it can be merged.
pub(super) fn aggregate_call(e: &Expr) -> Result<Option<(Agg, &Function)>, Unsupported> {
    let Expr::Function(f) = unnest(e) else {
        return Ok(None);
    };
    if !is_aggregate(f) {
        return Ok(None);
    }
    let name = f
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(ident_name)
        .unwrap_or_default();
    let agg = match name.as_str() {
        "count" => Agg::Kind(AggKind::Count),
        "sum" => Agg::Kind(AggKind::Sum),
        "min" => Agg::Kind(AggKind::Min),
        "max" => Agg::Kind(AggKind::Max),
        "bool_and" | "every" => Agg::Kind(AggKind::BoolAnd),
        "bool_or" => Agg::Kind(AggKind::BoolOr),
        "avg" => Agg::Avg,
        _ => return refuse(format!("aggregate {name}()")),
    };
    let FunctionArguments::List(list) = &f.args else {
        return refuse(format!("aggregate {name}() over a subquery"));
    };
    if !f.within_group.is_empty() || f.null_treatment.is_some() || !list.clauses.is_empty() {
        return refuse(format!(
            "{name}() with ORDER BY, WITHIN GROUP or other clauses ({f})"
        ));
    }
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] if name == "count" => {}
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(_) | FunctionArgExpr::QualifiedWildcard(_))] => {
        }
        _ => return refuse(format!("{name}() with these arguments ({f})")),
    }
    // min, max, bool_and and bool_or ignore duplicates anyway; counts and sums do not.
    if list.duplicate_treatment == Some(DuplicateTreatment::Distinct)
        && matches!(
            agg,
            Agg::Avg | Agg::Kind(AggKind::Count) | Agg::Kind(AggKind::Sum)
        )
    {
        return refuse(format!("{f} (an aggregate of DISTINCT values)"));
    }
    Ok(Some((agg, f)))
}

/// Finds an aggregate call of this query level (not inside a subquery, whose aggregates
/// are its own).
struct FindAggregate {
    depth: usize,
    found: Option<String>,
}

impl Visitor for FindAggregate {
    type Break = ();
    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }
    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }
    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) if self.depth == 0 && is_aggregate(f) => {
                self.found = Some(e.to_string());
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

/// The first aggregate call in `e` at this query level.
pub(super) fn contains_aggregate(e: &Expr) -> Option<String> {
    let mut v = FindAggregate {
        depth: 0,
        found: None,
    };
    let _ = e.visit(&mut v);
    v.found
}

/// Whether `e` calls a window function anywhere (subqueries included: refusing is safe).
pub(super) fn contains_window(e: &Expr) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Function(f) if f.over.is_some() => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

pub(super) fn has_subquery(e: &Expr) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Subquery(_)
        | Expr::Exists { .. }
        | Expr::In {
            target: InTarget::Subquery(_),
            ..
        } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}
