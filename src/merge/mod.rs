//! Merging fan-out answers: N shard streams -> one client stream (sort, limit, aggregate,
//! distinct, having, tags). Pure: no IO, no sockets.
//!
//! - [`plan`]: `MergePlan`, the hand-off from the rewrite.
//! - [`engine`]: the `Merger` (k-way merge, pass-through, grouping; LIMIT/OFFSET; tag).
//! - `group` / `accumulate` / `having`: groups, per-column accumulators, HAVING.
//! - `columns`: shard columns, parsed rows and ORDER BY key comparison, shared by the above.
//! - [`value`]: typed column values (decode, Postgres ordering, encode).
//! - [`numeric`] / [`datetime`] / `float`: exact numeric, ISO date/timestamp and Postgres'
//!   float text forms behind `value`.
//! - [`rows`]: bounds-checked RowDescription / DataRow parsing and building.
//! - [`error`]: `MergeError` and its SQLSTATEs.

mod accumulate;
mod columns;
pub mod datetime;
pub mod engine;
pub mod error;
mod float;
mod group;
mod having;
pub mod numeric;
pub mod plan;
pub mod rows;
pub mod value;

#[cfg(test)]
mod tests;

pub use engine::{Merger, Progress};
pub use error::MergeError;
pub use plan::{AggKind, CmpOp, MergePlan, Output, Predicate, SortKey};
pub use value::{ColumnType, Value};
