//! What every step of a resharding job works with: the job's (source, target) pairs and
//! their replication object names, and `Ctx` (config, catalog, options, the scheme's tables)
//! with the SQL that selects a pair's moving rows.

use std::collections::BTreeMap;

use super::steps::Options;
use super::{admin_target, connect, quoted, SchemeTable};
use crate::catalog::{Catalog, Job};
use crate::config::Config;

/// One (source, target) pair of a job, with its buckets and replication object name.
pub(super) struct Pair {
    pub source: String,
    pub target: String,
    pub buckets: Vec<i32>,
    pub name: String,
}

/// Replication object names must be unique per server, and jobs are numbered per catalog:
/// the catalog database's name, hashed, tells apart clusters sharing servers.
fn catalog_tag(cfg: &Config) -> String {
    let db = match &cfg.catalog {
        crate::config::CatalogRef::Shard(i) => &cfg.shards[*i].target.dbname,
        crate::config::CatalogRef::Url(t) => &t.dbname,
    };
    let h = db.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    format!("{h:08x}")
}

pub(super) fn pairs(cfg: &Config, job: &Job) -> Vec<Pair> {
    let tag = catalog_tag(cfg);
    let mut by: BTreeMap<(String, String), Vec<i32>> = BTreeMap::new();
    for m in &job.moves {
        by.entry((m.source.clone(), m.target.clone()))
            .or_default()
            .push(m.bucket);
    }
    by.into_iter()
        .map(|((source, target), buckets)| {
            let si = cfg.shard_id(&source).unwrap_or(usize::MAX);
            let ti = cfg.shard_id(&target).unwrap_or(usize::MAX);
            Pair {
                name: format!("sg_reshard_{tag}_{}_{si}_{ti}", job.id),
                source,
                target,
                buckets,
            }
        })
        .collect()
}

pub(super) struct Ctx<'a> {
    pub cfg: &'a Config,
    pub catalog: Catalog,
    pub opts: &'a Options,
    pub buckets: u32,
    pub tables: Vec<SchemeTable>,
    /// For a directory move: the key whose rows move.
    pub key: Option<String>,
}

impl Ctx<'_> {
    pub async fn shard(&self, name: &str) -> Result<tokio_postgres::Client, String> {
        let s = self
            .cfg
            .shards
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("shard \"{name}\" is not in the config"))?;
        connect(
            &admin_target(&s.target, self.opts.admin_user.as_deref()),
            name,
        )
        .await
    }

    /// The rows of `t` that move in pair `p`: the moving buckets (the bucket function's SQL
    /// form), or the directory key being moved. Inlined constants, so the same text serves
    /// as a publication row filter.
    pub fn pred(&self, t: &SchemeTable, p: &Pair) -> String {
        match &self.key {
            Some(k) => format!("{} = '{}'", quoted(&t.key), k.replace('\'', "''")),
            None => format!(
                "{} = ANY('{{{}}}'::int[])",
                self.expr(t),
                in_list(&p.buckets)
            ),
        }
    }

    /// The bucket of a row as an `int` (the bucket function's SQL form).
    fn expr(&self, t: &SchemeTable) -> String {
        super::bucket_expr(t, self.buckets)
    }

    /// `count(*)` and `agg` (a bigint aggregate over row `x`) of the rows of `t` moving in
    /// pair `p`, on the shard behind `c`.
    pub async fn moving(
        &self,
        c: &tokio_postgres::Client,
        t: &SchemeTable,
        p: &Pair,
        agg: &str,
    ) -> Result<(i64, i64), tokio_postgres::Error> {
        let sql = format!(
            "SELECT count(*)::bigint, coalesce({agg}, 0)::bigint FROM {} x WHERE {}",
            quoted(&t.name),
            self.pred(t, p)
        );
        let r = c.query_one(&sql, &[]).await?;
        Ok((r.get(0), r.get(1)))
    }

    /// Delete the rows moving in pair `p` from a target that does not own them (yet), in
    /// every table of the scheme it has.
    pub async fn clear_moving(&self, tgt: &tokio_postgres::Client, p: &Pair) -> Result<(), String> {
        for t in &self.tables {
            if table_exists(tgt, &t.name).await? {
                let sql = format!(
                    "DELETE FROM {} x WHERE {}",
                    quoted(&t.name),
                    self.pred(t, p)
                );
                tgt.execute(&sql, &[])
                    .await
                    .map_err(sqlerr("removing moving rows from the target"))?;
            }
        }
        Ok(())
    }

    pub fn stop_at(&self, step: &str) -> Result<(), String> {
        if self.opts.stop_at.as_deref() == Some(step) {
            return Err(format!("stopped before step {step} (--stop-at)"));
        }
        Ok(())
    }
}

/// Whether `table` exists on the shard behind `c`.
pub(super) async fn table_exists(c: &tokio_postgres::Client, table: &str) -> Result<bool, String> {
    Ok(
        c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted(table)])
            .await
            .map_err(sqlerr("checking a shard's tables"))?
            .get(0),
    )
}

pub(super) fn sqlerr(what: &str) -> impl Fn(tokio_postgres::Error) -> String + '_ {
    move |e| match e.as_db_error() {
        Some(d) => format!("{what}: {}", d.message()),
        None => format!("{what}: {e}"),
    }
}

fn in_list(buckets: &[i32]) -> String {
    buckets
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
