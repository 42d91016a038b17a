//! The entry points of `reshard run|verify|abort` and `directory move`: plan or resume a job
//! and drive it through its steps (`copy`, `cutover`), each idempotent so a run that died at
//! any point continues from the state recorded in the catalog.
//!
//! States: planned → schema → copying → synced → cutover → switched → done (or aborted).

use std::time::Instant;

use super::copy::{copy_schema, start_replication, wait_synced};
use super::ctx::{pairs, sqlerr, Ctx};
use super::cutover::{cleanup, cutover, fingerprint};
use super::{open_catalog, plan, scheme_tables};
use crate::catalog::{BucketMove, Catalog, Job};
use crate::config::Config;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The role that creates publications and subscriptions (REPLICATION; superuser on PG 15).
    pub admin_user: Option<String>,
    /// Show progress bars on stderr.
    pub progress: bool,
    /// Stop (as if the tool died) when this step is reached: "copying", "synced", "cutover".
    pub stop_at: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub job: i64,
    pub buckets_moved: usize,
    pub rows_copied: i64,
    pub copy_secs: f64,
    /// From the hold to the map switch.
    pub pause_ms: f64,
    pub done: bool,
}

/// Plan (or resume) and carry out the move of `scheme` onto `targets`.
pub async fn run(
    cfg: &Config,
    scheme: &str,
    targets: &[String],
    opts: &Options,
) -> Result<Outcome, String> {
    let catalog = open_catalog(cfg).await?;
    let (buckets, tables) = scheme_tables(cfg, scheme)?;
    if buckets == 0 {
        return Err(format!(
            "scheme {scheme} is a directory scheme: move its keys with `shardgate directory move`"
        ));
    }
    if let Some((d, _)) = cfg
        .schemes
        .iter()
        .find(|(_, s)| matches!(s, crate::config::Scheme::Directory(d) if d.fallback == scheme))
    {
        // Keys of the directory scheme without an entry live where this scheme's map says:
        // their rows would have to move too, and they are not in this scheme's tables.
        return Err(format!(
            "scheme {scheme} is the fallback of directory scheme {d}: resharding it would move keys of {d} without their rows; pin those keys with directory entries and remove the fallback first"
        ));
    }
    if tables.is_empty() {
        return Err(format!("scheme {scheme} has no tables in the config"));
    }
    let job = match catalog
        .open_job(Some(scheme))
        .await
        .map_err(|e| e.to_string())?
    {
        Some(j) if j.key.is_some() => {
            return Err(format!(
                "job {} is moving directory key {:?} of scheme {scheme}; finish it with `directory move` or abort it",
                j.id, j.key
            ))
        }
        Some(j) => j,
        None => {
            for t in targets {
                if cfg.shard_id(t).is_none() {
                    return Err(format!("shard \"{t}\" is not in the config's shards:"));
                }
            }
            let live = catalog
                .bucket_map(scheme)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "scheme {scheme} has no bucket map in the catalog yet (start a proxy once)"
                    )
                })?;
            let moves = plan::plan(&live.shards, targets)?;
            if moves.is_empty() {
                return Ok(Outcome {
                    done: true,
                    ..Outcome::default()
                });
            }
            let rows: Vec<BucketMove> = moves
                .iter()
                .map(|m| BucketMove {
                    bucket: m.bucket as i32,
                    source: m.from.clone(),
                    target: m.to.clone(),
                })
                .collect();
            let id = catalog
                .create_job(scheme, live.version, &rows, None)
                .await
                .map_err(|e| e.to_string())?;
            catalog.job(id).await.map_err(|e| e.to_string())?
        }
    };
    let ctx = Ctx {
        cfg,
        catalog,
        opts,
        buckets,
        tables,
        key: None,
    };
    drive(&ctx, &job).await
}

/// Move every row of directory key `key` of `scheme` (in every table of the scheme) to
/// shard `to`, then point the key's entry there: the same steps as a bucket move.
pub async fn move_key(
    cfg: &Config,
    scheme: &str,
    key: &str,
    to: &str,
    opts: &Options,
) -> Result<Outcome, String> {
    let catalog = open_catalog(cfg).await?;
    let (_, tables) = scheme_tables(cfg, scheme)?;
    if tables.is_empty() {
        return Err(format!("scheme {scheme} has no tables in the config"));
    }
    if cfg.shard_id(to).is_none() {
        return Err(format!("shard \"{to}\" is not in the config's shards:"));
    }
    let job = match catalog
        .open_job(Some(scheme))
        .await
        .map_err(|e| e.to_string())?
    {
        Some(j) if j.key.as_deref() == Some(key) => j,
        Some(j) => {
            return Err(format!(
                "job {} of scheme {scheme} is still in progress; finish or abort it first",
                j.id
            ))
        }
        None => {
            let from = current_owner(cfg, &catalog, scheme, key, tables[0].key_type).await?;
            if from == to {
                return Ok(Outcome {
                    done: true,
                    ..Outcome::default()
                });
            }
            let moves = [BucketMove {
                bucket: -1,
                source: from,
                target: to.to_owned(),
            }];
            let id = catalog
                .create_job(scheme, 0, &moves, Some(key))
                .await
                .map_err(|e| e.to_string())?;
            catalog.job(id).await.map_err(|e| e.to_string())?
        }
    };
    let ctx = Ctx {
        cfg,
        catalog,
        opts,
        buckets: 0,
        tables,
        key: Some(key.to_owned()),
    };
    drive(&ctx, &job).await
}

/// Where a directory key's rows are now: its entry, else its fallback scheme's placement
/// (with the live bucket maps).
async fn current_owner(
    cfg: &Config,
    catalog: &Catalog,
    scheme: &str,
    key: &str,
    key_type: crate::config::KeyType,
) -> Result<String, String> {
    if let Some(e) = catalog
        .directory_get(scheme, key)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(e);
    }
    let router = crate::router::Router::new(std::sync::Arc::new(cfg.clone()));
    for (name, s) in &cfg.schemes {
        if let crate::config::Scheme::Hash(h) = s {
            if h.function == crate::config::HashFunction::Postgres {
                if let Some(m) = catalog.bucket_map(name).await.map_err(|e| e.to_string())? {
                    let ids: Option<Vec<usize>> =
                        m.shards.iter().map(|s| cfg.shard_id(s)).collect();
                    if let Some(ids) = ids {
                        router.set_bucket_map(name, ids);
                    }
                }
            }
        }
    }
    let value = match key_type {
        crate::config::KeyType::Bigint => crate::router::KeyValue::Int(
            key.parse()
                .map_err(|_| format!("key {key:?} is not a bigint"))?,
        ),
        crate::config::KeyType::Text => crate::router::KeyValue::Text(key.to_owned()),
        crate::config::KeyType::Uuid => crate::router::KeyValue::Uuid(
            crate::pgtext::parse_uuid(key).ok_or_else(|| format!("key {key:?} is not a uuid"))?,
        ),
    };
    let shard = router.shard_of_key(scheme, &value, &NoEntries)?;
    Ok(cfg.shards[shard].name.clone())
}

/// A directory with no entries: every key goes to its fallback.
struct NoEntries;

impl crate::router::DirectoryLookup for NoEntries {
    fn lookup(&self, _: &str, _: &crate::router::KeyValue) -> Option<Option<usize>> {
        Some(None)
    }
}

/// Carry a recorded job through its remaining steps.
async fn drive(ctx: &Ctx<'_>, job: &Job) -> Result<Outcome, String> {
    let cfg = ctx.cfg;
    let mut out = Outcome {
        job: job.id,
        buckets_moved: job.moves.len(),
        ..Outcome::default()
    };
    let pairs = pairs(cfg, job);
    let mut state = job.state.clone();
    let set = |state: &'static str, detail: String| {
        let c = ctx.catalog.clone();
        async move {
            c.set_job_state(job.id, state, &detail)
                .await
                .map_err(|e| e.to_string())
        }
    };
    if state == "planned" || state == "schema" {
        set("schema", String::new()).await?;
        copy_schema(ctx, &pairs).await?;
        set("copying", String::new()).await?;
        state = "copying".into();
    }
    if state == "copying" {
        ctx.stop_at("copying")?;
        let started = Instant::now();
        start_replication(ctx, &pairs).await?;
        ctx.stop_at("catch-up")?;
        out.rows_copied = wait_synced(ctx, job.id, &pairs).await?;
        out.copy_secs = started.elapsed().as_secs_f64();
        set(
            "synced",
            format!("{} rows in {:.1} s", out.rows_copied, out.copy_secs),
        )
        .await?;
        state = "synced".into();
    }
    if state == "synced" || state == "cutover" {
        ctx.stop_at("cutover")?;
        set("cutover", String::new()).await?;
        out.pause_ms = cutover(ctx, job, &pairs).await?;
        if let Err(e) = ctx.catalog.set_job_pause(job.id, out.pause_ms).await {
            tracing::warn!(error = %e, "cannot record the cutover pause");
        }
        state = "switched".into();
    }
    if state == "switched" {
        cleanup(ctx, &pairs).await?;
        set("done", format!("pause {:.0} ms", out.pause_ms)).await?;
        out.done = true;
    }
    Ok(out)
}

/// Compare the moving rows of the unfinished job on its sources and targets now: one line
/// per (pair, table) with row counts and checksums, and whether they agree. While writes
/// continue, a small difference is replication lag; the cutover repeats this with writes held.
pub async fn verify(cfg: &Config, opts: &Options) -> Result<(i64, Vec<(String, bool)>), String> {
    let catalog = open_catalog(cfg).await?;
    let job = catalog
        .open_job(None)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no resharding job in progress")?;
    let (buckets, tables) = scheme_tables(cfg, &job.scheme)?;
    let ctx = Ctx {
        cfg,
        catalog,
        opts,
        buckets,
        tables,
        key: job.key.clone(),
    };
    let mut lines = Vec::new();
    for p in pairs(cfg, &job) {
        let (s, t) = (ctx.shard(&p.source).await?, ctx.shard(&p.target).await?);
        let a = fingerprint(&ctx, &s, &p).await?;
        let b = fingerprint(&ctx, &t, &p).await?;
        for ((table, x), y) in ctx.tables.iter().zip(&a).zip(&b) {
            lines.push((
                format!(
                    "{} {} -> {}: source {} rows (checksum {}), target {} rows (checksum {})",
                    table.name, p.source, p.target, x.0, x.1, y.0, y.1
                ),
                x == y,
            ));
        }
    }
    Ok((job.id, lines))
}

/// Undo the open job of `scheme` (or any) that has not cut over.
pub async fn abort(cfg: &Config, scheme: Option<&str>, opts: &Options) -> Result<i64, String> {
    let catalog = open_catalog(cfg).await?;
    let job = catalog
        .open_job(scheme)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no resharding job in progress")?;
    let switched = job.state == "switched"
        || match (&job.key, job.moves.first()) {
            (Some(key), Some(m)) => {
                catalog
                    .directory_get(&job.scheme, key)
                    .await
                    .map_err(|e| e.to_string())?
                    .as_deref()
                    == Some(m.target.as_str())
            }
            _ => catalog
                .bucket_map(&job.scheme)
                .await
                .map_err(|e| e.to_string())?
                .is_some_and(|m| m.version != job.from_version),
        };
    if switched {
        return Err(format!(
            "job {} has already cut over (the live map or entry names the targets); run `shardgate reshard run` to finish its cleanup",
            job.id
        ));
    }
    let (buckets, tables) = scheme_tables(cfg, &job.scheme)?;
    let ctx = Ctx {
        cfg,
        catalog: catalog.clone(),
        opts,
        buckets,
        tables,
        key: job.key.clone(),
    };
    catalog
        .clear_hold(job.id)
        .await
        .map_err(|e| e.to_string())?;
    for p in pairs(cfg, &job) {
        let tgt = ctx.shard(&p.target).await?;
        tgt.batch_execute(&format!("DROP SUBSCRIPTION IF EXISTS {}", p.name))
            .await
            .map_err(sqlerr("dropping the subscription"))?;
        ctx.clear_moving(&tgt, &p).await?;
        let src = ctx.shard(&p.source).await?;
        src.batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", p.name))
            .await
            .map_err(sqlerr("dropping the publication"))?;
    }
    catalog
        .set_job_state(job.id, "aborted", "")
        .await
        .map_err(|e| e.to_string())?;
    Ok(job.id)
}
