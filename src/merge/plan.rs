//! The hand-off from the rewrite (router) to the merge: how N shard result streams become the
//! one result a single Postgres would have returned.
//!
//! Shard rows carry the client's visible columns first, then hidden helper columns the
//! rewrite added (sort keys not in the select list, sum/count behind an avg, group keys).
//! The visible columns' RowDescription entries are taken from the shards as they are (the
//! rewrite keeps each visible expression in the shard query, so names and types are right).
//!
//! Column indices everywhere in a plan are shard column indices: visible columns are
//! `0..visible`, hidden ones `visible..visible + hidden`. A select list with `*` has a column
//! count only the shards know: such a plan has `visible == 0` and refers to hidden columns only
//! (hidden column `k` is index `k`). Call [`MergePlan::resolve`] with the column count of the
//! shards' RowDescription before merging; it returns the plan with real indices (for a plan
//! without `*` it only checks the count). The client's RowDescription is the shards' one
//! without its last `hidden` fields.

/// How a fan-out read's answers are combined.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergePlan {
    /// How many leading shard columns the client sees; 0 until resolved when the select list
    /// has `*` (see the module comment).
    pub visible: usize,
    /// How many trailing shard columns the rewrite added (never sent to the client).
    pub hidden: usize,
    /// What each shard column is and how it merges, by position: `visible + hidden` entries
    /// (only the hidden ones in a `*` plan before `resolve`).
    /// Hidden columns have entries too: a sort or group key is a `Column`, an aggregate that
    /// only HAVING or ORDER BY uses is an `Agg`/`Avg`, the sum and count behind an avg are
    /// `Agg { Sum | Count }` of themselves.
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
    /// LIMIT and OFFSET of the original statement. Shards were asked for limit + offset rows,
    /// or for every row when `aggregate` (one shard's first groups are not the merged ones).
    pub limit: Option<u64>,
    pub offset: u64,
}

impl MergePlan {
    /// The resolved rewrite plan in the engine's form: `outputs` for the visible columns only,
    /// and the hidden columns that merge as aggregates in `hidden_outputs`.
    pub fn for_engine(mut self) -> MergePlan {
        let hidden: Vec<(usize, Output)> = self
            .outputs
            .iter()
            .enumerate()
            .skip(self.visible)
            .filter(|(_, o)| !matches!(o, Output::Column(_)))
            .map(|(i, o)| (i, o.clone()))
            .collect();
        self.outputs.truncate(self.visible);
        self.hidden_outputs.extend(hidden);
        self
    }
    /// The plan for shards whose rows have `shard_columns` columns: a `*` plan (`visible` 0)
    /// gets its visible columns as pass-through `Column`s and every index moved past them.
    /// None when the count cannot be right (fewer columns than hidden ones, or a plan without
    /// `*` whose count differs): the statement must fail rather than merge the wrong columns.
    pub fn resolve(&self, shard_columns: usize) -> Option<MergePlan> {
        if self.visible > 0 {
            return (shard_columns == self.visible + self.hidden).then(|| self.clone());
        }
        let shift = shard_columns.checked_sub(self.hidden)?;
        let mv = |i: usize| i + shift;
        let mut plan = self.clone();
        plan.visible = shift;
        plan.outputs = (0..shift).map(Output::Column).collect();
        plan.outputs.extend(self.outputs.iter().map(|o| match *o {
            Output::Column(i) => Output::Column(mv(i)),
            Output::Agg { kind, input } => Output::Agg {
                kind,
                input: mv(input),
            },
            Output::Avg { sum, count } => Output::Avg {
                sum: mv(sum),
                count: mv(count),
            },
        }));
        plan.group_by = self.group_by.iter().map(|&i| mv(i)).collect();
        plan.order_by = self
            .order_by
            .iter()
            .map(|k| SortKey {
                column: mv(k.column),
                ..*k
            })
            .collect();
        plan.having = self.having.as_ref().map(|p| p.shifted(shift));
        Some(plan)
    }
}

/// One shard column (visible or hidden).
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

impl Predicate {
    /// The same condition with every column index moved by `by` (for [`MergePlan::resolve`]).
    fn shifted(&self, by: usize) -> Predicate {
        match self {
            Predicate::And(a, b) => {
                Predicate::And(Box::new(a.shifted(by)), Box::new(b.shifted(by)))
            }
            Predicate::Or(a, b) => Predicate::Or(Box::new(a.shifted(by)), Box::new(b.shifted(by))),
            Predicate::Not(a) => Predicate::Not(Box::new(a.shifted(by))),
            Predicate::Compare {
                column,
                op,
                literal,
            } => Predicate::Compare {
                column: column + by,
                op: *op,
                literal: literal.clone(),
            },
            Predicate::CompareColumns { left, op, right } => Predicate::CompareColumns {
                left: left + by,
                op: *op,
                right: right + by,
            },
            Predicate::IsNull { column, negated } => Predicate::IsNull {
                column: column + by,
                negated: *negated,
            },
        }
    }
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
