//! Merging fan-out answers: N shard streams -> one client stream (sort, limit, aggregate,
//! distinct, having, tags). Pure: no IO, no sockets.
//!
//! - [`plan`]: `MergePlan`, the hand-off from the rewrite.
//! - [`value`]: typed column values (decode, Postgres ordering, encode).
//! - [`numeric`] / [`datetime`]: exact numeric and ISO date/timestamp forms behind `value`.
//! - [`rows`]: bounds-checked RowDescription / DataRow parsing and building.

pub mod datetime;
pub mod numeric;
pub mod plan;
pub mod rows;
pub mod value;

#[cfg(test)]
mod tests;

pub use plan::{AggKind, CmpOp, MergePlan, Output, Predicate, SortKey};
pub use value::{ColumnType, Value};
