//! Steps 4-6 of a move: the cutover (hold, drain, verify caught up, switch) and the cleanup
//! (subscriptions first, then the moved rows on the sources, then the publications).

use std::time::{Duration, Instant};

use super::ctx::{sqlerr, Ctx, Pair};
use super::plan;
use super::{quoted, wait_until};
use crate::catalog::Job;

/// How long the cutover waits for proxies to drain, and for the target to catch up.
const DRAIN_WAIT: Duration = Duration::from_secs(20);
const CATCH_UP_WAIT: Duration = Duration::from_secs(20);
/// Rows deleted from a source per statement during cleanup.
const DELETE_BATCH: i64 = 5000;

/// Row count and checksum of the moving buckets of every table, on one shard.
pub(super) async fn fingerprint(
    ctx: &Ctx<'_>,
    c: &tokio_postgres::Client,
    p: &Pair,
) -> Result<Vec<(i64, i64)>, String> {
    let mut out = Vec::new();
    for t in &ctx.tables {
        let f = ctx
            .moving(c, t, p, "sum(hashtext(x::text)::bigint)")
            .await
            .map_err(sqlerr("verifying"))?;
        out.push(f);
    }
    Ok(out)
}

/// Steps 4-5: hold, drain, verify caught up, switch. Returns the pause in milliseconds.
pub(super) async fn cutover(ctx: &Ctx<'_>, job: &Job, pairs: &[Pair]) -> Result<f64, String> {
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
        let next = plan::apply(&live.shards, &super::job_moves(job));
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
pub(super) async fn cleanup(ctx: &Ctx<'_>, pairs: &[Pair]) -> Result<(), String> {
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
