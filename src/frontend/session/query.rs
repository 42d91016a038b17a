//! A simple Query, once routed: sent to its one shard, to several (a fan-out read, an
//! implicit two-phase-commit write, a split INSERT or COPY), to a merge, or answered or
//! refused by the proxy itself; and how a simple Query's statements are planned (through
//! the literal-normalised plan cache when they route to one shard by key).

use super::route::{Item, Target};
use super::Session;
use crate::config::ShardId;
use crate::protocol::track::Expect;
use crate::protocol::{build, sqlstate, Frame, PgError};
use crate::router::Params;

impl Session {
    /// The router's view of one statement of a simple Query: from the literal-normalised plan
    /// cache, its integer literals bound as parameters, when that routes it to one shard by
    /// key (the text itself is then not parsed); otherwise as [`Session::item`].
    pub(super) fn simple_item<'a>(&self, stmt: &'a [u8]) -> Item<'a> {
        let piece = String::from_utf8_lossy(stmt);
        // Literal offsets are byte offsets into `stmt` only when the text is valid UTF-8.
        if self.utf8_client && matches!(piece, std::borrow::Cow::Borrowed(_)) {
            let router = &self.snap.router;
            if let Some((plan, literals)) =
                router.plan_normalized(&piece, &crate::router::NoDirectory)
            {
                let values = literals.into_iter().map(|r| Some(&stmt[r])).collect();
                return Item {
                    plan,
                    params: Params::new(&[], values),
                    executes: true,
                    sql: piece.as_ref().into(),
                };
            }
        }
        self.item(&piece, Params::default(), true)
    }

    /// Route and send a simple Query. Returns false when the session must close.
    pub(super) async fn dispatch_query(&mut self, target: Target, f: &Frame) -> bool {
        match target {
            Target::Shard(shard) => match self.begin_on(shard, true).await {
                Ok(()) => {
                    self.send(shard, f, Some(Expect::Query { hidden: false }));
                    self.cycle_shards.push_back(Some(shard));
                }
                Err(e) => self.refuse_cycle(e, true),
            },
            Target::Multi {
                shards,
                write,
                transactional,
            } => {
                let texts: Vec<(ShardId, Option<String>)> =
                    shards.iter().map(|&s| (s, None)).collect();
                if let Err(e) = self.start_multi(&texts, write, transactional).await {
                    self.refuse_cycle(e, true);
                    return true;
                }
                for &s in &shards {
                    self.send(s, f, Some(Expect::Query { hidden: false }));
                }
            }
            Target::CopyIn { shards, spec } => {
                let texts: Vec<(ShardId, Option<String>)> =
                    shards.iter().map(|&s| (s, None)).collect();
                if let Err(e) = self.start_multi(&texts, true, true).await {
                    self.refuse_cycle(e, true);
                    return true;
                }
                for &s in &shards {
                    self.send(s, f, Some(Expect::Query { hidden: false }));
                }
                self.copy_in = Some(super::copy::CopySplit::new(spec, shards));
            }
            Target::Split(split, row_shards) => {
                let texts: Vec<(ShardId, Option<String>)> = split
                    .parts
                    .into_iter()
                    .map(|(s, sql)| (s, Some(sql)))
                    .collect();
                if let Err(e) = self.start_multi(&texts, true, true).await {
                    self.refuse_cycle(e, true);
                    return true;
                }
                if split.returning {
                    if let Some(fan) = self.fan.as_mut() {
                        fan.keep_row_order(row_shards);
                    }
                }
                for (s, sql) in &texts {
                    let (conn, out) = self.conn_and_buf(*s);
                    build::query(out, sql.as_deref().unwrap_or_default());
                    conn.expect(Expect::Query { hidden: false });
                }
            }
            Target::Merge { shards, sql, plan } => {
                for &s in &shards {
                    if let Err(e) = self.ensure_backend(s).await {
                        self.release_unused();
                        self.refuse_cycle(e, true);
                        return true;
                    }
                }
                let in_txn = !self.participants.is_empty() || self.deferred_begin.is_some();
                for &s in &shards {
                    if in_txn {
                        if let Err(e) = self.begin_on(s, true).await {
                            self.refuse_cycle(e, true);
                            return true;
                        }
                    }
                    let (conn, out) = self.conn_and_buf(s);
                    build::query(out, &sql);
                    conn.unnamed = None;
                    conn.expect(Expect::Query { hidden: false });
                }
                self.last_target = None;
                self.cycle_shards.push_back(None);
                self.flush_servers().await;
                return self.run_merge(shards, plan, None).await;
            }
            Target::Local(actions) => {
                self.prepare_local(&actions).await;
                for a in &actions {
                    self.local_action(a, true);
                }
                self.finish_cycle_locally();
            }
            Target::PerStatement { .. } => self.refuse_cycle(
                PgError::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "statements of one query go to different shards",
                ),
                true,
            ),
            Target::EndMulti { commit } => match self.end_multi(commit).await {
                Ok(tag) => {
                    build::command_complete(&mut self.cwbuf, tag);
                    self.finish_cycle_locally();
                }
                Err(Some(e)) => {
                    self.proxy.error_out(&mut self.cwbuf, &e);
                    self.finish_cycle_locally();
                }
                Err(None) => return false,
            },
            Target::Refuse(e) => self.refuse_cycle(e, true),
        }
        true
    }

    /// Bind every shard of a multi-shard cycle and open the transaction there: the client's
    /// (joining each new shard), or an implicit one for a write outside a transaction.
    pub(super) async fn start_multi(
        &mut self,
        shards: &[(ShardId, Option<String>)],
        write: bool,
        transactional: bool,
    ) -> Result<(), PgError> {
        for &(s, _) in shards {
            if let Err(e) = self.ensure_backend(s).await {
                self.release_unused();
                return Err(e);
            }
        }
        let in_txn = !self.participants.is_empty() || self.deferred_begin.is_some();
        if in_txn && transactional {
            for &(s, _) in shards {
                self.begin_on(s, true).await?;
            }
        } else if write && transactional {
            // Outside a transaction: all parts commit together, with two-phase commit.
            self.implicit = true;
            self.begin_text = "BEGIN".into();
            for &(s, _) in shards {
                let (conn, out) = self.conn_and_buf(s);
                build::query(out, "BEGIN");
                conn.expect(Expect::Query { hidden: true });
                self.participants.push(s);
            }
        }
        self.last_target = None;
        self.cycle_shards.push_back(None);
        self.start_fanout(shards.iter().map(|&(s, _)| s).collect());
        Ok(())
    }
}
