//! The `Merger`: N shard result streams in, the one result a single Postgres would return out.
//!
//! Three shapes, chosen from the plan:
//! - ORDER BY without grouping: a streaming k-way merge. The merger holds at most one pending
//!   row (the head) per shard and emits the smallest head only when every unfinished shard
//!   has one, so memory is O(shards) however many rows flow. A shard whose rows arrive out of
//!   the expected order is an error, never a silently misordered answer.
//! - Neither ORDER BY nor grouping: rows pass through in arrival order.
//! - Aggregates, GROUP BY or DISTINCT: rows are folded into groups as they arrive (see
//!   `group.rs`); once every shard has finished, HAVING, DISTINCT, ORDER BY run on the
//!   merged groups.
//!
//! In every shape OFFSET skips and LIMIT stops (`Progress::Done`: stop reading the shards),
//! and only the visible columns reach the client.
//!
//! The caller's loop: read a row from each shard `wants()` names and `push_row` it, or
//! `finish_shard` at its CommandComplete; then `drain` into the client buffer; stop at `Done`
//! and send `command_tag()`. No IO here: frames come in and go out as bytes.

use std::cmp::Ordering;
use std::ops::Range;

use bytes::BytesMut;

use super::columns::{compare_keys, ordering, Column, Row};
use super::error::MergeError;
use super::group::Grouper;
use super::having::Cond;
use super::plan::{MergePlan, Output};
use super::rows::{self, FieldDescription};
use super::value::{ColumnType, Value};

/// What the caller should do after `drain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More rows are needed: feed the shards `wants()` names (or finish them).
    NeedInput,
    /// The result is complete: stop reading the shards and send `command_tag()`.
    Done,
}

/// A row kept while it waits for its turn.
struct Head {
    body: Vec<u8>,
    spans: Vec<Option<Range<usize>>>,
    /// The ORDER BY key values.
    keys: Vec<Option<Value>>,
}

#[derive(Default)]
struct Shard {
    head: Option<Head>,
    finished: bool,
    /// The keys of the last row taken from this shard, to catch rows out of order.
    last: Option<Vec<Option<Value>>>,
}

enum Mode {
    Sorted,
    PassThrough,
    /// `None` once the groups have been emitted.
    Grouped(Option<Grouper>),
}

/// Combines the answers of `shards` shards to one fan-out read.
pub struct Merger {
    plan: MergePlan,
    fields: Vec<FieldDescription>,
    columns: Vec<Column>,
    /// The shard column shown at each visible position (streaming shapes).
    shown: Vec<usize>,
    mode: Mode,
    having: Option<Cond>,
    shards: Vec<Shard>,
    to_skip: u64,
    emitted: u64,
    done: bool,
    scratch: Vec<Option<Range<usize>>>,
}

fn check_index(i: usize, ncols: usize, what: &str) -> Result<(), MergeError> {
    if i < ncols {
        Ok(())
    } else {
        Err(MergeError::Contract(format!(
            "{what} names column {i}, but the shards return {ncols} columns"
        )))
    }
}

/// Every shard column index the plan names, with what names it.
fn plan_indices(plan: &MergePlan) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    let outputs = plan
        .outputs
        .iter()
        .chain(plan.hidden_outputs.iter().map(|(_, o)| o));
    for o in outputs {
        match *o {
            Output::Column(i) => out.push((i, "an output column")),
            Output::Agg { input, .. } => out.push((input, "an aggregate")),
            Output::Avg { sum, count } => out.extend([(sum, "an avg"), (count, "an avg")]),
        }
    }
    out.extend(plan.group_by.iter().map(|&i| (i, "GROUP BY")));
    out.extend(plan.order_by.iter().map(|k| (k.column, "ORDER BY")));
    out
}

impl Merger {
    /// A merger for one fan-out read. `row_description_body` is one shard's RowDescription
    /// body (every shard column, visible then hidden, with the formats the shards will send);
    /// `max_rows` caps groups and distinct rows (`limits.max_merge_rows`).
    pub fn new(
        plan: MergePlan,
        row_description_body: &[u8],
        shards: usize,
        max_rows: u64,
    ) -> Result<Merger, MergeError> {
        let fields = rows::parse_row_description(row_description_body)
            .map_err(|e| MergeError::BadRowDescription(e.0))?;
        let mut columns = Vec::with_capacity(fields.len());
        for f in &fields {
            if !matches!(f.format, 0 | 1) {
                return Err(MergeError::BadRowDescription(format!(
                    "unknown format code {}",
                    f.format
                )));
            }
            columns.push(Column {
                name: String::from_utf8_lossy(&f.name).into_owned(),
                ty: ColumnType {
                    oid: f.type_oid,
                    format: f.format,
                },
            });
        }
        let ncols = columns.len();
        if plan.visible > ncols || plan.outputs.len() != plan.visible {
            return Err(MergeError::Contract(format!(
                "the plan shows {} columns with {} outputs, but the shards return {ncols}",
                plan.visible,
                plan.outputs.len()
            )));
        }
        for (i, what) in plan_indices(&plan) {
            check_index(i, ncols, what)?;
        }
        for k in &plan.order_by {
            let c = &columns[k.column];
            if !c.ty.is_ordered() {
                return Err(MergeError::Unsupported(format!(
                    "ORDER BY column \"{}\" has type oid {}, which the proxy cannot compare \
                     across shards",
                    c.name, c.ty.oid
                )));
            }
        }
        let having = match &plan.having {
            Some(p) if plan.aggregate => Some(Cond::compile(p, &columns)?),
            Some(_) => {
                return Err(MergeError::Contract(
                    "HAVING in a plan that does not aggregate".into(),
                ))
            }
            None => None,
        };
        let mut shown = Vec::with_capacity(plan.visible);
        for o in &plan.outputs {
            match (o, plan.aggregate) {
                (Output::Column(i), _) => shown.push(*i),
                (_, true) => shown.push(shown.len()),
                (_, false) => {
                    return Err(MergeError::Contract(
                        "an aggregate output in a plan that does not aggregate".into(),
                    ))
                }
            }
        }
        let mode = if plan.aggregate || plan.distinct {
            Mode::Grouped(Some(Grouper::new(&plan, &columns, max_rows)?))
        } else if plan.order_by.is_empty() {
            Mode::PassThrough
        } else {
            Mode::Sorted
        };
        Ok(Merger {
            to_skip: plan.offset,
            done: plan.limit == Some(0),
            plan,
            fields,
            columns,
            shown,
            mode,
            having,
            shards: (0..shards).map(|_| Shard::default()).collect(),
            emitted: 0,
            scratch: Vec::new(),
        })
    }

    /// Check that another shard describes its columns like the RowDescription the merger was
    /// built from (same count, types and formats); a mismatch would make values misread.
    pub fn check_row_description(&self, shard: usize, body: &[u8]) -> Result<(), MergeError> {
        let other = rows::parse_row_description(body).map_err(|e| MergeError::Malformed {
            shard,
            what: "RowDescription",
            detail: e.0,
        })?;
        let same = other.len() == self.fields.len()
            && other
                .iter()
                .zip(&self.fields)
                .all(|(a, b)| a.type_oid == b.type_oid && a.format == b.format);
        if same {
            Ok(())
        } else {
            Err(MergeError::Contract(format!(
                "shard {shard} describes its result columns differently from the other shards"
            )))
        }
    }

    /// Append the client's RowDescription frame: the visible columns only.
    pub fn row_description(&self, out: &mut BytesMut) -> Result<(), MergeError> {
        rows::write_row_description(out, &self.fields[..self.plan.visible])
            .map_err(|e| MergeError::Contract(e.0))
    }

    /// Shards to read a row from next: unfinished, with no pending row. Empty once done.
    pub fn wants(&self) -> impl Iterator<Item = usize> + '_ {
        let done = self.done;
        self.shards
            .iter()
            .enumerate()
            .filter(move |(_, s)| !done && !s.finished && s.head.is_none())
            .map(|(i, _)| i)
    }

    fn shard_mut(&mut self, shard: usize) -> Result<&mut Shard, MergeError> {
        let n = self.shards.len();
        self.shards.get_mut(shard).ok_or_else(|| {
            MergeError::Contract(format!("shard {shard} is not one of the {n} merged"))
        })
    }

    /// One DataRow body from `shard`. Only shards `wants()` names may be fed (grouping
    /// queries consume rows at once, so there that is every unfinished shard). Rows arriving
    /// after `Done` are dropped.
    pub fn push_row(&mut self, shard: usize, data_row_body: &[u8]) -> Result<(), MergeError> {
        let ncols = self.columns.len();
        let state = self.shard_mut(shard)?;
        if state.finished {
            return Err(MergeError::Contract(format!(
                "a row from shard {shard} after it finished"
            )));
        }
        if state.head.is_some() {
            return Err(MergeError::Contract(format!(
                "a row from shard {shard} before its previous row was merged"
            )));
        }
        if self.done {
            return Ok(());
        }
        let mut spans = std::mem::take(&mut self.scratch);
        let parsed = rows::parse_data_row(data_row_body, &mut spans)
            .map_err(|e| e.0)
            .and_then(|()| match spans.len() {
                n if n == ncols => Ok(()),
                n => Err(format!("{n} fields where the RowDescription has {ncols}")),
            });
        if let Err(detail) = parsed {
            self.scratch = spans;
            return Err(MergeError::Malformed {
                shard,
                what: "DataRow",
                detail,
            });
        }
        let row = Row {
            body: data_row_body,
            spans: &spans,
        };
        let result = match &mut self.mode {
            Mode::Grouped(Some(g)) => g.push(shard, &row, &self.columns),
            Mode::Grouped(None) => Ok(()),
            Mode::Sorted => self.hold_sorted(shard, &row),
            Mode::PassThrough => {
                self.shards[shard].head = Some(Head {
                    body: data_row_body.to_vec(),
                    spans: spans.clone(),
                    keys: Vec::new(),
                });
                Ok(())
            }
        };
        self.scratch = spans;
        result
    }

    fn hold_sorted(&mut self, shard: usize, row: &Row) -> Result<(), MergeError> {
        let keys = self
            .plan
            .order_by
            .iter()
            .map(|k| row.value(shard, k.column, &self.columns))
            .collect::<Result<Vec<_>, _>>()?;
        let state = &mut self.shards[shard];
        if let Some(last) = &state.last {
            if let Some((i, Ordering::Less)) = compare_keys(&self.plan.order_by, &keys, last) {
                return Err(MergeError::OutOfOrder {
                    shard,
                    column: self.columns[self.plan.order_by[i].column].name.clone(),
                });
            }
        }
        state.head = Some(Head {
            body: row.body.to_vec(),
            spans: row.spans.to_vec(),
            keys,
        });
        Ok(())
    }

    /// `shard` has sent its CommandComplete: it will send no more rows.
    pub fn finish_shard(&mut self, shard: usize) -> Result<(), MergeError> {
        self.shard_mut(shard)?.finished = true;
        Ok(())
    }

    /// Write every DataRow frame that can be emitted now into `out`.
    pub fn drain(&mut self, out: &mut BytesMut) -> Result<Progress, MergeError> {
        if self.done {
            return Ok(Progress::Done);
        }
        let progress = match self.mode {
            Mode::Grouped(_) => self.drain_groups(out)?,
            Mode::Sorted | Mode::PassThrough => self.drain_stream(out)?,
        };
        if progress == Progress::Done {
            self.done = true;
            for s in &mut self.shards {
                s.head = None;
            }
        }
        Ok(progress)
    }

    fn limit_reached(&self) -> bool {
        self.plan.limit.is_some_and(|l| self.emitted >= l)
    }

    /// Skip (OFFSET) or write one row's visible fields.
    fn emit<'a>(
        &mut self,
        out: &mut BytesMut,
        fields: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
    ) -> Result<(), MergeError> {
        if self.to_skip > 0 {
            self.to_skip -= 1;
            return Ok(());
        }
        rows::write_data_row(out, fields).map_err(|e| MergeError::Contract(e.0))?;
        self.emitted += 1;
        Ok(())
    }

    fn drain_stream(&mut self, out: &mut BytesMut) -> Result<Progress, MergeError> {
        let sorted = matches!(self.mode, Mode::Sorted);
        loop {
            if self.limit_reached() {
                return Ok(Progress::Done);
            }
            let mut next: Option<usize> = None;
            for (i, s) in self.shards.iter().enumerate() {
                let Some(head) = &s.head else {
                    if sorted && !s.finished {
                        return Ok(Progress::NeedInput);
                    }
                    continue;
                };
                next = match next {
                    None => Some(i),
                    Some(_) if !sorted => break,
                    Some(j) => {
                        let best = self.shards[j].head.as_ref().map_or(&[][..], |h| &h.keys);
                        let less = ordering(&self.plan.order_by, &head.keys, best).is_lt();
                        Some(if less { i } else { j })
                    }
                };
            }
            let Some(i) = next else {
                return Ok(if self.shards.iter().all(|s| s.finished) {
                    Progress::Done
                } else {
                    Progress::NeedInput
                });
            };
            let Some(head) = self.shards[i].head.take() else {
                continue;
            };
            let row = Row {
                body: &head.body,
                spans: &head.spans,
            };
            let shown = std::mem::take(&mut self.shown);
            let result = self.emit(out, shown.iter().map(|&c| row.field(c)));
            self.shown = shown;
            result?;
            if sorted {
                self.shards[i].last = Some(head.keys);
            }
        }
    }

    fn drain_groups(&mut self, out: &mut BytesMut) -> Result<Progress, MergeError> {
        if !self.shards.iter().all(|s| s.finished) {
            return Ok(Progress::NeedInput);
        }
        let Mode::Grouped(grouper) = &mut self.mode else {
            return Ok(Progress::Done);
        };
        let Some(grouper) = grouper.take() else {
            return Ok(Progress::Done);
        };
        let rows = grouper.finish(&self.plan, self.having.as_ref(), &self.columns)?;
        let visible = self.plan.visible;
        for row in rows {
            if self.limit_reached() {
                break;
            }
            self.emit(out, row[..visible].iter().map(Option::as_deref))?;
        }
        Ok(Progress::Done)
    }

    /// `SELECT n`: the rows actually emitted.
    pub fn command_tag(&self) -> String {
        format!("SELECT {}", self.emitted)
    }

    /// Whether the result is complete (`drain` returned `Done`).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Rows held inside the merger: pending heads, or groups and distinct rows.
    pub fn buffered_rows(&self) -> usize {
        let heads = self.shards.iter().filter(|s| s.head.is_some()).count();
        match &self.mode {
            Mode::Grouped(Some(g)) => heads + g.len(),
            _ => heads,
        }
    }
}
