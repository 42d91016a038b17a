//! What the engine, grouping and HAVING share: shard columns (name and type), a parsed
//! DataRow borrowed from its frame, and the comparison of ORDER BY keys (direction and
//! NULLS FIRST/LAST applied over Postgres' value ordering).

use std::cmp::Ordering;
use std::ops::Range;

use super::error::MergeError;
use super::plan::SortKey;
use super::value::{ColumnType, Value, ValueError};

/// A shard column: its name (for messages) and its type.
#[derive(Debug, Clone)]
pub(super) struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// A parsed DataRow: the body and each field's span in it (`None` is NULL).
pub(super) struct Row<'a> {
    pub body: &'a [u8],
    pub spans: &'a [Option<Range<usize>>],
}

impl Row<'_> {
    pub(super) fn field(&self, i: usize) -> Option<&[u8]> {
        let span = self.spans.get(i)?.clone()?;
        self.body.get(span)
    }

    /// The decoded value of column `i` (`None` for NULL).
    pub(super) fn value(
        &self,
        shard: usize,
        i: usize,
        columns: &[Column],
    ) -> Result<Option<Value>, MergeError> {
        let (Some(field), Some(col)) = (self.field(i), columns.get(i)) else {
            return Ok(None);
        };
        col.ty
            .decode(field)
            .map(Some)
            .map_err(|e| MergeError::BadValue {
                shard,
                column: col.name.clone(),
                detail: value_detail(e),
            })
    }
}

pub(super) fn value_detail(e: ValueError) -> String {
    match e {
        ValueError::Malformed(m) | ValueError::OutOfRange(m) | ValueError::Mismatch(m) => m,
    }
}

fn key_order(k: &SortKey, a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) if k.nulls_first => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) if k.nulls_first => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) if k.descending => b.compare(a),
        (Some(a), Some(b)) => a.compare(b),
    }
}

/// The first ORDER BY key on which two rows differ, and how.
pub(super) fn compare_keys(
    order: &[SortKey],
    a: &[Option<Value>],
    b: &[Option<Value>],
) -> Option<(usize, Ordering)> {
    order.iter().enumerate().find_map(|(i, k)| {
        let ord = key_order(
            k,
            a.get(i).and_then(Option::as_ref),
            b.get(i).and_then(Option::as_ref),
        );
        ord.is_ne().then_some((i, ord))
    })
}

pub(super) fn ordering(order: &[SortKey], a: &[Option<Value>], b: &[Option<Value>]) -> Ordering {
    compare_keys(order, a, b).map_or(Ordering::Equal, |(_, o)| o)
}
