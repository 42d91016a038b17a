//! HAVING over merged groups: a `Predicate` from the plan, compiled once against the column
//! types (literals parsed into values, indices and types checked), then evaluated per group
//! with SQL's three-valued logic (a comparison with NULL is unknown; only true keeps a group).
//!
//! Ordering comparisons (`<`, `>` ...) need a type read by value; equality also works on the
//! raw bytes of other types. It does not decode rows: the caller passes decoded values.

use std::cmp::Ordering;

use super::columns::Column;
use super::error::MergeError;
use super::plan::{CmpOp, Predicate};
use super::value::{Value, ValueError};

/// A compiled HAVING condition.
#[derive(Debug, Clone)]
pub(super) enum Cond {
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Literal {
        column: usize,
        op: CmpOp,
        value: Value,
    },
    Columns {
        left: usize,
        op: CmpOp,
        right: usize,
    },
    IsNull {
        column: usize,
        negated: bool,
    },
}

fn column(columns: &[Column], i: usize) -> Result<&Column, MergeError> {
    columns.get(i).ok_or_else(|| {
        MergeError::Contract(format!(
            "HAVING names column {i}, but the shards return {} columns",
            columns.len()
        ))
    })
}

fn check_orderable(c: &Column, op: CmpOp) -> Result<(), MergeError> {
    if matches!(op, CmpOp::Eq | CmpOp::NotEq) || c.ty.is_ordered() {
        Ok(())
    } else {
        Err(MergeError::Unsupported(format!(
            "HAVING compares column \"{}\" of type oid {} by order, which the proxy cannot \
             evaluate",
            c.name, c.ty.oid
        )))
    }
}

impl Cond {
    pub(super) fn compile(p: &Predicate, columns: &[Column]) -> Result<Cond, MergeError> {
        let sub = |p: &Predicate| Cond::compile(p, columns).map(Box::new);
        Ok(match p {
            Predicate::And(a, b) => Cond::And(sub(a)?, sub(b)?),
            Predicate::Or(a, b) => Cond::Or(sub(a)?, sub(b)?),
            Predicate::Not(a) => Cond::Not(sub(a)?),
            Predicate::Compare {
                column: i,
                op,
                literal,
            } => {
                let c = column(columns, *i)?;
                check_orderable(c, *op)?;
                let value = c.ty.parse_literal(literal).map_err(|e| match e {
                    ValueError::Mismatch(m) => MergeError::Unsupported(m),
                    ValueError::Malformed(detail) | ValueError::OutOfRange(detail) => {
                        MergeError::InvalidLiteral {
                            column: c.name.clone(),
                            literal: literal.clone(),
                            detail,
                        }
                    }
                })?;
                Cond::Literal {
                    column: *i,
                    op: *op,
                    value,
                }
            }
            Predicate::CompareColumns { left, op, right } => {
                check_orderable(column(columns, *left)?, *op)?;
                check_orderable(column(columns, *right)?, *op)?;
                Cond::Columns {
                    left: *left,
                    op: *op,
                    right: *right,
                }
            }
            Predicate::IsNull { column: i, negated } => {
                column(columns, *i)?;
                Cond::IsNull {
                    column: *i,
                    negated: *negated,
                }
            }
        })
    }

    /// Every column the condition reads.
    pub(super) fn columns(&self, out: &mut Vec<usize>) {
        match self {
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.columns(out);
                b.columns(out);
            }
            Cond::Not(a) => a.columns(out),
            Cond::Literal { column, .. } | Cond::IsNull { column, .. } => out.push(*column),
            Cond::Columns { left, right, .. } => out.extend([*left, *right]),
        }
    }

    /// True, false, or unknown (`None`) for one group; `values` is indexed by column.
    pub(super) fn eval(&self, values: &[Option<Value>]) -> Option<bool> {
        let get = |i: usize| values.get(i).and_then(Option::as_ref);
        let cmp = |a: Option<&Value>, op: CmpOp, b: Option<&Value>| {
            let ord = a?.compare(b?);
            Some(match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::NotEq => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::LtEq => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::GtEq => ord != Ordering::Less,
            })
        };
        match self {
            Cond::And(a, b) => match (a.eval(values), b.eval(values)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Cond::Or(a, b) => match (a.eval(values), b.eval(values)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Cond::Not(a) => a.eval(values).map(|v| !v),
            Cond::Literal { column, op, value } => cmp(get(*column), *op, Some(value)),
            Cond::Columns { left, op, right } => cmp(get(*left), *op, get(*right)),
            Cond::IsNull { column, negated } => Some(get(*column).is_none() != *negated),
        }
    }
}
