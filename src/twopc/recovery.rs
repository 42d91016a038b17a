//! Recovery of in-doubt transactions, and the listing behind `twopc list` / `SHOW
//! TRANSACTIONS`.
//!
//! For every shard, the prepared transactions whose gid starts with `shardgate_` (in this
//! shard's database) are settled from the catalog: a `commit` decision commits them, `abort`
//! rolls them back, and one with no decision that is older than `twopc.orphan_timeout` gets an
//! `abort` decision recorded first (so a slow coordinator cannot commit it afterwards) and is
//! then rolled back. Idempotent, and safe to run from several proxies at once: COMMIT/ROLLBACK
//! PREPARED of a gid another run already finished just fails with "does not exist", which is
//! ignored. Decision records are deleted once no shard holds their gid any more (commit
//! records after a minute; abort records after a day, to keep outvoting slow coordinators).

use std::time::Duration;

use super::GID_PREFIX;
use crate::catalog::{pg_config, Catalog, CatalogError, Outcome};
use crate::config::{Config, PgTarget};

/// What recovery does with one prepared transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Commit,
    Rollback,
    /// Undecided and young: its coordinator may still be deciding.
    Wait,
    /// Undecided and older than the orphan timeout: record `abort` first, then obey the
    /// decision in force (a coordinator's `commit` may have won the race).
    ClaimAbort,
}

/// The rule recovery applies to a prepared transaction.
pub fn action(decision: Option<Outcome>, age_secs: f64, orphan_timeout: Duration) -> Action {
    match decision {
        Some(Outcome::Commit) => Action::Commit,
        Some(Outcome::Abort) => Action::Rollback,
        None if age_secs >= orphan_timeout.as_secs_f64() => Action::ClaimAbort,
        None => Action::Wait,
    }
}

/// One prepared transaction found on a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct InDoubt {
    pub shard: String,
    pub gid: String,
    pub age_secs: f64,
    /// The decision recorded for it, if any.
    pub decision: Option<Outcome>,
    pub participants: Vec<String>,
}

/// What one recovery pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub committed: usize,
    pub rolled_back: usize,
    /// Left alone: undecided and younger than the orphan timeout.
    pub waiting: usize,
    /// Shards that could not be reached (name: reason).
    pub unreachable: Vec<String>,
    pub forgotten: usize,
}

async fn connect(t: &PgTarget, timeout: Duration) -> Result<tokio_postgres::Client, String> {
    let cfg = pg_config(t, timeout, "shardgate-recovery");
    let (client, conn) = cfg
        .connect(crate::tls::make_tls_connect())
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Prepared shardgate transactions on one shard: (gid, age in seconds).
async fn prepared_on(c: &tokio_postgres::Client) -> Result<Vec<(String, f64)>, String> {
    let rows = c
        .query(
            "SELECT gid, extract(epoch from now() - prepared)::float8 FROM pg_prepared_xacts
             WHERE database = current_database() AND gid LIKE $1",
            &[&format!("{GID_PREFIX}%")],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Every in-doubt transaction on every reachable shard, with its decision.
pub async fn list(
    cfg: &Config,
    catalog: &Catalog,
) -> Result<(Vec<InDoubt>, Vec<String>), CatalogError> {
    let decisions = catalog.decisions().await?;
    let mut out = Vec::new();
    let mut unreachable = Vec::new();
    for shard in &cfg.shards {
        let c = match connect(&shard.target, cfg.pool.connect_timeout).await {
            Ok(c) => c,
            Err(e) => {
                unreachable.push(format!("{}: {e}", shard.name));
                continue;
            }
        };
        match prepared_on(&c).await {
            Ok(list) => {
                for (gid, age) in list {
                    let d = decisions.iter().find(|d| d.gid == gid);
                    out.push(InDoubt {
                        shard: shard.name.clone(),
                        decision: d.map(|d| d.outcome),
                        participants: d.map(|d| d.participants.clone()).unwrap_or_default(),
                        gid,
                        age_secs: age,
                    });
                }
            }
            Err(e) => unreachable.push(format!("{}: {e}", shard.name)),
        }
    }
    Ok((out, unreachable))
}

/// One recovery pass over every shard.
pub async fn recover(cfg: &Config, catalog: &Catalog) -> Result<Report, CatalogError> {
    let mut report = Report::default();
    let mut still_prepared = std::collections::HashSet::new();
    let mut all_reached = true;
    for shard in &cfg.shards {
        let c = match connect(&shard.target, cfg.pool.connect_timeout).await {
            Ok(c) => c,
            Err(e) => {
                report.unreachable.push(format!("{}: {e}", shard.name));
                all_reached = false;
                continue;
            }
        };
        let list = match prepared_on(&c).await {
            Ok(l) => l,
            Err(e) => {
                report.unreachable.push(format!("{}: {e}", shard.name));
                all_reached = false;
                continue;
            }
        };
        for (gid, age) in list {
            let decision = catalog.decision(&gid).await?;
            let outcome = match action(decision, age, cfg.twopc.orphan_timeout) {
                Action::Commit => Outcome::Commit,
                Action::Rollback => Outcome::Abort,
                // Claim it first: if the coordinator recorded commit meanwhile, obey that.
                Action::ClaimAbort => catalog.decide(&gid, &[], Outcome::Abort).await?,
                Action::Wait => {
                    report.waiting += 1;
                    still_prepared.insert(gid);
                    continue;
                }
            };
            let sql = match outcome {
                Outcome::Commit => format!("COMMIT PREPARED '{}'", gid.replace('\'', "''")),
                Outcome::Abort => format!("ROLLBACK PREPARED '{}'", gid.replace('\'', "''")),
            };
            match c.batch_execute(&sql).await {
                Ok(()) => match outcome {
                    Outcome::Commit => report.committed += 1,
                    Outcome::Abort => report.rolled_back += 1,
                },
                Err(e) => {
                    // Another proxy may have finished it a moment ago ("does not exist").
                    if e.code().map(|c| c.code()) != Some("42704") {
                        tracing::warn!(shard = %shard.name, gid, error = %e, "recovery could not settle a prepared transaction");
                        still_prepared.insert(gid);
                    }
                }
            }
        }
    }
    // Forget decisions no shard needs any more (only when every shard was seen).
    if all_reached {
        for d in catalog.decisions().await? {
            let keep_for = match d.outcome {
                Outcome::Commit => 60.0,
                Outcome::Abort => 86_400.0,
            };
            if !still_prepared.contains(&d.gid) && d.age_secs > keep_for {
                catalog.forget(&d.gid).await?;
                report.forgotten += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What recovery does after the coordinator died at each point of the protocol (see the
    /// `twopc` module comment), for a young and an old in-doubt transaction.
    #[test]
    fn recovery_at_each_crash_point() {
        let timeout = Duration::from_secs(60);
        let cases = [
            // (crash point, decision on record, age, action)
            ("during PREPARE, young", None, 5.0, Action::Wait),
            ("during PREPARE, orphaned", None, 61.0, Action::ClaimAbort),
            (
                "after every PREPARE, before the decision",
                None,
                120.0,
                Action::ClaimAbort,
            ),
            (
                "after the decision",
                Some(Outcome::Commit),
                1.0,
                Action::Commit,
            ),
            (
                "after some COMMIT PREPARED",
                Some(Outcome::Commit),
                500.0,
                Action::Commit,
            ),
            (
                "recovery already claimed it",
                Some(Outcome::Abort),
                0.0,
                Action::Rollback,
            ),
            ("exactly at the timeout", None, 60.0, Action::ClaimAbort),
        ];
        for (point, decision, age, want) in cases {
            assert_eq!(action(decision, age, timeout), want, "{point}");
        }
    }
}
