//! Merging fan-out answers: N shard streams -> one client stream (sort, limit, aggregate,
//! distinct, having, tags). Pure: no IO, no sockets.
//!
//! - [`plan`]: `MergePlan`, the hand-off from the rewrite.
//! - [`numeric`] / [`datetime`]: exact numeric and ISO date/timestamp forms.

pub mod datetime;
pub mod numeric;
pub mod plan;

#[cfg(test)]
mod tests;

pub use plan::{AggKind, CmpOp, MergePlan, Output, Predicate, SortKey};
