//! The steps of `reshard run` and `reshard abort`, each idempotent so a run that died at any
//! point continues from the state recorded in the catalog.
//!
//! States: planned → schema → copying → synced → cutover → switched → done (or aborted).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::plan::{self, Move};
use super::{admin_target, connect, open_catalog, quoted, scheme_tables, wait_until, SchemeTable};
use crate::catalog::{BucketMove, Catalog, Job};
use crate::config::Config;

/// How long the cutover waits for proxies to drain, and for the target to catch up.
const DRAIN_WAIT: Duration = Duration::from_secs(20);
const CATCH_UP_WAIT: Duration = Duration::from_secs(20);
/// How long the copy may show no progress at all before the run stops with advice.
const STALL_LIMIT: Duration = Duration::from_secs(120);
/// Rows deleted from a source per statement during cleanup.
const DELETE_BATCH: i64 = 5000;

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

/// One (source, target) pair of a job, with its buckets and replication object name.
struct Pair {
    source: String,
    target: String,
    buckets: Vec<i32>,
    name: String,
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

fn pairs(cfg: &Config, job: &Job) -> Vec<Pair> {
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

struct Ctx<'a> {
    cfg: &'a Config,
    catalog: Catalog,
    opts: &'a Options,
    buckets: u32,
    tables: Vec<SchemeTable>,
    /// For a directory move: the key whose rows move.
    key: Option<String>,
}

impl Ctx<'_> {
    async fn shard(&self, name: &str) -> Result<tokio_postgres::Client, String> {
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
    fn pred(&self, t: &SchemeTable, p: &Pair) -> String {
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
        format!(
            "({})::int",
            crate::router::hash::bucket_sql(&t.key, t.key_type, self.buckets)
        )
    }

    fn stop_at(&self, step: &str) -> Result<(), String> {
        if self.opts.stop_at.as_deref() == Some(step) {
            return Err(format!("stopped before step {step} (--stop-at)"));
        }
        Ok(())
    }
}

fn sqlerr(what: &str) -> impl Fn(tokio_postgres::Error) -> String + '_ {
    move |e| match e.as_db_error() {
        Some(d) => format!("{what}: {}", d.message()),
        None => format!("{what}: {e}"),
    }
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

/// Step 1: create the scheme's tables on targets that lack them, from a source's catalog
/// (`pg_dump --schema-only`: columns, indexes, constraints, owner and grants).
async fn copy_schema(ctx: &Ctx<'_>, pairs: &[Pair]) -> Result<(), String> {
    let bins = crate::localpg::PgBinaries::find().map_err(|e| e.to_string())?;
    for p in pairs {
        let tgt = ctx.shard(&p.target).await?;
        for t in &ctx.tables {
            let exists: bool = tgt
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted(&t.name)])
                .await
                .map_err(sqlerr("checking the target's tables"))?
                .get(0);
            if exists {
                continue;
            }
            let src = ctx
                .cfg
                .shards
                .iter()
                .find(|s| s.name == p.source)
                .ok_or("unknown source shard")?;
            let a = admin_target(&src.target, ctx.opts.admin_user.as_deref());
            let mut cmd = tokio::process::Command::new(bins.bin("pg_dump"));
            cmd.args([
                "--schema-only",
                "--no-publications",
                "--no-subscriptions",
                "-t",
            ])
            .arg(quoted(&t.name))
            .args([
                "-h",
                &a.host,
                "-p",
                &a.port.to_string(),
                "-U",
                &a.user,
                "-d",
                &a.dbname,
            ]);
            if let Some(pw) = &a.password {
                cmd.env("PGPASSWORD", pw);
            }
            let dump = cmd
                .output()
                .await
                .map_err(|e| format!("running pg_dump: {e}"))?;
            if !dump.status.success() {
                return Err(format!(
                    "pg_dump of {} from {}: {}",
                    t.name,
                    p.source,
                    String::from_utf8_lossy(&dump.stderr).trim()
                ));
            }
            // Recent pg_dump versions wrap the script in psql meta-commands (`\\restrict`);
            // the server only takes SQL.
            let sql: String = String::from_utf8_lossy(&dump.stdout)
                .lines()
                .filter(|l| !l.starts_with('\\'))
                .collect::<Vec<_>>()
                .join("\n");
            tgt.batch_execute(&sql)
                .await
                .map_err(sqlerr(&format!("creating {} on {}", t.name, p.target)))?;
            // pg_dump's search_path setting must not leak into later statements.
            tgt.batch_execute("RESET ALL")
                .await
                .map_err(sqlerr("reset"))?;
            tracing::info!(table = %t.name, shard = %p.target, "table created on the target");
        }
    }
    Ok(())
}

fn in_list(buckets: &[i32]) -> String {
    buckets
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// libpq conninfo value quoting.
fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Steps 2-3: a filtered publication on each source, a copying subscription on each target.
async fn start_replication(ctx: &Ctx<'_>, pairs: &[Pair]) -> Result<(), String> {
    for p in pairs {
        let src = ctx.shard(&p.source).await?;
        let tgt = ctx.shard(&p.target).await?;
        let has_sub: bool = tgt
            .query_one(
                "SELECT count(*) > 0 FROM pg_subscription WHERE subname = $1",
                &[&p.name],
            )
            .await
            .map_err(sqlerr("reading subscriptions"))?
            .get(0);
        if has_sub {
            continue;
        }
        // Left over from an earlier attempt: the target does not own these buckets yet.
        for t in &ctx.tables {
            tgt.execute(
                &format!("DELETE FROM {} x WHERE {}", quoted(&t.name), ctx.pred(t, p)),
                &[],
            )
            .await
            .map_err(sqlerr("clearing the target"))?;
        }
        let has_pub: bool = src
            .query_one(
                "SELECT count(*) > 0 FROM pg_publication WHERE pubname = $1",
                &[&p.name],
            )
            .await
            .map_err(sqlerr("reading publications"))?
            .get(0);
        if !has_pub {
            let list: Vec<String> = ctx
                .tables
                .iter()
                .map(|t| format!("{} WHERE ({})", quoted(&t.name), ctx.pred(t, p)))
                .collect();
            src.batch_execute(&format!(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert, update, delete')",
                p.name,
                list.join(", ")
            ))
            .await
            .map_err(sqlerr(&format!(
                "creating publication {} on {}",
                p.name, p.source
            )))?;
        }
        let s = ctx
            .cfg
            .shards
            .iter()
            .find(|s| s.name == p.source)
            .ok_or("unknown shard")?;
        let a = admin_target(&s.target, ctx.opts.admin_user.as_deref());
        let mut conninfo = format!(
            "host={} port={} dbname={} user={}",
            conninfo_value(&a.host),
            a.port,
            conninfo_value(&a.dbname),
            conninfo_value(&a.user)
        );
        if let Some(pw) = &a.password {
            conninfo.push_str(&format!(" password={}", conninfo_value(pw)));
        }
        tgt.batch_execute(&format!(
            "CREATE SUBSCRIPTION {} CONNECTION '{}' PUBLICATION {} WITH (copy_data = true)",
            p.name,
            conninfo.replace('\'', "''"),
            p.name
        ))
        .await
        .map_err(sqlerr(&format!(
            "creating subscription {} on {}",
            p.name, p.target
        )))?;
        tracing::info!(publication = %p.name, source = %p.source, target = %p.target, "replication started");
    }
    Ok(())
}

/// Wait until every subscription has copied its tables; returns the rows now on the targets
/// in the moving buckets. Shows a progress bar per (pair, table) when asked.
async fn wait_synced(ctx: &Ctx<'_>, job: i64, pairs: &[Pair]) -> Result<i64, String> {
    let bars = indicatif::MultiProgress::new();
    if !ctx.opts.progress {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut work = Vec::new();
    for p in pairs {
        let src = ctx.shard(&p.source).await?;
        let tgt = ctx.shard(&p.target).await?;
        for t in &ctx.tables {
            let total: i64 = src
                .query_one(
                    &format!(
                        "SELECT count(*)::bigint FROM {} x WHERE {}",
                        quoted(&t.name),
                        ctx.pred(t, p)
                    ),
                    &[],
                )
                .await
                .map_err(sqlerr("counting the source"))?
                .get(0);
            let bar = bars.add(indicatif::ProgressBar::new(total.max(0) as u64));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:30} {bar:30} {pos}/{len} rows {per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(format!("{} {}->{}", t.name, p.source, p.target));
            work.push((p, t, bar));
        }
        drop(src);
        drop(tgt);
    }
    let mut clients: BTreeMap<String, tokio_postgres::Client> = BTreeMap::new();
    let mut last_progress = (i64::MIN, i64::MIN);
    let mut since = Instant::now();
    loop {
        // A target or source restarting mid-copy: the subscription reconnects by itself;
        // this loop reconnects too and goes on (a restart is no progress, not a failure).
        let polled = async {
            for p in pairs {
                for shard in [&p.target, &p.source] {
                    if !clients.contains_key(shard) {
                        clients.insert(shard.clone(), ctx.shard(shard).await?);
                    }
                }
            }
            poll_sync(ctx, pairs, &work, &clients).await
        }
        .await;
        let (pending, rows) = match polled {
            Ok((pending, rows, bytes, lag)) => {
                if let Err(e) = ctx.catalog.set_job_progress(job, rows, bytes, lag).await {
                    tracing::warn!(error = %e, "cannot record the copy's progress");
                }
                (pending, rows)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the copy's progress; retrying");
                clients.clear();
                last_progress
            }
        };
        if pending == 0 {
            for (_, _, bar) in &work {
                bar.finish();
            }
            return Ok(rows);
        }
        if (pending, rows) != last_progress {
            last_progress = (pending, rows);
            since = Instant::now();
        } else if since.elapsed() > STALL_LIMIT {
            return Err(format!(
                "the copy made no progress for {STALL_LIMIT:?} ({pending} tables not yet synchronised); \
                 check the targets' logs and max_logical_replication_workers / max_worker_processes \
                 (each source needs an apply worker and sync workers on its target); run again to resume"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One look at the copy: tables not yet synchronised, rows and bytes on the targets, and
/// the WAL the subscriptions have not confirmed yet (replication lag, bytes).
async fn poll_sync(
    ctx: &Ctx<'_>,
    pairs: &[Pair],
    work: &[(&Pair, &SchemeTable, indicatif::ProgressBar)],
    clients: &BTreeMap<String, tokio_postgres::Client>,
) -> Result<(i64, i64, i64, i64), String> {
    let mut pending = 0i64;
    let mut lag = 0i64;
    for p in pairs {
        let n: i64 = clients[&p.target]
            .query_one(
                "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid \
                 WHERE s.subname = $1 AND r.srsubstate NOT IN ('r', 's')",
                &[&p.name],
            )
            .await
            .map_err(sqlerr("reading the subscription state"))?
            .get(0);
        pending += n;
        let l: i64 = clients[&p.source]
            .query_one(
                "SELECT coalesce(sum(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)::bigint \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&p.name],
            )
            .await
            .map_err(sqlerr("reading the replication lag"))?
            .get(0);
        lag += l;
    }
    let (mut rows, mut bytes) = (0, 0);
    for (p, t, bar) in work {
        let r = clients[&p.target]
            .query_one(
                &format!(
                    "SELECT count(*)::bigint, coalesce(sum(pg_column_size(x.*)), 0)::bigint FROM {} x WHERE {}",
                    quoted(&t.name),
                    ctx.pred(t, p)
                ),
                &[],
            )
            .await
            .map_err(sqlerr("counting the target"))?;
        let n: i64 = r.get(0);
        bar.set_position(n.max(0) as u64);
        rows += n;
        bytes += r.get::<_, i64>(1);
    }
    Ok((pending, rows, bytes, lag))
}

/// Row count and checksum of the moving buckets of every table, on one shard.
async fn fingerprint(
    ctx: &Ctx<'_>,
    c: &tokio_postgres::Client,
    p: &Pair,
) -> Result<Vec<(i64, i64)>, String> {
    let mut out = Vec::new();
    for t in &ctx.tables {
        let r = c
            .query_one(
                &format!(
                    "SELECT count(*)::bigint, coalesce(sum(hashtext(x::text)::bigint), 0)::bigint FROM {} x WHERE {}",
                    quoted(&t.name),
                    ctx.pred(t, p)
                ),
                &[],
            )
            .await
            .map_err(sqlerr("verifying"))?;
        out.push((r.get(0), r.get(1)));
    }
    Ok(out)
}

/// Steps 4-5: hold, drain, verify caught up, switch. Returns the pause in milliseconds.
async fn cutover(ctx: &Ctx<'_>, job: &Job, pairs: &[Pair]) -> Result<f64, String> {
    let mut sources: Vec<String> = pairs.iter().map(|p| p.source.clone()).collect();
    sources.sort();
    sources.dedup();
    let catalog = &ctx.catalog;
    let started = Instant::now();
    catalog
        .set_hold(job.id, &job.scheme, &sources)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let drained = wait_until(DRAIN_WAIT, Duration::from_millis(10), || async {
            let live = catalog.live_proxies(10.0).await.map_err(|e| e.to_string())?;
            let acked = catalog.acks(job.id, "held").await.map_err(|e| e.to_string())?;
            Ok(live.iter().all(|p| acked.contains(p)))
        })
        .await?;
        if !drained {
            let live = catalog.live_proxies(10.0).await.map_err(|e| e.to_string())?;
            let acked = catalog.acks(job.id, "held").await.map_err(|e| e.to_string())?;
            let missing: Vec<&String> = live.iter().filter(|p| !acked.contains(p)).collect();
            return Err(format!(
                "proxies {missing:?} still had transactions on {sources:?} after {DRAIN_WAIT:?}; nothing was switched, run again"
            ));
        }
        let mut conns = Vec::new();
        for p in pairs {
            conns.push((ctx.shard(&p.source).await?, ctx.shard(&p.target).await?));
        }
        // A prepared transaction on a source (a two-phase commit whose coordinator died) may
        // still commit there later, after the switch: settle those first.
        for (p, (s, _)) in pairs.iter().zip(&conns) {
            let n: i64 = s
                .query_one(
                    "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()",
                    &[],
                )
                .await
                .map_err(sqlerr("reading prepared transactions"))?
                .get(0);
            if n > 0 {
                return Err(format!(
                    "{n} prepared transactions wait on source {} (`shardgate twopc list`); the proxies' recovery settles them; nothing was switched, run again",
                    p.source
                ));
            }
        }
        let mut last = String::new();
        let deadline = Instant::now() + CATCH_UP_WAIT;
        let caught_up = 'wait: loop {
            // Every side of every pair scans at once: the pause is one scan, not a sum.
            let scans = pairs.iter().zip(&conns).map(|(p, (s, t))| async move {
                let (a, b) = futures_util::future::join(fingerprint(ctx, s, p), fingerprint(ctx, t, p)).await;
                Ok::<_, String>((p, a?, b?))
            });
            let mut equal = true;
            for r in futures_util::future::join_all(scans).await {
                let (p, a, b) = r?;
                if a != b {
                    last = format!("{}->{}: source {a:?}, target {b:?}", p.source, p.target);
                    equal = false;
                }
            }
            if equal {
                break 'wait true;
            }
            if Instant::now() > deadline {
                break 'wait false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if !caught_up {
            return Err(format!(
                "the targets did not catch up within {CATCH_UP_WAIT:?} ({last}); nothing was switched, run again"
            ));
        }
        if let (Some(key), [m]) = (&job.key, job.moves.as_slice()) {
            catalog
                .switch_directory(job.id, &job.scheme, key, &m.target)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        let live = catalog
            .bucket_map(&job.scheme)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the bucket map disappeared")?;
        let moves: Vec<Move> = job
            .moves
            .iter()
            .map(|m| Move {
                bucket: m.bucket as u32,
                from: m.source.clone(),
                to: m.target.clone(),
            })
            .collect();
        let next = plan::apply(&live.shards, &moves);
        catalog
            .switch_map(job.id, &job.scheme, job.from_version, &next)
            .await
            .map_err(|e| e.to_string())?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    }
    .await;
    match result {
        Ok(ms) => {
            tracing::info!(
                job = job.id,
                pause_ms = ms,
                "cutover done: bucket map switched"
            );
            Ok(ms)
        }
        Err(e) => {
            let _ = catalog.clear_hold(job.id).await;
            // Only a cutover that did not switch goes back to `synced`: if the switch
            // committed and only its answer was lost, the job stays switched.
            let _ = catalog.job_state_if(job.id, "cutover", "synced", &e).await;
            Err(format!("cutover failed: {e}"))
        }
    }
}

/// Step 6: stop replication (first, so deletes on the sources cannot reach the targets),
/// delete the moved rows from the sources in batches, drop the publications.
async fn cleanup(ctx: &Ctx<'_>, pairs: &[Pair]) -> Result<(), String> {
    for p in pairs {
        let tgt = ctx.shard(&p.target).await?;
        tgt.batch_execute(&format!("DROP SUBSCRIPTION IF EXISTS {}", p.name))
            .await
            .map_err(sqlerr(&format!(
                "dropping subscription {} on {}",
                p.name, p.target
            )))?;
    }
    for p in pairs {
        let src = ctx.shard(&p.source).await?;
        for t in &ctx.tables {
            let sql = format!(
                "DELETE FROM {name} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {name} x WHERE {expr} LIMIT {DELETE_BATCH}))",
                name = quoted(&t.name),
                expr = ctx.pred(t, p)
            );
            while src
                .execute(&sql, &[])
                .await
                .map_err(sqlerr("deleting moved rows"))?
                > 0
            {}
        }
        src.batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", p.name))
            .await
            .map_err(sqlerr("dropping the publication"))?;
    }
    Ok(())
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
        for t in &ctx.tables {
            let exists: bool = tgt
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted(&t.name)])
                .await
                .map_err(sqlerr("checking the target"))?
                .get(0);
            if exists {
                tgt.execute(
                    &format!(
                        "DELETE FROM {} x WHERE {}",
                        quoted(&t.name),
                        ctx.pred(t, &p)
                    ),
                    &[],
                )
                .await
                .map_err(sqlerr("removing copied rows from the target"))?;
            }
        }
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
