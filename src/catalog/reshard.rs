//! Resharding state in the catalog (SPEC 12): jobs and their bucket moves, the cutover hold
//! that every proxy obeys, proxies' acknowledgements, proxy heartbeats, and the bucket-map
//! switch itself.
//!
//! The catalog is the truth; `NOTIFY shardgate_reshard` only wakes proxies early (they poll as
//! a backstop). The switch writes the next map version, points `bucket_map_current` at it,
//! marks the job switched and lifts the hold in one transaction, so a proxy sees either the old
//! map with the hold or the new map without it.

use super::{Catalog, CatalogError};

/// The channel proxies LISTEN on for holds and map switches.
pub const RESHARD_CHANNEL: &str = "shardgate_reshard";

/// One bucket that moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketMove {
    pub bucket: i32,
    pub source: String,
    pub target: String,
}

/// A resharding job as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub scheme: String,
    /// The step reached: planned, schema, copying, synced, cutover, switched, cleaned, done,
    /// aborted.
    pub state: String,
    pub detail: String,
    pub moves: Vec<BucketMove>,
    /// The bucket-map version the job started from (0 for a directory move).
    pub from_version: i64,
    /// A directory move: the key whose rows move (its one move has bucket -1).
    pub key: Option<String>,
}

/// The progress figures of the most recent job, for the proxies' metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub open_jobs: i64,
    pub rows_copied: i64,
    pub bytes_copied: i64,
    pub lag_bytes: i64,
    pub pause_ms: Option<f64>,
}

/// A hold: proxies wait before taking new connections to `shards` until it is lifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub job: i64,
    pub scheme: String,
    pub shards: Vec<String>,
    /// The shards the job moves rows to (a proxy must know them to take part).
    pub targets: Vec<String>,
}

/// A hold older than this is void: proxies stop obeying it and a switch needs a fresh one.
/// Both sides judge by the catalog's clock, so no proxy lifts a hold that a switch still
/// relies on. Longer than the tool's drain and catch-up waits together.
pub const HOLD_LEASE_SECS: i64 = 60;

impl Catalog {
    async fn notify(&self, payload: &str) -> Result<(), CatalogError> {
        let client = self.client().await?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&RESHARD_CHANNEL, &payload])
            .await
            .map_err(self.failed("notifying proxies"))?;
        Ok(())
    }

    /// Record a new job with its moves; fails if the scheme already has an unfinished job.
    pub async fn create_job(
        &self,
        scheme: &str,
        from_version: i64,
        moves: &[BucketMove],
        key: Option<&str>,
    ) -> Result<i64, CatalogError> {
        let what = || format!("recording a resharding job for scheme {scheme}");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed(what()))?;
        let row = tx
            .query_one(
                "INSERT INTO shardgate.reshard_jobs (scheme, state, from_version, key) \
                 VALUES ($1, 'planned', $2, $3) RETURNING id",
                &[&scheme, &from_version, &key],
            )
            .await
            .map_err(self.failed(what()))?;
        let id: i64 = row.get(0);
        let buckets: Vec<i32> = moves.iter().map(|m| m.bucket).collect();
        let sources: Vec<&str> = moves.iter().map(|m| m.source.as_str()).collect();
        let targets: Vec<&str> = moves.iter().map(|m| m.target.as_str()).collect();
        tx.execute(
            "INSERT INTO shardgate.reshard_moves (job, bucket, source, target) \
             SELECT $1, b, s, t FROM unnest($2::int[], $3::text[], $4::text[]) AS u(b, s, t)",
            &[&id, &buckets, &sources, &targets],
        )
        .await
        .map_err(self.failed(what()))?;
        tx.commit().await.map_err(self.failed(what()))?;
        Ok(id)
    }

    /// The unfinished job of `scheme`, if any (or of any scheme when `scheme` is None).
    pub async fn open_job(&self, scheme: Option<&str>) -> Result<Option<Job>, CatalogError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id FROM shardgate.reshard_jobs \
                 WHERE state NOT IN ('done', 'aborted') AND ($1::text IS NULL OR scheme = $1) \
                 ORDER BY id LIMIT 1",
                &[&scheme],
            )
            .await
            .map_err(self.failed("reading resharding jobs"))?;
        match row {
            None => Ok(None),
            Some(r) => self.job(r.get(0)).await.map(Some),
        }
    }

    /// The most recent jobs, newest first.
    pub async fn recent_jobs(&self, limit: i64) -> Result<Vec<Job>, CatalogError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM shardgate.reshard_jobs ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(self.failed("reading resharding jobs"))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(self.job(r.get(0)).await?);
        }
        Ok(out)
    }

    pub async fn job(&self, id: i64) -> Result<Job, CatalogError> {
        let client = self.client().await?;
        let what = || format!("reading resharding job {id}");
        let row = client
            .query_one(
                "SELECT scheme, state, detail, from_version, key FROM shardgate.reshard_jobs WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(self.failed(what()))?;
        let moves = client
            .query(
                "SELECT bucket, source, target FROM shardgate.reshard_moves WHERE job = $1 ORDER BY bucket",
                &[&id],
            )
            .await
            .map_err(self.failed(what()))?
            .iter()
            .map(|r| BucketMove {
                bucket: r.get(0),
                source: r.get(1),
                target: r.get(2),
            })
            .collect();
        Ok(Job {
            id,
            scheme: row.get(0),
            state: row.get(1),
            detail: row.get(2),
            from_version: row.get(3),
            key: row.get(4),
            moves,
        })
    }

    pub async fn set_job_state(
        &self,
        id: i64,
        state: &str,
        detail: &str,
    ) -> Result<(), CatalogError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE shardgate.reshard_jobs SET state = $2, detail = $3, updated_at = now() WHERE id = $1",
                &[&id, &state, &detail],
            )
            .await
            .map_err(self.failed(format!("recording step {state} of resharding job {id}")))?;
        Ok(())
    }

    /// Record the copy's progress (rows and bytes on the targets, replication lag).
    pub async fn set_job_progress(
        &self,
        id: i64,
        rows: i64,
        bytes: i64,
        lag: i64,
    ) -> Result<(), CatalogError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE shardgate.reshard_jobs SET rows_copied = $2, bytes_copied = $3, lag_bytes = $4, \
                 updated_at = now() WHERE id = $1",
                &[&id, &rows, &bytes, &lag],
            )
            .await
            .map_err(self.failed("recording resharding progress"))?;
        Ok(())
    }

    pub async fn set_job_pause(&self, id: i64, ms: f64) -> Result<(), CatalogError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE shardgate.reshard_jobs SET pause_ms = $2 WHERE id = $1",
                &[&id, &ms],
            )
            .await
            .map_err(self.failed("recording the cutover pause"))?;
        Ok(())
    }

    /// Open jobs, and the figures of the most recent job.
    pub async fn progress(&self) -> Result<Progress, CatalogError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM shardgate.reshard_jobs WHERE state NOT IN ('done', 'aborted')), \
                        j.rows_copied, j.bytes_copied, j.lag_bytes, j.pause_ms \
                 FROM (SELECT 1) one LEFT JOIN LATERAL \
                      (SELECT * FROM shardgate.reshard_jobs ORDER BY id DESC LIMIT 1) j ON true",
                &[],
            )
            .await
            .map_err(self.failed("reading resharding progress"))?;
        Ok(Progress {
            open_jobs: row.get(0),
            rows_copied: row.get::<_, Option<i64>>(1).unwrap_or(0),
            bytes_copied: row.get::<_, Option<i64>>(2).unwrap_or(0),
            lag_bytes: row.get::<_, Option<i64>>(3).unwrap_or(0),
            pause_ms: row.get(4),
        })
    }

    /// Move a job from state `from` to `to`; nothing happens when it is no longer in `from`.
    pub async fn job_state_if(
        &self,
        id: i64,
        from: &str,
        to: &str,
        detail: &str,
    ) -> Result<bool, CatalogError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE shardgate.reshard_jobs SET state = $3, detail = $4, updated_at = now() \
                 WHERE id = $1 AND state = $2",
                &[&id, &from, &to, &detail],
            )
            .await
            .map_err(self.failed(format!("recording step {to} of resharding job {id}")))?;
        Ok(n == 1)
    }

    /// Ask every proxy to hold new connections to `shards` (the cutover begins).
    pub async fn set_hold(
        &self,
        job: i64,
        scheme: &str,
        shards: &[String],
    ) -> Result<(), CatalogError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO shardgate.reshard_hold (job, scheme, shards) VALUES ($1, $2, $3) \
                 ON CONFLICT (job) DO UPDATE SET shards = excluded.shards, since = now()",
                &[&job, &scheme, &shards],
            )
            .await
            .map_err(self.failed("setting the cutover hold"))?;
        client
            .execute("DELETE FROM shardgate.reshard_acks WHERE job = $1", &[&job])
            .await
            .map_err(self.failed("clearing acknowledgements"))?;
        drop(client);
        self.notify(&format!("hold {job}")).await
    }

    /// Lift a hold without switching (a failed or aborted cutover).
    pub async fn clear_hold(&self, job: i64) -> Result<(), CatalogError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM shardgate.reshard_hold WHERE job = $1", &[&job])
            .await
            .map_err(self.failed("lifting the cutover hold"))?;
        drop(client);
        self.notify(&format!("release {job}")).await
    }

    pub async fn holds(&self) -> Result<Vec<Hold>, CatalogError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT h.job, h.scheme, h.shards, \
                     coalesce((SELECT array_agg(DISTINCT m.target) FROM shardgate.reshard_moves m \
                               WHERE m.job = h.job), '{{}}'::text[]) \
                     FROM shardgate.reshard_hold h \
                     WHERE h.since > now() - interval '{HOLD_LEASE_SECS} seconds' ORDER BY h.job"
                ),
                &[],
            )
            .await
            .map_err(self.failed("reading cutover holds"))?;
        Ok(rows
            .iter()
            .map(|r| Hold {
                job: r.get(0),
                scheme: r.get(1),
                shards: r.get(2),
                targets: r.get(3),
            })
            .collect())
    }

    /// A proxy says it reached `phase` of `job` ("held": no connection to a held shard is in use).
    pub async fn ack(&self, job: i64, proxy: &str, phase: &str) -> Result<(), CatalogError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO shardgate.reshard_acks (job, proxy, phase) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&job, &proxy, &phase],
            )
            .await
            .map_err(self.failed("acknowledging the cutover hold"))?;
        Ok(())
    }

    pub async fn acks(&self, job: i64, phase: &str) -> Result<Vec<String>, CatalogError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT proxy FROM shardgate.reshard_acks WHERE job = $1 AND phase = $2",
                &[&job, &phase],
            )
            .await
            .map_err(self.failed("reading acknowledgements"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Record that proxy `id` is alive now.
    pub async fn heartbeat(&self, id: &str) -> Result<(), CatalogError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO shardgate.proxies (id) VALUES ($1) \
                 ON CONFLICT (id) DO UPDATE SET last_seen = now()",
                &[&id],
            )
            .await
            .map_err(self.failed("recording the proxy heartbeat"))?;
        Ok(())
    }

    /// Proxies seen within the last `secs` seconds.
    pub async fn live_proxies(&self, secs: f64) -> Result<Vec<String>, CatalogError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM shardgate.proxies \
                 WHERE last_seen > now() - make_interval(secs => $1) ORDER BY id",
                &[&secs],
            )
            .await
            .map_err(self.failed("reading live proxies"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Forget a proxy that shut down.
    pub async fn unregister(&self, id: &str) -> Result<(), CatalogError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM shardgate.proxies WHERE id = $1", &[&id])
            .await
            .map_err(self.failed("unregistering the proxy"))?;
        Ok(())
    }

    /// The live map version of every scheme.
    pub async fn map_versions(&self) -> Result<Vec<(String, i64)>, CatalogError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT scheme, version FROM shardgate.bucket_map_current",
                &[],
            )
            .await
            .map_err(self.failed("reading bucket map versions"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The commit point of a directory move: the key's entry names `shard`, the job is
    /// switched and its hold lifted, in one transaction (with both notifications).
    pub async fn switch_directory(
        &self,
        job: i64,
        scheme: &str,
        key: &str,
        shard: &str,
    ) -> Result<(), CatalogError> {
        let what = || format!("switching directory key {key:?} of scheme {scheme}");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed(what()))?;
        super::directory::upsert_entry(&tx, scheme, key, shard)
            .await
            .map_err(self.failed(what()))?;
        if !finish_switch(&tx, job, &format!("switch {job} {scheme}"))
            .await
            .map_err(self.failed(what()))?
        {
            return Err(lost_hold(self, job));
        }
        tx.commit().await.map_err(self.failed(what()))?;
        Ok(())
    }

    /// The cutover's commit point: write the next map version (`shards`, one name per bucket),
    /// make it live, mark the job switched and lift its hold, in one transaction. Fails if the
    /// live version is no longer `from_version` (someone else switched meanwhile).
    pub async fn switch_map(
        &self,
        job: i64,
        scheme: &str,
        from_version: i64,
        shards: &[String],
    ) -> Result<i64, CatalogError> {
        let what = || format!("switching the bucket map of scheme {scheme}");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed(what()))?;
        let live: i64 = tx
            .query_one(
                "SELECT version FROM shardgate.bucket_map_current WHERE scheme = $1 FOR UPDATE",
                &[&scheme],
            )
            .await
            .map_err(self.failed(what()))?
            .get(0);
        if live != from_version {
            return Err(CatalogError::Invalid {
                catalog: self.name().to_owned(),
                what: format!(
                    "the bucket map of scheme {scheme} is at version {live}, the job started from {from_version}"
                ),
            });
        }
        let next = live + 1;
        tx.execute(
            "INSERT INTO shardgate.bucket_map (scheme, version, bucket, shard) \
             SELECT $1, $2, (u.n - 1)::int, u.shard FROM unnest($3::text[]) WITH ORDINALITY AS u(shard, n)",
            &[&scheme, &next, &shards],
        )
        .await
        .map_err(self.failed(what()))?;
        tx.execute(
            "UPDATE shardgate.bucket_map_current SET version = $2 WHERE scheme = $1",
            &[&scheme, &next],
        )
        .await
        .map_err(self.failed(what()))?;
        if !finish_switch(&tx, job, &format!("switch {job} {scheme} {next}"))
            .await
            .map_err(self.failed(what()))?
        {
            return Err(lost_hold(self, job));
        }
        tx.commit().await.map_err(self.failed(what()))?;
        Ok(next)
    }
}

/// The common end of a switch, inside its transaction: the job (in `cutover`) is switched,
/// its hold (still valid) is lifted, proxies are notified (on commit). False when the job is
/// no longer in cutover or its hold is gone or expired: the caller must not commit.
async fn finish_switch(
    tx: &tokio_postgres::Transaction<'_>,
    job: i64,
    payload: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = tx
        .execute(
            "UPDATE shardgate.reshard_jobs SET state = 'switched', detail = '', updated_at = now() \
             WHERE id = $1 AND state = 'cutover'",
            &[&job],
        )
        .await?;
    if n != 1 {
        return Ok(false);
    }
    let held = tx
        .execute(
            &format!(
                "DELETE FROM shardgate.reshard_hold WHERE job = $1 AND since > now() - interval '{HOLD_LEASE_SECS} seconds'"
            ),
            &[&job],
        )
        .await?;
    if held != 1 {
        // Lifted meanwhile (an abort) or expired: proxies may be routing again; no switch.
        return Ok(false);
    }
    tx.execute("SELECT pg_notify($1, $2)", &[&RESHARD_CHANNEL, &payload])
        .await?;
    Ok(true)
}

fn lost_hold(c: &Catalog, job: i64) -> CatalogError {
    CatalogError::Invalid {
        catalog: c.name().to_owned(),
        what: format!(
            "job {job}: its hold was lifted or expired (older than {HOLD_LEASE_SECS} s) before the switch, or the job left the cutover; nothing was switched"
        ),
    }
}
