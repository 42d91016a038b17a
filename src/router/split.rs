//! Splitting a multi-row `INSERT ... VALUES` into one INSERT per shard, each with the rows
//! that shard owns (in their original order). Pure; uses sqlparser's printer, so the per-shard
//! text is the statement re-rendered, not a substring of the original.

use sqlparser::ast::{SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::config::ShardId;

/// The per-shard statements of one split INSERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitInsert {
    /// One statement per shard, in shard order.
    pub parts: Vec<(ShardId, String)>,
    /// The INSERT has a RETURNING clause: its rows must be put back in VALUES order.
    pub returning: bool,
}

/// `row_shards[i]` is the shard of VALUES row `i`. Each shard's statement keeps its rows in
/// their original order, so with RETURNING the proxy can interleave the answers back into
/// VALUES order. RETURNING with ON CONFLICT is refused: a skipped row returns nothing, and
/// the answers could no longer be matched to their rows.
pub fn split_insert(sql: &str, row_shards: &[ShardId]) -> Result<SplitInsert, String> {
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| e.to_string())?;
    let [Statement::Insert(ins)] = stmts.as_mut_slice() else {
        return Err("not a single INSERT".into());
    };
    let returning = ins.returning.is_some();
    if returning && ins.on.is_some() {
        return Err(
            "RETURNING with ON CONFLICT from an INSERT whose rows go to several shards".into(),
        );
    }
    let Some(SetExpr::Values(values)) = ins.source.as_deref().map(|q| q.body.as_ref()) else {
        return Err("INSERT without VALUES".into());
    };
    let rows = values.rows.clone();
    if rows.len() != row_shards.len() {
        return Err("row count changed between routing and splitting".into());
    }
    let mut shards: Vec<ShardId> = row_shards.to_vec();
    shards.sort_unstable();
    shards.dedup();
    let mut out = Vec::with_capacity(shards.len());
    for shard in shards {
        let mine = rows
            .iter()
            .zip(row_shards)
            .filter(|(_, &s)| s == shard)
            .map(|(r, _)| r.clone())
            .collect();
        if let Some(q) = ins.source.as_mut() {
            if let SetExpr::Values(v) = q.body.as_mut() {
                v.rows = mine;
            }
        }
        out.push((shard, Statement::Insert(ins.clone()).to_string()));
    }
    Ok(SplitInsert {
        parts: out,
        returning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_to_their_shards_in_order() {
        let parts = split_insert(
            "INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')",
            &[1, 0, 1, 2],
        )
        .unwrap();
        assert!(!parts.returning);
        assert_eq!(
            parts.parts,
            vec![
                (
                    0,
                    "INSERT INTO users (id, name) VALUES (2, 'b')".to_string()
                ),
                (
                    1,
                    "INSERT INTO users (id, name) VALUES (1, 'a'), (3, 'c')".to_string()
                ),
                (
                    2,
                    "INSERT INTO users (id, name) VALUES (4, 'd')".to_string()
                ),
            ]
        );
        let ret = split_insert("INSERT INTO t (id) VALUES (1), (2) RETURNING id", &[1, 0]).unwrap();
        assert!(ret.returning);
        assert_eq!(
            ret.parts,
            vec![
                (0, "INSERT INTO t (id) VALUES (2) RETURNING id".to_string()),
                (1, "INSERT INTO t (id) VALUES (1) RETURNING id".to_string()),
            ]
        );
        assert!(split_insert(
            "INSERT INTO t (id) VALUES (1), (2) ON CONFLICT DO NOTHING RETURNING id",
            &[0, 1]
        )
        .is_err());
        assert!(split_insert("INSERT INTO t (id) VALUES (1)", &[0, 1]).is_err());
    }
}
