//! Steps 1-3 of a move: the scheme's tables onto the targets, then a filtered publication
//! on each source and a copying subscription on each target, and waiting (with progress
//! bars and progress recorded in the catalog) until every table is synchronised.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::ctx::{sqlerr, table_exists, Ctx, Pair};
use super::{admin_target, quoted, SchemeTable};

/// How long the copy may show no progress at all before the run stops with advice.
const STALL_LIMIT: Duration = Duration::from_secs(120);

/// Step 1: create the scheme's tables on targets that lack them, from a source's catalog
/// (`pg_dump --schema-only`: columns, indexes, constraints, owner and grants).
pub(super) async fn copy_schema(ctx: &Ctx<'_>, pairs: &[Pair]) -> Result<(), String> {
    let bins = crate::localpg::PgBinaries::find().map_err(|e| e.to_string())?;
    for p in pairs {
        let tgt = ctx.shard(&p.target).await?;
        for t in &ctx.tables {
            if table_exists(&tgt, &t.name).await? {
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

/// libpq conninfo value quoting.
fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Steps 2-3: a filtered publication on each source, a copying subscription on each target.
pub(super) async fn start_replication(ctx: &Ctx<'_>, pairs: &[Pair]) -> Result<(), String> {
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
        ctx.clear_moving(&tgt, p).await?;
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
pub(super) async fn wait_synced(ctx: &Ctx<'_>, job: i64, pairs: &[Pair]) -> Result<i64, String> {
    let bars = indicatif::MultiProgress::new();
    if !ctx.opts.progress {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut work = Vec::new();
    for p in pairs {
        let src = ctx.shard(&p.source).await?;
        let tgt = ctx.shard(&p.target).await?;
        for t in &ctx.tables {
            let (total, _) = ctx
                .moving(&src, t, p, "0")
                .await
                .map_err(sqlerr("counting the source"))?;
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
        let (n, b) = ctx
            .moving(&clients[&p.target], t, p, "sum(pg_column_size(x.*))")
            .await
            .map_err(sqlerr("counting the target"))?;
        bar.set_position(n.max(0) as u64);
        rows += n;
        bytes += b;
    }
    Ok((pending, rows, bytes, lag))
}
