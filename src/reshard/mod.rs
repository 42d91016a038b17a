//! Online resharding of a hash scheme (SPEC 12): plan, copy, catch up, verify, cut over,
//! clean up, each step recorded in the catalog so a crashed run resumes or aborts.
//!
//! The copy and the catch-up are one PostgreSQL mechanism: for each (source, target) pair a
//! publication on the source with a row filter on the moving buckets (the SQL form of the
//! bucket function) and a subscription on the target with `copy_data = true`. Postgres copies
//! the rows from a snapshot and streams every change committed after it, so no change is
//! missed or applied twice. The cutover asks every live proxy to hold new work for the source
//! shards (`frontend::holds`), waits for their acknowledgements (in-flight transactions done),
//! waits until the moving buckets agree on source and target (row counts and checksums, the
//! verification), then switches the bucket map in one catalog transaction that also lifts the
//! hold. Cleanup drops the subscriptions first (so deletes on the source cannot replicate) and
//! then deletes the moved rows from the sources in batches.
//!
//! Replication objects need a role with the REPLICATION attribute and the right to create
//! subscriptions (superuser on PostgreSQL 15): `--admin-user` names it; its password comes
//! from `SHARDGATE_ADMIN_PASSWORD` (or trust/peer rules).

mod copy;
mod ctx;
mod cutover;
pub mod plan;
mod steps;

use std::time::{Duration, Instant};

use crate::catalog::{BucketMove, Catalog, Job};
use crate::config::{Config, KeyType, PgTarget, Scheme, TableConfig};

pub use steps::{abort, move_key, run, verify, Options, Outcome};

/// A table of the scheme being moved.
#[derive(Debug, Clone)]
pub struct SchemeTable {
    pub name: String,
    pub key: String,
    pub key_type: KeyType,
}

/// The tables of `scheme`, and its bucket count.
pub fn scheme_tables(cfg: &Config, scheme: &str) -> Result<(u32, Vec<SchemeTable>), String> {
    let buckets = match cfg.schemes.get(scheme) {
        Some(Scheme::Hash(h)) if h.function == crate::config::HashFunction::Postgres => h.buckets,
        // A directory scheme moves one key at a time (`directory move`); no buckets.
        Some(Scheme::Directory(_)) => 0,
        Some(Scheme::Hash(_)) => {
            return Err(format!(
                "scheme {scheme} uses function: md5, which has no buckets; see docs/resharding.md for moving it to function: postgres"
            ))
        }
        Some(_) => return Err(format!("scheme {scheme} is not a hash scheme")),
        None => return Err(format!("no scheme named {scheme} in the config")),
    };
    let tables = cfg
        .tables
        .iter()
        .filter_map(|(name, t)| match t {
            TableConfig::Sharded {
                scheme: s,
                key,
                key_type,
            } if s == scheme => Some(SchemeTable {
                name: name.clone(),
                key: key.clone(),
                key_type: *key_type,
            }),
            _ => None,
        })
        .collect();
    Ok((buckets, tables))
}

/// The bucket of a row of `t` as an `int` (the bucket function's SQL form, SPEC 4.1).
pub fn bucket_expr(t: &SchemeTable, buckets: u32) -> String {
    format!(
        "({})::int",
        crate::router::hash::bucket_sql(&t.key, t.key_type, buckets)
    )
}

/// A table name as SQL (each dotted part quoted).
pub fn quoted(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// How the tool reaches each shard: the shard's URL, with the admin role when given.
pub fn admin_target(t: &PgTarget, admin_user: Option<&str>) -> PgTarget {
    let mut t = t.clone();
    if let Some(u) = admin_user {
        t.user = u.to_owned();
        t.password = std::env::var("SHARDGATE_ADMIN_PASSWORD").ok();
    }
    t
}

pub async fn connect(t: &PgTarget, what: &str) -> Result<tokio_postgres::Client, String> {
    let cfg = crate::catalog::pg_config(t, Duration::from_secs(10), "shardgate-reshard");
    let (client, conn) = cfg
        .connect(crate::tls::make_tls_connect())
        .await
        .map_err(|e| format!("{what}: cannot connect to {}: {e}", t.redacted_url()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Rows and bytes per moving bucket on its source, summed per (from, to).
#[derive(Debug, Clone, Default)]
pub struct Estimate {
    pub rows: i64,
    pub bytes: i64,
}

/// Count the rows and bytes of the moving buckets on their sources.
pub async fn estimate(
    cfg: &Config,
    scheme: &str,
    moves: &[plan::Move],
    admin_user: Option<&str>,
) -> Result<Vec<((String, String), Estimate)>, String> {
    let (buckets, tables) = scheme_tables(cfg, scheme)?;
    let mut out: Vec<((String, String), Estimate)> = Vec::new();
    let mut pairs: Vec<(String, String)> = moves
        .iter()
        .map(|m| (m.from.clone(), m.to.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    for (from, to) in pairs {
        let ids: Vec<i32> = moves
            .iter()
            .filter(|m| m.from == from && m.to == to)
            .map(|m| m.bucket as i32)
            .collect();
        let shard = cfg
            .shards
            .iter()
            .find(|s| s.name == from)
            .ok_or("unknown shard")?;
        let c = connect(&admin_target(&shard.target, admin_user), "estimate").await?;
        let mut e = Estimate::default();
        for t in &tables {
            let expr = bucket_expr(t, buckets);
            let sql = format!(
                "SELECT count(*)::bigint, coalesce(sum(pg_column_size(x.*)), 0)::bigint FROM {} x WHERE {expr} = ANY($1)",
                quoted(&t.name)
            );
            match c.query_one(&sql, &[&ids]).await {
                Ok(r) => {
                    e.rows += r.get::<_, i64>(0);
                    e.bytes += r.get::<_, i64>(1);
                }
                Err(err) => return Err(format!("estimating {} on {from}: {err}", t.name)),
            }
        }
        out.push(((from, to), e));
    }
    Ok(out)
}

/// A recorded job's moves as the planner's type.
pub(crate) fn job_moves(job: &Job) -> Vec<plan::Move> {
    job.moves
        .iter()
        .map(|m: &BucketMove| plan::Move {
            bucket: m.bucket as u32,
            from: m.source.clone(),
            to: m.target.clone(),
        })
        .collect()
}

/// What `reshard status` prints for one job.
pub fn describe(job: &Job) -> String {
    let moves = job_moves(job);
    let mut s = format!(
        "job {} scheme {}: {}{}\n",
        job.id,
        job.scheme,
        job.state,
        if job.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", job.detail)
        }
    );
    for r in plan::ranges(&moves) {
        s.push_str(&format!(
            "  buckets {}-{}: {} -> {}\n",
            r.first, r.last, r.from, r.to
        ));
    }
    s
}

/// Wait until `f` returns true, polling every `every`, for at most `max`.
pub(crate) async fn wait_until<F, Fut>(
    max: Duration,
    every: Duration,
    mut f: F,
) -> Result<bool, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let start = Instant::now();
    loop {
        if f().await? {
            return Ok(true);
        }
        if start.elapsed() > max {
            return Ok(false);
        }
        tokio::time::sleep(every).await;
    }
}

/// The catalog of `cfg`, connected, with its schema.
pub async fn open_catalog(cfg: &Config) -> Result<Catalog, String> {
    let target = match &cfg.catalog {
        crate::config::CatalogRef::Shard(i) => cfg.shards[*i].target.clone(),
        crate::config::CatalogRef::Url(t) => t.clone(),
    };
    let c = Catalog::connect(&target, cfg.pool.connect_timeout)
        .await
        .map_err(|e| e.to_string())?;
    c.ensure_schema().await.map_err(|e| e.to_string())?;
    Ok(c)
}
