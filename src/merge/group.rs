//! Grouping: shard rows folded into groups keyed by decoded values (so `1` from two shards,
//! or `1.5` and `1.50`, is one group), one accumulator per shard column (`accumulate.rs`),
//! capped at `max_rows` groups or distinct rows. Once every shard has finished, each group
//! becomes one merged row holding every shard column; HAVING filters them, DISTINCT over
//! aggregates removes duplicates, and ORDER BY sorts them. OFFSET/LIMIT and dropping hidden
//! columns are the engine's.

use std::collections::{HashMap, HashSet};

use super::accumulate::{acc_for, accumulate, check_types, result, template, Acc};
use super::columns::{ordering, Column, Row};
use super::error::MergeError;
use super::having::Cond;
use super::plan::{MergePlan, Output};
use super::value::Value;

/// A merged row: one field per shard column (`None` is NULL).
pub(super) type MergedRow = Vec<Option<Vec<u8>>>;

/// Groups under construction.
pub(super) struct Grouper {
    template: Vec<Acc>,
    key_columns: Vec<usize>,
    index: HashMap<Vec<u8>, usize>,
    groups: Vec<Vec<Acc>>,
    max_rows: u64,
    key: Vec<u8>,
}

impl Grouper {
    pub(super) fn new(
        plan: &MergePlan,
        columns: &[Column],
        max_rows: u64,
    ) -> Result<Grouper, MergeError> {
        let template = if plan.aggregate {
            template(plan, columns.len())?
        } else {
            // DISTINCT alone: every column is kept from a distinct row's first occurrence.
            (0..columns.len())
                .map(|c| acc_for(plan.outputs.get(c).unwrap_or(&Output::Column(c))))
                .collect()
        };
        check_types(&template, columns)?;
        let key_columns = if plan.aggregate {
            plan.group_by.clone()
        } else {
            plan.outputs
                .iter()
                .enumerate()
                .map(|(j, o)| match o {
                    Output::Column(i) => *i,
                    _ => j,
                })
                .collect()
        };
        let mut g = Grouper {
            template,
            key_columns,
            index: HashMap::new(),
            groups: Vec::new(),
            max_rows,
            key: Vec::new(),
        };
        if plan.aggregate && plan.group_by.is_empty() {
            // Aggregates without GROUP BY make exactly one row, even from no rows at all.
            g.index.insert(Vec::new(), 0);
            g.groups.push(g.template.clone());
        }
        Ok(g)
    }

    pub(super) fn len(&self) -> usize {
        self.groups.len()
    }

    /// Fold one shard row into its group.
    pub(super) fn push(
        &mut self,
        shard: usize,
        row: &Row,
        columns: &[Column],
    ) -> Result<(), MergeError> {
        self.key.clear();
        for &c in &self.key_columns {
            match row.value(shard, c, columns)? {
                None => self.key.push(0),
                Some(v) => v.key_bytes(&mut self.key),
            }
        }
        let g = match self.index.get(&self.key) {
            Some(&g) => g,
            None => {
                if self.groups.len() as u64 >= self.max_rows {
                    return Err(MergeError::TooManyRows {
                        limit: self.max_rows,
                    });
                }
                self.groups.push(self.template.clone());
                self.index.insert(self.key.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        for acc in &mut self.groups[g] {
            accumulate(acc, shard, row, columns)?;
        }
        Ok(())
    }

    /// The result rows, after HAVING, DISTINCT over aggregates and ORDER BY.
    pub(super) fn finish(
        self,
        plan: &MergePlan,
        having: Option<&Cond>,
        columns: &[Column],
    ) -> Result<Vec<MergedRow>, MergeError> {
        let mut needed = Vec::new();
        if let Some(h) = having {
            h.columns(&mut needed);
        }
        needed.extend(plan.order_by.iter().map(|k| k.column));
        let dedupe = plan.aggregate && plan.distinct;
        let mut seen = HashSet::new();
        let mut values: Vec<Option<Value>> = vec![None; columns.len()];
        let mut kept = Vec::new();
        for accs in self.groups {
            let row = accs
                .into_iter()
                .enumerate()
                .map(|(c, acc)| result(acc, &columns[c], columns))
                .collect::<Result<MergedRow, _>>()?;
            for &c in &needed {
                values[c] = decode_merged(&columns[c], row[c].as_deref())?;
            }
            if having.is_some_and(|h| h.eval(&values) != Some(true)) {
                continue;
            }
            if dedupe {
                let mut key = Vec::new();
                for (c, field) in row.iter().enumerate().take(plan.visible) {
                    match decode_merged(&columns[c], field.as_deref())? {
                        None => key.push(0),
                        Some(v) => v.key_bytes(&mut key),
                    }
                }
                if !seen.insert(key) {
                    continue;
                }
            }
            let keys: Vec<Option<Value>> = plan
                .order_by
                .iter()
                .map(|k| values[k.column].clone())
                .collect();
            kept.push((keys, row));
        }
        kept.sort_by(|a, b| ordering(&plan.order_by, &a.0, &b.0));
        Ok(kept.into_iter().map(|(_, row)| row).collect())
    }
}

/// A merged field read back for HAVING, DISTINCT and ORDER BY.
fn decode_merged(col: &Column, field: Option<&[u8]>) -> Result<Option<Value>, MergeError> {
    field.map(|f| col.ty.decode(f)).transpose().map_err(|e| {
        MergeError::Contract(format!(
            "merged column \"{}\": {}",
            col.name,
            super::columns::value_detail(e)
        ))
    })
}
