//! `MergeError`: everything that can go wrong combining shard answers, classified where it is
//! born, with the SQLSTATE a client sees and a message a person understands.
//!
//! Shards are named by their index in the fan-out (the session knows their names and may
//! prefix them). Messages carry no row data beyond a short excerpt of a value that could not
//! be read. It does not log: the session, which handles the error, does.

use crate::protocol::sqlstate;

use super::value::ValueError;

/// Postgres' numeric_value_out_of_range.
const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
/// Postgres' invalid_text_representation.
const INVALID_TEXT_REPRESENTATION: &str = "22P02";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// More groups or distinct rows than `limits.max_merge_rows` allows.
    #[error(
        "the cross-shard result needs more than {limit} groups or distinct rows in the proxy \
         (limits.max_merge_rows); narrow the query, or raise the limit"
    )]
    TooManyRows { limit: u64 },

    /// A frame from a shard that does not follow the protocol.
    #[error("malformed {what} from shard {shard}: {detail}")]
    Malformed {
        shard: usize,
        what: &'static str,
        detail: String,
    },

    /// The RowDescription handed to the merger is malformed.
    #[error("malformed RowDescription: {0}")]
    BadRowDescription(String),

    /// A field could not be read as a value of its column's type.
    #[error("cannot read column \"{column}\" from shard {shard}: {detail}")]
    BadValue {
        shard: usize,
        column: String,
        detail: String,
    },

    /// A merged value does not fit its type (Postgres' own message, SQLSTATE 22003).
    #[error("{message} (column \"{column}\")")]
    OutOfRange { column: String, message: String },

    /// A HAVING literal that is not a value of its column's type (SQLSTATE 22P02).
    #[error("invalid HAVING literal {literal:?} for column \"{column}\": {detail}")]
    InvalidLiteral {
        column: String,
        literal: String,
        detail: String,
    },

    /// The plan asks for something the merge cannot compute correctly (SQLSTATE 0A000).
    #[error("cross-shard merge: {0}")]
    Unsupported(String),

    /// A shard's rows were not in the order the merge was told to expect (for example a text
    /// sort key sorted by a collation other than "C" on the shard).
    #[error(
        "shard {shard} returned rows out of the ORDER BY order on column \"{column}\"; \
         the cross-shard merge needs every shard sorted the same way (text in collation \"C\")"
    )]
    OutOfOrder { shard: usize, column: String },

    /// The plan or the caller broke the merger's contract (a bug in shardgate).
    #[error("internal merge error: {0}")]
    Contract(String),
}

impl MergeError {
    /// The SQLSTATE a client sees.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            MergeError::TooManyRows { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
            MergeError::OutOfRange { .. } => NUMERIC_VALUE_OUT_OF_RANGE,
            MergeError::InvalidLiteral { .. } => INVALID_TEXT_REPRESENTATION,
            MergeError::Unsupported(_) => sqlstate::FEATURE_NOT_SUPPORTED,
            MergeError::Malformed { .. }
            | MergeError::BadRowDescription(_)
            | MergeError::BadValue { .. }
            | MergeError::OutOfOrder { .. }
            | MergeError::Contract(_) => sqlstate::INTERNAL_ERROR,
        }
    }

    /// A merged value for `column` could not be written: range errors keep their SQLSTATE,
    /// anything else is a plan that does not fit the data.
    pub(crate) fn encoding(column: &str, e: ValueError) -> MergeError {
        match e {
            ValueError::OutOfRange(message) => MergeError::OutOfRange {
                column: column.to_string(),
                message,
            },
            ValueError::Malformed(m) | ValueError::Mismatch(m) => {
                MergeError::Contract(format!("column \"{column}\": {m}"))
            }
        }
    }
}
