//! Accumulators: how one shard column of one group merges across shards, and the merged
//! field it ends as (encoded in the output column's own type and format).
//!
//! count -> sum of shard counts (bigint); sum -> sum (NULL when every shard's is NULL;
//! integers and numeric exactly, floats as float8 with Postgres' overflow error); min/max ->
//! typed comparison, forwarding the winning shard's bytes; bool_and / bool_or; avg -> total
//! sum / total count in the column's type (numeric with Postgres' division scale, or float),
//! NULL when the count is 0; anything else -> the value of the group's first row (group keys
//! and expressions of them). Which accumulator each column gets comes from the plan; type
//! checks refuse what cannot be computed exactly (a sum of intervals, a max of jsonb).

use super::columns::{Column, Row};
use super::error::MergeError;
use super::numeric::Numeric;
use super::plan::{AggKind, MergePlan, Output};
use super::value::{oid, Value};

/// A running sum.
#[derive(Debug, Clone)]
pub(super) enum Total {
    Null,
    Int(i128),
    Numeric(Numeric),
    Float(f64),
}

impl Total {
    fn add(&mut self, v: Value, column: &str) -> Result<(), MergeError> {
        let overflow = |message: &str| MergeError::OutOfRange {
            column: column.to_string(),
            message: message.to_string(),
        };
        let next = match (std::mem::replace(self, Total::Null), v) {
            (Total::Null, Value::Int(i)) => Total::Int(i.into()),
            (Total::Null, Value::Numeric(n)) => Total::Numeric(n),
            (Total::Null, Value::Float(f)) => Total::Float(f),
            (Total::Int(a), Value::Int(b)) => Total::Int(
                a.checked_add(b.into())
                    .ok_or_else(|| overflow("bigint out of range"))?,
            ),
            (Total::Int(a), Value::Numeric(b)) => Total::Numeric(Numeric::from_i128(a).add(&b)),
            (Total::Numeric(a), Value::Int(b)) => {
                Total::Numeric(a.add(&Numeric::from_i128(b.into())))
            }
            (Total::Numeric(a), Value::Numeric(b)) => Total::Numeric(a.add(&b)),
            (Total::Float(a), Value::Float(b)) => {
                let s = a + b;
                // Postgres' float8pl: an infinite sum of finite inputs is an overflow.
                if s.is_infinite() && a.is_finite() && b.is_finite() {
                    return Err(overflow("value out of range: overflow"));
                }
                Total::Float(s)
            }
            (_, other) => {
                return Err(MergeError::Contract(format!(
                    "column \"{column}\": cannot add {other:?} to a running sum of another type"
                )))
            }
        };
        *self = next;
        Ok(())
    }

    fn into_value(self) -> Option<Value> {
        match self {
            Total::Null => None,
            Total::Int(i) => Some(match i64::try_from(i) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Numeric(Numeric::from_i128(i)),
            }),
            Total::Numeric(n) => Some(Value::Numeric(n)),
            Total::Float(f) => Some(Value::Float(f)),
        }
    }
}

/// One column's state within one group.
#[derive(Debug, Clone)]
pub(super) enum Acc {
    /// The first row's field (outer `None` until a row arrives).
    First {
        input: usize,
        value: Option<Option<Vec<u8>>>,
    },
    Count {
        input: usize,
        total: i64,
    },
    Sum {
        input: usize,
        total: Total,
    },
    Extreme {
        input: usize,
        max: bool,
        best: Option<(Value, Vec<u8>)>,
    },
    Bool {
        input: usize,
        and: bool,
        value: Option<bool>,
    },
    Avg {
        sum_input: usize,
        count_input: usize,
        sum: Total,
        count: i64,
    },
}

pub(super) fn acc_for(output: &Output) -> Acc {
    match *output {
        Output::Column(input) => Acc::First { input, value: None },
        Output::Agg { kind, input } => match kind {
            AggKind::Count => Acc::Count { input, total: 0 },
            AggKind::Sum => Acc::Sum {
                input,
                total: Total::Null,
            },
            AggKind::Min | AggKind::Max => Acc::Extreme {
                input,
                max: kind == AggKind::Max,
                best: None,
            },
            AggKind::BoolAnd | AggKind::BoolOr => Acc::Bool {
                input,
                and: kind == AggKind::BoolAnd,
                value: None,
            },
        },
        Output::Avg { sum, count } => Acc::Avg {
            sum_input: sum,
            count_input: count,
            sum: Total::Null,
            count: 0,
        },
    }
}

/// How every shard column merges: visible outputs, then listed hidden aggregates, then the
/// inputs of visible aggregates and averages, then first-row values.
pub(super) fn template(plan: &MergePlan, ncols: usize) -> Result<Vec<Acc>, MergeError> {
    let mut specs: Vec<Option<Output>> = vec![None; ncols];
    for (i, o) in plan.outputs.iter().enumerate() {
        specs[i] = Some(o.clone());
    }
    for (h, o) in &plan.hidden_outputs {
        if *h < plan.visible || *h >= ncols {
            return Err(MergeError::Contract(format!(
                "hidden output {h} is not a hidden column (visible {}, columns {ncols})",
                plan.visible
            )));
        }
        specs[*h] = Some(o.clone());
    }
    for o in &plan.outputs {
        let implied = match *o {
            Output::Agg { kind, input } => vec![(input, Output::Agg { kind, input })],
            Output::Avg { sum, count } => vec![
                (
                    sum,
                    Output::Agg {
                        kind: AggKind::Sum,
                        input: sum,
                    },
                ),
                (
                    count,
                    Output::Agg {
                        kind: AggKind::Count,
                        input: count,
                    },
                ),
            ],
            Output::Column(_) => vec![],
        };
        for (c, spec) in implied {
            if let Some(slot @ None) = specs.get_mut(c) {
                *slot = Some(spec);
            }
        }
    }
    Ok(specs
        .iter()
        .enumerate()
        .map(|(c, s)| acc_for(s.as_ref().unwrap_or(&Output::Column(c))))
        .collect())
}

fn need(ok: bool, what: impl FnOnce() -> String) -> Result<(), MergeError> {
    if ok {
        Ok(())
    } else {
        Err(MergeError::Unsupported(what()))
    }
}

fn is_integer(c: &Column) -> bool {
    matches!(c.ty.oid, oid::INT2 | oid::INT4 | oid::INT8)
}

/// Check that each aggregate's input and result types are ones it can be computed in.
pub(super) fn check_types(accs: &[Acc], columns: &[Column]) -> Result<(), MergeError> {
    for (c, acc) in accs.iter().enumerate() {
        let out = &columns[c];
        let input = |i: usize| &columns[i];
        match *acc {
            Acc::First { .. } => {}
            Acc::Count { input: i, .. } => {
                need(is_integer(input(i)) && out.ty.is_number(), || {
                    format!("count column \"{}\" is not an integer", input(i).name)
                })?
            }
            Acc::Sum { input: i, .. } => {
                need(input(i).ty.is_number() && out.ty.is_number(), || {
                    format!(
                        "sum column \"{}\" has type oid {}; only sums of numbers are combined \
                     across shards",
                        input(i).name,
                        input(i).ty.oid
                    )
                })?
            }
            Acc::Avg {
                sum_input,
                count_input,
                ..
            } => need(
                input(sum_input).ty.is_number()
                    && is_integer(input(count_input))
                    && matches!(out.ty.oid, oid::NUMERIC | oid::FLOAT4 | oid::FLOAT8),
                || {
                    format!(
                        "avg column \"{}\" has type oid {}; only averages of numbers are \
                         combined across shards",
                        out.name, out.ty.oid
                    )
                },
            )?,
            Acc::Extreme { input: i, max, .. } => need(input(i).ty.is_ordered(), || {
                format!(
                    "{} over column \"{}\" of type oid {} cannot be compared across shards",
                    if max { "max" } else { "min" },
                    input(i).name,
                    input(i).ty.oid
                )
            })?,
            Acc::Bool { input: i, .. } => need(
                input(i).ty.oid == oid::BOOL && out.ty.oid == oid::BOOL,
                || {
                    format!(
                        "bool_and/bool_or column \"{}\" is not boolean",
                        input(i).name
                    )
                },
            )?,
        }
    }
    Ok(())
}

pub(super) fn accumulate(
    acc: &mut Acc,
    shard: usize,
    row: &Row,
    columns: &[Column],
) -> Result<(), MergeError> {
    let name = |i: usize| columns[i].name.as_str();
    match acc {
        Acc::First { input, value } => {
            if value.is_none() {
                *value = Some(row.field(*input).map(<[u8]>::to_vec));
            }
        }
        Acc::Count { input, total } => {
            if let Some(Value::Int(n)) = row.value(shard, *input, columns)? {
                *total = total.checked_add(n).ok_or_else(|| MergeError::OutOfRange {
                    column: name(*input).to_string(),
                    message: "bigint out of range".into(),
                })?;
            }
        }
        Acc::Sum { input, total } => {
            if let Some(v) = row.value(shard, *input, columns)? {
                total.add(v, name(*input))?;
            }
        }
        Acc::Extreme { input, max, best } => {
            if let Some(v) = row.value(shard, *input, columns)? {
                let better = match best {
                    None => true,
                    Some((b, _)) => {
                        let ord = v.compare(b);
                        if *max {
                            ord.is_gt()
                        } else {
                            ord.is_lt()
                        }
                    }
                };
                if better {
                    let raw = row.field(*input).unwrap_or_default().to_vec();
                    *best = Some((v, raw));
                }
            }
        }
        Acc::Bool { input, and, value } => {
            if let Some(Value::Bool(b)) = row.value(shard, *input, columns)? {
                *value = Some(match *value {
                    None => b,
                    Some(v) if *and => v && b,
                    Some(v) => v || b,
                });
            }
        }
        Acc::Avg {
            sum_input,
            count_input,
            sum,
            count,
        } => {
            if let Some(v) = row.value(shard, *sum_input, columns)? {
                sum.add(v, name(*sum_input))?;
            }
            if let Some(Value::Int(n)) = row.value(shard, *count_input, columns)? {
                *count = count.checked_add(n).ok_or_else(|| MergeError::OutOfRange {
                    column: name(*count_input).to_string(),
                    message: "bigint out of range".into(),
                })?;
            }
        }
    }
    Ok(())
}

/// The merged field of one column of one group.
pub(super) fn result(
    acc: Acc,
    out: &Column,
    columns: &[Column],
) -> Result<Option<Vec<u8>>, MergeError> {
    let encode = |v: &Value| {
        out.ty
            .encode(v)
            .map_err(|e| MergeError::encoding(&out.name, e))
    };
    Ok(match acc {
        Acc::First { value, .. } => value.flatten(),
        Acc::Count { total, .. } => Some(encode(&Value::Int(total))?),
        Acc::Sum { total, .. } => total.into_value().map(|v| encode(&v)).transpose()?,
        Acc::Extreme { input, best, .. } => match best {
            None => None,
            Some((_, raw)) if columns[input].ty == out.ty => Some(raw),
            Some((v, _)) => Some(encode(&v)?),
        },
        Acc::Bool { value, .. } => value.map(|b| encode(&Value::Bool(b))).transpose()?,
        Acc::Avg { sum, count, .. } => {
            let Some(total) = sum.into_value().filter(|_| count > 0) else {
                return Ok(None);
            };
            let avg = if out.ty.oid == oid::NUMERIC {
                let n = match total {
                    Value::Int(i) => Numeric::from_i128(i.into()),
                    Value::Numeric(n) => n,
                    other => {
                        return Err(MergeError::Contract(format!(
                            "avg column \"{}\" is numeric but its sum is {other:?}",
                            out.name
                        )))
                    }
                };
                Value::Numeric(n.div_count(count.unsigned_abs()))
            } else {
                let s = match total {
                    Value::Int(i) => i as f64,
                    Value::Numeric(n) => n.to_f64(),
                    Value::Float(f) => f,
                    _ => f64::NAN,
                };
                Value::Float(s / count as f64)
            };
            Some(encode(&avg)?)
        }
    })
}
