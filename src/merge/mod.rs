//! Merging fan-out answers: N shard streams -> one client stream (sort, limit, aggregate,
//! distinct, having, tags). Pure: no IO, no sockets.

pub mod plan;

pub use plan::{AggKind, CmpOp, MergePlan, Output, Predicate, SortKey};
