//! The coordinator: drives a multi-shard COMMIT through prepare, decision and commit on the
//! session's own server connections. See the module comment of `twopc` for what recovery does
//! at each crash point; the comments below say it again where it matters.

use futures_util::future::join_all;

use super::{points, Failpoints};
use crate::backend::ServerConn;
use crate::catalog::{Catalog, Outcome};
use crate::protocol::{sqlstate, PgError};

/// Why a two-phase commit did not succeed.
#[derive(Debug)]
pub enum CommitError {
    /// Nothing committed anywhere; every participant is rolled back (or will be by recovery).
    Aborted(PgError),
    /// The decision may or may not have been recorded: recovery will finish the transaction
    /// one way or the other (SQLSTATE 08007 for the client).
    Unknown(PgError),
    /// A failpoint stopped the coordinator as if the process died; nothing was cleaned up.
    Crashed,
}

/// One participant: its shard name and the connection holding its open transaction.
pub type Participant<'a> = (&'a str, &'a mut ServerConn);

fn quote(gid: &str) -> String {
    format!("'{}'", gid.replace('\'', "''"))
}

/// Commit the transaction open on every participant, atomically.
pub async fn commit(
    parts: &mut [Participant<'_>],
    catalog: &Catalog,
    gid: &str,
    failpoints: &Failpoints,
) -> Result<(), CommitError> {
    // Phase 1: prepare everywhere, in parallel. If this process dies during it, prepared
    // participants have no decision: recovery aborts them after orphan_timeout.
    let stop_after_first = failpoints.fire(points::AFTER_FIRST_PREPARE);
    let prepare = format!("PREPARE TRANSACTION {}", quote(gid));
    let results = if stop_after_first {
        let (name, conn) = &mut parts[0];
        vec![(name.to_string(), conn.run_hidden(&prepare).await)]
    } else {
        join_all(parts.iter_mut().map(|(name, conn)| {
            let prepare = &prepare;
            async move { (name.to_string(), conn.run_hidden(prepare).await) }
        }))
        .await
    };
    if stop_after_first {
        return Err(CommitError::Crashed);
    }
    let failed = results.iter().find_map(|(name, r)| match r {
        Err(e) => Some((name.clone(), e.to_string(), server_code(e))),
        Ok(()) => None,
    });
    if let Some((shard, msg, code)) = failed {
        // Nothing is decided: roll back what prepared and what did not.
        for (i, (_, conn)) in parts.iter_mut().enumerate() {
            let prepared = matches!(results.get(i), Some((_, Ok(()))));
            let sql = if prepared {
                format!("ROLLBACK PREPARED {}", quote(gid))
            } else {
                "ROLLBACK".to_owned()
            };
            if conn.run_hidden(&sql).await.is_err() {
                // Recovery rolls back a prepared orphan; an unprepared one dies with its
                // connection.
                conn.broken = true;
            }
        }
        return Err(CommitError::Aborted(
            PgError::error(code, format!("commit failed on shard \"{shard}\": {msg}"))
                .with_detail("the transaction was rolled back on every shard"),
        ));
    }
    if failpoints.fire(points::AFTER_PREPARE) {
        return Err(CommitError::Crashed);
    }
    // Phase 2: the decision, the commit point. If the catalog cannot say whether it was
    // written, the outcome is unknown to us; recovery settles it from the catalog.
    let names: Vec<String> = parts.iter().map(|(n, _)| n.to_string()).collect();
    let outcome = match catalog.decide(gid, &names, Outcome::Commit).await {
        Ok(o) => o,
        Err(first) => match catalog.decision(gid).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                // The insert did not happen: claim abort so no later attempt commits it.
                match catalog.decide(gid, &names, Outcome::Abort).await {
                    Ok(o) => o,
                    Err(_) => return Err(unknown(gid, &first.to_string())),
                }
            }
            Err(_) => return Err(unknown(gid, &first.to_string())),
        },
    };
    if outcome == Outcome::Abort {
        for (_, conn) in parts.iter_mut() {
            if conn
                .run_hidden(&format!("ROLLBACK PREPARED {}", quote(gid)))
                .await
                .is_err()
            {
                conn.broken = true;
            }
        }
        return Err(CommitError::Aborted(PgError::error(
            "40001",
            format!("transaction {gid} was aborted before its commit was recorded"),
        )));
    }
    if failpoints.fire(points::AFTER_DECISION) {
        return Err(CommitError::Crashed);
    }
    // Phase 3: commit everywhere. The decision is durable, so a failure here only delays the
    // commit of that participant until recovery; the client is told of success.
    let stop_after_first = failpoints.fire(points::AFTER_FIRST_COMMIT);
    let commit = format!("COMMIT PREPARED {}", quote(gid));
    let mut all_done = true;
    for (i, (name, conn)) in parts.iter_mut().enumerate() {
        if stop_after_first && i > 0 {
            return Err(CommitError::Crashed);
        }
        let mut done = false;
        for _ in 0..3 {
            if conn.run_hidden(&commit).await.is_ok() {
                done = true;
                break;
            }
        }
        if !done {
            tracing::warn!(shard = %name, gid, "COMMIT PREPARED failed; recovery will finish it");
            conn.broken = true;
            all_done = false;
        }
    }
    if stop_after_first {
        return Err(CommitError::Crashed);
    }
    if all_done {
        // The record is no longer needed; recovery also deletes leftovers.
        let catalog = catalog.clone();
        let gid = gid.to_owned();
        tokio::spawn(async move {
            let _ = catalog.forget(&gid).await;
        });
    }
    Ok(())
}

/// Roll back a prepared transaction on one connection (used by recovery-style cleanup).
pub async fn rollback_prepared(conn: &mut ServerConn, gid: &str) -> bool {
    conn.run_hidden(&format!("ROLLBACK PREPARED {}", quote(gid)))
        .await
        .is_ok()
}

/// The SQLSTATE to report for a participant's failure: the server's own, else 08006.
fn server_code(e: &crate::backend::ConnError) -> String {
    match e {
        crate::backend::ConnError::Server { code, .. } if !code.is_empty() => code.clone(),
        _ => sqlstate::CONNECTION_FAILURE.to_owned(),
    }
}

fn unknown(gid: &str, why: &str) -> CommitError {
    CommitError::Unknown(
        PgError::error(
            "08007",
            format!("the outcome of transaction {gid} is unknown: the catalog could not be reached ({why})"),
        )
        .with_hint("shardgate recovery commits or rolls it back on every shard once the catalog is reachable; check with `shardgate twopc list`"),
    )
}
