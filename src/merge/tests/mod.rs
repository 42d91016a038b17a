//! Table-driven tests of the merge.

mod numeric;
mod values;
