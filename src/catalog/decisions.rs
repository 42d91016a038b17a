//! Two-phase commit decision records (`shardgate.twopc_decisions`): the durable commit point.
//!
//! A row says how transaction `gid` ends. The first writer wins (`ON CONFLICT DO NOTHING`),
//! which is what makes coordinator and recovery safe together: the coordinator writes
//! `commit` only after every participant prepared; recovery writes `abort` before it rolls
//! back an orphan. Whichever row exists is obeyed by both, so no transaction can be committed
//! on one shard and rolled back on another.

use super::{Catalog, CatalogError};

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Commit,
    Abort,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Commit => "commit",
            Outcome::Abort => "abort",
        }
    }

    fn parse(s: &str) -> Outcome {
        if s == "commit" {
            Outcome::Commit
        } else {
            Outcome::Abort
        }
    }
}

/// One decision record.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub gid: String,
    pub participants: Vec<String>,
    pub outcome: Outcome,
    /// Seconds since the decision was written.
    pub age_secs: f64,
}

impl Catalog {
    /// Record `outcome` for `gid` unless a decision exists; returns the decision in force.
    pub async fn decide(
        &self,
        gid: &str,
        participants: &[String],
        outcome: Outcome,
    ) -> Result<Outcome, CatalogError> {
        let c = self.client().await?;
        let participants: Vec<&str> = participants.iter().map(String::as_str).collect();
        let inserted = c
            .query_opt(
                "INSERT INTO shardgate.twopc_decisions (gid, participants, outcome) VALUES ($1, $2, $3)
                 ON CONFLICT (gid) DO NOTHING RETURNING outcome",
                &[&gid, &participants, &outcome.as_str()],
            )
            .await
            .map_err(self.failed(format!("record the decision for {gid}")))?;
        if let Some(row) = inserted {
            return Ok(Outcome::parse(row.get::<_, &str>(0)));
        }
        let row = c
            .query_one(
                "SELECT outcome FROM shardgate.twopc_decisions WHERE gid = $1",
                &[&gid],
            )
            .await
            .map_err(self.failed(format!("read the decision for {gid}")))?;
        Ok(Outcome::parse(row.get::<_, &str>(0)))
    }

    /// The decision for `gid`, if any.
    pub async fn decision(&self, gid: &str) -> Result<Option<Outcome>, CatalogError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT outcome FROM shardgate.twopc_decisions WHERE gid = $1",
                &[&gid],
            )
            .await
            .map_err(self.failed(format!("read the decision for {gid}")))?;
        Ok(row.map(|r| Outcome::parse(r.get::<_, &str>(0))))
    }

    /// Every decision record, oldest first.
    pub async fn decisions(&self) -> Result<Vec<Decision>, CatalogError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT gid, participants, outcome, extract(epoch from now() - decided_at)::float8
                 FROM shardgate.twopc_decisions ORDER BY decided_at",
                &[],
            )
            .await
            .map_err(self.failed("list two-phase commit decisions"))?;
        Ok(rows
            .iter()
            .map(|r| Decision {
                gid: r.get(0),
                participants: r.get(1),
                outcome: Outcome::parse(r.get::<_, &str>(2)),
                age_secs: r.get(3),
            })
            .collect())
    }

    /// Delete a decision record that no participant needs any more.
    pub async fn forget(&self, gid: &str) -> Result<(), CatalogError> {
        let c = self.client().await?;
        c.execute(
            "DELETE FROM shardgate.twopc_decisions WHERE gid = $1",
            &[&gid],
        )
        .await
        .map_err(self.failed(format!("delete the decision for {gid}")))?;
        Ok(())
    }
}
