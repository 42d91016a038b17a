//! The hand-off from the rewrite (router) to the merge: how N shard result streams become the
//! one result a single Postgres would have returned.
//!
//! Shard rows carry the client's visible columns first, then hidden helper columns the
//! rewrite added (sort keys not in the select list, sum/count behind an avg, group keys).
//! The visible columns' RowDescription entries are taken from the shards as they are (the
//! rewrite keeps each visible expression in the shard query, so names and types are right).

/// How a fan-out read's answers are combined.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergePlan {
    /// How many leading shard columns the client sees.
    pub visible: usize,
    /// What each visible column is, by position (`visible` entries).
    pub outputs: Vec<Output>,
    /// GROUP BY: shard column indices; with aggregates and no group keys, one group.
    pub group_by: Vec<usize>,
    /// Whether rows are combined by group (aggregates or GROUP BY present).
    pub aggregate: bool,
    /// SELECT DISTINCT over the visible columns.
    pub distinct: bool,
    /// Hidden shard columns that hold aggregates the client did not select (HAVING or ORDER
    /// BY on such an aggregate): `(shard column index, how it merges)`, each index at or past
    /// `visible`. A hidden column not listed is merged as a group key, as the sum or count
    /// behind a visible avg (summed), or else by taking the value of the group's first row.
    /// (Added by the merge: `outputs` only describes visible columns.)
    pub hidden_outputs: Vec<(usize, Output)>,
    /// HAVING, evaluated on merged groups.
    pub having: Option<Predicate>,
    /// ORDER BY, applied after grouping; keys are shard column indices.
    pub order_by: Vec<SortKey>,
    /// LIMIT and OFFSET of the original statement (shards were asked for limit + offset).
    pub limit: Option<u64>,
    pub offset: u64,
}

/// One visible column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Passed through (a plain column or expression; in grouped queries a group key).
    Column(usize),
    /// An aggregate combined across shards from the shard column `input`.
    Agg { kind: AggKind, input: usize },
    /// avg(x): sum and count from hidden shard columns; the visible shard column holds the
    /// shard's own avg, whose type the result keeps.
    Avg { sum: usize, count: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    /// count(*) and count(x): shard counts are summed (bigint).
    Count,
    /// sum(x): shard sums are summed (in the shard's result type: bigint, numeric, float).
    Sum,
    Min,
    Max,
    BoolAnd,
    BoolOr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    /// Shard column index.
    pub column: usize,
    pub descending: bool,
    /// Postgres default: NULLS LAST for ASC, NULLS FIRST for DESC.
    pub nulls_first: bool,
}

/// A HAVING condition over merged values (output columns and hidden columns alike, by shard
/// column index; aggregate columns hold their merged value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicate {
    And(Box<Predicate>, Box<Predicate>),
    Or(Box<Predicate>, Box<Predicate>),
    Not(Box<Predicate>),
    /// `column <op> literal` (literal as Postgres text, compared by the column's type).
    Compare {
        column: usize,
        op: CmpOp,
        literal: String,
    },
    /// `column <op> column`.
    CompareColumns {
        left: usize,
        op: CmpOp,
        right: usize,
    },
    IsNull {
        column: usize,
        negated: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}
