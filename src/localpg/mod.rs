//! localpg (under construction).
