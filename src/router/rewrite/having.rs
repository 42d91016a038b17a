//! HAVING -> [`Predicate`]: the condition is removed from the shard query (one shard's
//! partial group may fail it while the merged group passes) and evaluated by the merge over
//! merged columns.
//!
//! Operands are aggregates and group keys (or other non-aggregate expressions, which the
//! shards compute in hidden columns) and plain literals; connectives are AND, OR, NOT,
//! comparisons, IS [NOT] NULL, BETWEEN and IN (a list). Anything else is refused.

use sqlparser::ast::{BinaryOperator, Expr, InTarget, UnaryOperator, Value};

use super::columns::Columns;
use super::{refuse, Unsupported};
use crate::merge::{CmpOp, Predicate};

/// Translate a HAVING condition, adding the hidden columns its operands need.
pub(super) fn predicate(cols: &mut Columns, e: &Expr) -> Result<Predicate, Unsupported> {
    let both = |a, b| (Box::new(a), Box::new(b));
    match e {
        Expr::Nested(inner) => predicate(cols, inner),
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And => {
                let (a, b) = both(predicate(cols, left)?, predicate(cols, right)?);
                Ok(Predicate::And(a, b))
            }
            BinaryOperator::Or => {
                let (a, b) = both(predicate(cols, left)?, predicate(cols, right)?);
                Ok(Predicate::Or(a, b))
            }
            _ => match cmp(op) {
                Some(op) => compare(cols, left, op, right),
                None => refuse(format!("HAVING with operator {op} ({e})")),
            },
        },
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Ok(Predicate::Not(Box::new(predicate(cols, expr)?))),
        Expr::IsNull(x) | Expr::IsNotNull(x) => Ok(Predicate::IsNull {
            column: column(cols, x)?,
            negated: matches!(e, Expr::IsNotNull(_)),
        }),
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => {
            let (a, b) = both(
                compare(cols, expr, CmpOp::GtEq, low)?,
                compare(cols, expr, CmpOp::LtEq, high)?,
            );
            Ok(Predicate::And(a, b))
        }
        Expr::Between {
            expr,
            negated: true,
            low,
            high,
        } => {
            let (a, b) = both(
                compare(cols, expr, CmpOp::Lt, low)?,
                compare(cols, expr, CmpOp::Gt, high)?,
            );
            Ok(Predicate::Or(a, b))
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated,
            ..
        } => {
            // x IN (a, b) is x = a OR x = b, and NOT IN is x <> a AND x <> b, NULLs included.
            let op = if *negated { CmpOp::NotEq } else { CmpOp::Eq };
            let mut terms = list.iter().map(|v| compare(cols, expr, op, v));
            let Some(first) = terms.next() else {
                return refuse("HAVING ... IN ()");
            };
            terms.try_fold(first?, |acc, t| {
                let (a, b) = both(acc, t?);
                Ok(if *negated {
                    Predicate::And(a, b)
                } else {
                    Predicate::Or(a, b)
                })
            })
        }
        // A boolean aggregate or group key standing alone: `HAVING bool_or(flag)`.
        Expr::Function(_) | Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            Ok(Predicate::Compare {
                column: column(cols, e)?,
                op: CmpOp::Eq,
                literal: "true".into(),
            })
        }
        _ => refuse(format!("HAVING condition {e}")),
    }
}

fn cmp(op: &BinaryOperator) -> Option<CmpOp> {
    Some(match op {
        BinaryOperator::Eq => CmpOp::Eq,
        BinaryOperator::NotEq => CmpOp::NotEq,
        BinaryOperator::Lt => CmpOp::Lt,
        BinaryOperator::LtEq => CmpOp::LtEq,
        BinaryOperator::Gt => CmpOp::Gt,
        BinaryOperator::GtEq => CmpOp::GtEq,
        _ => return None,
    })
}

/// The operator with its operands swapped (`5 < x` is `x > 5`).
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        same => same,
    }
}

fn compare(cols: &mut Columns, l: &Expr, op: CmpOp, r: &Expr) -> Result<Predicate, Unsupported> {
    Ok(match (literal(l)?, literal(r)?) {
        (None, None) => Predicate::CompareColumns {
            left: column(cols, l)?,
            op,
            right: column(cols, r)?,
        },
        (None, Some(literal)) => Predicate::Compare {
            column: column(cols, l)?,
            op,
            literal,
        },
        (Some(literal), None) => Predicate::Compare {
            column: column(cols, r)?,
            op: flip(op),
            literal,
        },
        (Some(_), Some(_)) => return refuse(format!("HAVING comparing two constants ({l}, {r})")),
    })
}

fn column(cols: &mut Columns, e: &Expr) -> Result<usize, Unsupported> {
    cols.operand(e, "h")
}

/// A plain literal as Postgres text (compared by the other side's type in the merge). Typed
/// and cast literals are not plain: the shards compute them in hidden columns, typed.
fn literal(e: &Expr) -> Result<Option<String>, Unsupported> {
    match e {
        Expr::Nested(inner) => literal(inner),
        Expr::UnaryOp {
            op: op @ (UnaryOperator::Minus | UnaryOperator::Plus),
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) if *op == UnaryOperator::Minus => Ok(Some(format!("-{n}"))),
                Value::Number(n, _) => Ok(Some(n.clone())),
                _ => Ok(None),
            },
            _ => Ok(None),
        },
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Ok(Some(n.clone())),
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Ok(Some(s.clone())),
            Value::DollarQuotedString(s) => Ok(Some(s.value.clone())),
            Value::Boolean(b) => Ok(Some(b.to_string())),
            Value::Null => refuse("a comparison with NULL in HAVING"),
            Value::Placeholder(p) => refuse(format!("a parameter in HAVING ({p})")),
            other => refuse(format!("the literal {other} in HAVING")),
        },
        _ => Ok(None),
    }
}
