//! Client frames -> server connections.
//!
//! Each complete frame is validated by the framer and decoded (bounded) by
//! `decode::client`. A simple Query is routed as one cycle. Extended-protocol messages are
//! held until Sync or Flush and the batch is routed as one cycle, because the shard of a
//! statement may depend on the parameters of a Bind that follows its Parse. Frames travel as
//! their original bytes except those naming a prepared statement, rebuilt with the
//! server-side name (`sg_<hash>`); a Parse is injected first (hidden from the client) when the
//! server connection lacks the statement. Output for each shard is written once per batch.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::route::{Item, LocalAction, Target};
use super::{Flow, Session, Stmt};
use crate::backend::conn::statement_name;
use crate::config::ShardId;
use crate::frontend::settings::{classify, split_statements, Effect};
use crate::protocol::decode::{self, ClientMessage};
use crate::protocol::track::Expect;
use crate::protocol::{build, frame, sqlstate, Frame, PgError};
use crate::router::{Params, Plan};

/// How a client frame names its statement on the server.
enum Named {
    AsIs,
    Renamed([u8; 19]),
}

fn violation(e: impl std::fmt::Display) -> PgError {
    PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string())
}

impl Session {
    pub(super) async fn on_client_input(&mut self, max: usize) -> Flow {
        loop {
            let f = match frame::next_tagged(&mut self.crbuf, max) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return self.fail(violation(e)).await,
            };
            match self.on_client_frame(f).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => {
                    self.flush_servers().await;
                    return Flow::Close;
                }
                Err(e) => return self.fail(e).await,
            }
        }
        self.flush_servers().await;
        if !self.cwbuf.is_empty() {
            if self.client.write_all(&self.cwbuf).await.is_err() {
                return Flow::Close;
            }
            self.cwbuf.clear();
        }
        Flow::Continue
    }

    async fn fail(&mut self, e: PgError) -> Flow {
        self.flush_servers().await;
        self.send_error(&e).await;
        Flow::Close
    }

    pub(super) async fn flush_servers(&mut self) {
        for shard in 0..self.swbufs.len() {
            if self.swbufs[shard].is_empty() {
                continue;
            }
            if let Some(conn) = self.backends[shard].as_mut() {
                if conn.stream.write_all(&self.swbufs[shard]).await.is_err() {
                    conn.broken = true;
                }
            }
            self.swbufs[shard].clear();
        }
    }

    /// Handle one frame. `Err` is a protocol violation: the caller reports it and closes.
    async fn on_client_frame(&mut self, f: Frame) -> Result<Flow, PgError> {
        let msg = decode::client(f.tag, f.body()).map_err(violation)?;
        tracing::trace!(pid = self.cancel.pid, tag = %(f.tag as char), batch = self.batch.len(), txn = ?self.participants, status = %(self.status as char), "client frame");
        if self.skip_until_sync {
            if let ClientMessage::Sync = msg {
                if !self.settle().await {
                    return Ok(Flow::Close);
                }
                self.skip_until_sync = false;
                self.sent_cycles += 1;
                self.finish_cycle_locally();
            }
            return Ok(Flow::Continue);
        }
        match msg {
            ClientMessage::Terminate => return Ok(Flow::Close),
            ClientMessage::Query(sql) => {
                if !self.batch.is_empty() && !self.send_batch(false).await {
                    return Ok(Flow::Close);
                }
                // A simple query ends whatever batch was open (Postgres commits its implicit
                // transaction); the next batch is routed afresh.
                self.batch_target = None;
                if let Some(name) = deallocate_name(sql) {
                    // A protocol-level statement of this client (psycopg deallocates its
                    // statements this way): it exists under another name on servers.
                    if self.statements.remove(name.as_bytes()).is_some() {
                        if !self.settle().await {
                            return Ok(Flow::Close);
                        }
                        build::command_complete(&mut self.cwbuf, "DEALLOCATE");
                        self.sent_cycles += 1;
                        self.finish_cycle_locally();
                        return Ok(Flow::Continue);
                    }
                }
                self.note_effects(sql, true);
                self.simple_cycle = true;
                let text: Arc<str> = String::from_utf8_lossy(sql).into();
                let items: Vec<Item> = split_statements(text.as_bytes())
                    .into_iter()
                    .map(|s| {
                        let piece = String::from_utf8_lossy(s);
                        self.item(&piece, Params::default(), true)
                    })
                    .collect();
                let mut target = self.target(&items).await;
                if self.needs_settle(&target) {
                    if !self.settle().await {
                        return Ok(Flow::Close);
                    }
                    target = self.target(&items).await;
                }
                drop(items);
                self.sent_cycles += 1;
                if !self.dispatch_query(target, &f).await {
                    return Ok(Flow::Close);
                }
            }
            ClientMessage::Parse(p) => {
                self.note_effects(p.sql, false);
                let stmt = Stmt::new(p.sql, p.param_types);
                if p.name.is_empty() {
                    self.unnamed = Some(stmt);
                } else {
                    self.statements.insert(Bytes::copy_from_slice(p.name), stmt);
                }
                self.batch.push(f);
            }
            ClientMessage::Close(t) => {
                // Names follow message order: a Close takes effect before a later Parse of
                // the same name in this batch.
                if t.kind == b'S' {
                    if t.name.is_empty() {
                        self.unnamed = None;
                    } else {
                        self.statements.remove(t.name);
                    }
                }
                self.batch.push(f)
            }
            ClientMessage::Bind(_) | ClientMessage::Describe(_) | ClientMessage::Execute { .. } => {
                self.batch.push(f)
            }
            ClientMessage::Sync => {
                self.batch.push(f);
                if !self.send_batch(true).await {
                    return Ok(Flow::Close);
                }
            }
            ClientMessage::Flush => {
                self.batch.push(f);
                if !self.send_batch(false).await {
                    return Ok(Flow::Close);
                }
            }
            ClientMessage::Copy if self.copy_in.is_some() => self.split_copy(&f),
            ClientMessage::Copy => {
                // COPY data goes to the connection running the COPY; outside COPY, Postgres
                // ignores these messages, and so does the proxy.
                if let Some(shard) = self.last_target.filter(|&s| self.backends[s].is_some()) {
                    self.swbufs[shard].extend_from_slice(&f.raw);
                }
            }
            ClientMessage::FunctionCall | ClientMessage::Other => {
                // Not decoded by the proxy: the server of the session's current shard judges.
                if !self.batch.is_empty() && !self.send_batch(false).await {
                    return Ok(Flow::Close);
                }
                let shard = self
                    .participants
                    .first()
                    .copied()
                    .unwrap_or(self.cfg.default_shard);
                if self.outstanding().iter().any(|&s| s != shard) && !self.settle().await {
                    return Ok(Flow::Close);
                }
                let begun = if f.tag == b'F' {
                    self.begin_on(shard, true).await
                } else {
                    self.ensure_backend(shard).await
                };
                match begun {
                    Ok(()) => {
                        let e = Expect::Query { hidden: false };
                        self.send(shard, &f, (f.tag == b'F').then_some(e));
                        if f.tag == b'F' {
                            self.sent_cycles += 1;
                            self.cycle_shards.push_back(Some(shard));
                        }
                    }
                    Err(e) => {
                        if !self.settle().await {
                            return Ok(Flow::Close);
                        }
                        build::error(&mut self.cwbuf, &e);
                        if f.tag == b'F' {
                            self.sent_cycles += 1;
                            self.finish_cycle_locally();
                        }
                    }
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// The router's view of one statement.
    fn item<'a>(&self, sql: &str, params: Params<'a>, executes: bool) -> Item<'a> {
        let mut plan = self.proxy.router().plan(sql);
        if !self.text_keys_reliable(&plan) {
            if let Plan::Sharded { .. } = plan.as_ref() {
                let mut p = plan.as_ref().clone();
                if let Plan::Sharded { keys, .. } = &mut p {
                    *keys = None;
                }
                plan = Arc::new(p);
            }
        }
        Item {
            plan,
            params,
            executes,
            sql: sql.into(),
        }
    }

    /// Route and send a simple Query. Returns false when the session must close.
    async fn dispatch_query(&mut self, target: Target, f: &Frame) -> bool {
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
                    build::error(&mut self.cwbuf, &e);
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
    async fn start_multi(
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

    /// Report an error for a whole cycle the proxy will not send. Inside a transaction the
    /// transaction is now failed, as Postgres does after any error.
    fn refuse_cycle(&mut self, e: PgError, ends_cycle: bool) {
        build::error(&mut self.cwbuf, &e);
        self.cycle_error = true;
        if !self.participants.is_empty() || self.deferred_begin.is_some() {
            self.proxy_aborted = true;
            self.status = b'E';
        }
        if ends_cycle {
            self.finish_cycle_locally();
        } else {
            self.skip_until_sync = true;
        }
    }

    /// Answer a statement the proxy handles itself (simple protocol: its CommandComplete).
    fn local_action(&mut self, a: &LocalAction, write_tag: bool) {
        let tag = a.tag(self.proxy_aborted);
        match a {
            LocalAction::Begin(text) => {
                self.deferred_begin = Some(text.clone());
                self.status = b'T';
            }
            LocalAction::End { .. } => {
                // Whatever SET ran in this transaction is rolled back with it.
                self.txn_effects.clear();
                self.effects.clear();
                self.deferred_begin = None;
                self.proxy_aborted = false;
                self.status = b'I';
            }
            LocalAction::Tag(_) => self.status = b'I',
            LocalAction::SetShard(name) => {
                self.hint_shard = name.as_ref().and_then(|n| self.cfg.shard_id(n));
                if name.is_some() && self.hint_shard.is_none() {
                    let e = PgError::error(
                        "22023",
                        format!(
                            "shardgate.shard names unknown shard \"{}\"",
                            name.as_deref().unwrap_or("")
                        ),
                    );
                    build::error(&mut self.cwbuf, &e);
                    return;
                }
            }
        }
        if write_tag {
            build::command_complete(&mut self.cwbuf, tag);
        }
    }

    /// Before answering an END of a transaction the proxy failed: roll back what reached its
    /// shard (the connection is idle: the cycle was settled first).
    async fn prepare_local(&mut self, actions: &[LocalAction]) {
        if !actions.iter().any(|a| matches!(a, LocalAction::End { .. })) {
            return;
        }
        for t in std::mem::take(&mut self.participants) {
            if let Some(conn) = self.backends[t].as_mut() {
                if conn.run_hidden("ROLLBACK").await.is_err() || conn.tx_status != b'I' {
                    conn.broken = true;
                }
            }
            self.release(t);
        }
    }

    /// Whether the answers outstanding must come back before this target is acted on: the
    /// session's transaction state may change with them, and a reply the proxy makes itself
    /// must come after them. Same-shard pipelining needs no wait.
    fn needs_settle(&self, t: &Target) -> bool {
        let out = self.outstanding();
        if out.is_empty() && self.fan.is_none() {
            return false;
        }
        !matches!(t, Target::Shard(s) if out == [*s] && self.fan.is_none())
    }

    /// Make sure a transaction the client opened is open on `shard` too, when the cycle
    /// `executes` a statement (preparing one does not decide where the transaction runs): the
    /// deferred BEGIN goes to the first shard, and each further shard joins with the same BEGIN.
    pub(super) async fn begin_on(&mut self, shard: ShardId, executes: bool) -> Result<(), PgError> {
        self.ensure_backend(shard).await?;
        self.last_target = Some(shard);
        if !executes {
            return Ok(());
        }
        let begin = if let Some(b) = self.deferred_begin.take() {
            self.begin_text = b.clone();
            self.savepoints.clear();
            Some(b)
        } else if !self.participants.is_empty() && !self.participants.contains(&shard) {
            // A joining shard gets the transaction's savepoints too, so ROLLBACK TO one of
            // them undoes its part as well.
            let mut text = self.begin_text.clone();
            for sp in &self.savepoints {
                text.push_str(&format!("; SAVEPOINT \"{}\"", sp.replace('"', "\"\"")));
            }
            Some(text)
        } else {
            None
        };
        if let Some(begin) = begin {
            let (conn, out) = self.conn_and_buf(shard);
            if conn.tracker.is_idle() && !conn.tracker.in_batch() && out.is_empty() {
                // Run it now, so that a BEGIN the server rejects (a bad option) fails this
                // statement instead of letting it run outside any transaction.
                if let Err(e) = conn.run_hidden(&begin).await {
                    self.proxy_aborted = true;
                    self.status = b'E';
                    return Err(match e {
                        crate::backend::ConnError::Server { code, message } => {
                            PgError::error(code, message)
                        }
                        other => PgError::error(sqlstate::CONNECTION_FAILURE, other.to_string()),
                    });
                }
            } else {
                build::query(out, &begin);
                conn.unnamed = None;
                conn.expect(Expect::Query { hidden: true });
            }
            self.participants.push(shard);
        }
        Ok(())
    }

    /// Route the held extended-protocol batch and send it. `synced`: it ends with Sync.
    /// Returns false when the session must close.
    async fn send_batch(&mut self, synced: bool) -> bool {
        let frames = std::mem::take(&mut self.batch);
        if self.batch_target.is_none() && self.prepare_only(&frames) {
            // Only Parse: answered here, prepared on a server at first use (the same hidden
            // Parse a connection switch uses). Taking a connection just to prepare would let a
            // client that blocks on its prepare (libpq's PQprepare) deadlock the pool.
            for f in &frames {
                match f.tag {
                    b'P' => build::simple(&mut self.cwbuf, b'1'),
                    b'S' => {
                        self.sent_cycles += 1;
                        self.finish_cycle_locally();
                    }
                    _ => {}
                }
            }
            return true;
        }
        let target = match self.batch_target.take() {
            // After a Flush, the rest of the batch must go where its first part went: the
            // server holds that part's implicit transaction.
            Some(prev) => {
                let items = self.batch_items(&frames);
                let moved = if items.iter().any(|i| i.executes) {
                    let t = self.target(&items).await;
                    !match &t {
                        Target::Shard(s) => prev == [*s],
                        Target::Multi { shards, .. } => *shards == prev,
                        _ => false,
                    }
                } else {
                    false
                };
                drop(items);
                let unbound = prev.iter().any(|&s| self.backends[s].is_none());
                if moved || unbound {
                    // Closing the connections rolls back the part already sent, as an error
                    // inside a batch aborts its whole implicit transaction.
                    for &s in &prev {
                        if let Some(c) = self.backends[s].as_mut() {
                            c.broken = true;
                        }
                        self.release(s);
                        self.participants.retain(|&p| p != s);
                    }
                    self.fan = None;
                    let e = if moved {
                        PgError::error(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            "the parts of a batch split by Flush go to different shards",
                        )
                    } else {
                        PgError::error(
                            sqlstate::CONNECTION_FAILURE,
                            "lost the shard connection in the middle of a batch",
                        )
                    };
                    self.refuse_cycle(e, false);
                    self.after_refusal(synced);
                    return true;
                }
                prev
            }
            None => {
                self.simple_cycle = false;
                let items = self.batch_items(&frames);
                let mut t = self.target(&items).await;
                tracing::trace!(pid = self.cancel.pid, outstanding = ?self.outstanding(), "batch routed");
                if self.needs_settle(&t) {
                    if !self.settle().await {
                        return false;
                    }
                    t = self.target(&items).await;
                }
                drop(items);
                match t {
                    Target::Shard(s) => vec![s],
                    Target::Multi { .. } if !synced || has_row_limit(&frames) => {
                        self.refuse_cycle(
                            PgError::error(
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                "a statement over several shards with Execute row limits or Flush (fetch it in one Execute, or fix the shard key)",
                            ),
                            false,
                        );
                        self.after_refusal(synced);
                        return true;
                    }
                    Target::Multi {
                        shards,
                        write,
                        transactional,
                    } => {
                        let texts: Vec<(ShardId, Option<String>)> =
                            shards.iter().map(|&s| (s, None)).collect();
                        if let Err(e) = self.start_multi(&texts, write, transactional).await {
                            self.refuse_cycle(e, false);
                            self.after_refusal(synced);
                            return true;
                        }
                        shards
                    }
                    Target::Merge { shards, sql, plan } => {
                        return self
                            .send_merge_batch(&frames, shards, sql, plan, synced)
                            .await;
                    }
                    Target::PerStatement { .. } if !synced || has_row_limit(&frames) => {
                        self.refuse_cycle(
                            PgError::error(
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                "a batch whose statements go to different shards, split by Flush or with Execute row limits",
                            ),
                            false,
                        );
                        self.after_refusal(synced);
                        return true;
                    }
                    Target::PerStatement { write } => {
                        return self.run_per_statement(&frames, write).await;
                    }
                    Target::CopyIn { shards, spec } => {
                        let texts: Vec<(ShardId, Option<String>)> =
                            shards.iter().map(|&s| (s, None)).collect();
                        if let Err(e) = self.start_multi(&texts, true, true).await {
                            self.refuse_cycle(e, false);
                            self.after_refusal(synced);
                            return true;
                        }
                        self.copy_in = Some(super::copy::CopySplit::new(spec, shards.clone()));
                        shards
                    }
                    Target::Split(..) => {
                        // route() only splits simple queries.
                        self.refuse_cycle(
                            PgError::error(
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                "a split INSERT in the extended protocol",
                            ),
                            false,
                        );
                        self.after_refusal(synced);
                        return true;
                    }
                    Target::Local(actions) => {
                        self.prepare_local(&actions).await;
                        self.answer_batch_locally(&frames, &actions, None);
                        return true;
                    }
                    Target::EndMulti { commit } => {
                        return match self.end_multi(commit).await {
                            Ok(tag) => {
                                let action = LocalAction::Tag(tag);
                                self.answer_batch_locally(&frames, &[action], None);
                                true
                            }
                            Err(Some(e)) => {
                                self.answer_batch_locally(&frames, &[], Some(e));
                                true
                            }
                            Err(None) => false,
                        };
                    }
                    Target::Refuse(e) => {
                        self.refuse_cycle(e, false);
                        self.after_refusal(synced);
                        return true;
                    }
                }
            }
        };
        if target.len() == 1 {
            // A batch split by Flush opens the transaction with its first part.
            let executes = !synced || frames.iter().any(|f| matches!(f.tag, b'B' | b'E'));
            if let Err(e) = self.begin_on(target[0], executes).await {
                self.refuse_cycle(e, false);
                self.after_refusal(synced);
                return true;
            }
        } else {
            self.last_target = None;
        }
        for &shard in &target {
            for f in &frames {
                self.emit(shard, f);
            }
        }
        if synced {
            self.sent_cycles += 1;
            if target.len() == 1 {
                self.cycle_shards.push_back(Some(target[0]));
            }
        } else {
            self.batch_target = Some(target);
        }
        true
    }

    /// A batch of Parse messages only, from a session that holds no server connection.
    fn prepare_only(&self, frames: &[Frame]) -> bool {
        self.backends.iter().all(Option::is_none)
            && frames.iter().all(|f| matches!(f.tag, b'P' | b'S' | b'H'))
    }

    fn after_refusal(&mut self, synced: bool) {
        if synced {
            self.skip_until_sync = false;
            self.sent_cycles += 1;
            self.finish_cycle_locally();
        }
    }

    /// The statements of a batch: each Bind with its parameters (it executes), and each
    /// Parse or statement Describe (it only prepares).
    pub(super) fn batch_items<'a>(&self, frames: &'a [Frame]) -> Vec<Item<'a>> {
        let mut items = Vec::new();
        for f in frames {
            let (stmt, params, executes) = match decode::client(f.tag, f.body()) {
                Ok(ClientMessage::Parse(p)) => (
                    Some(Stmt::new(p.sql, p.param_types)),
                    Params::default(),
                    false,
                ),
                Ok(ClientMessage::Bind(b)) => {
                    let stmt = if b.statement.is_empty() {
                        self.unnamed.clone()
                    } else {
                        self.statements.get(b.statement).cloned()
                    };
                    let types = stmt
                        .as_ref()
                        .map(|s| param_oids(&s.param_types))
                        .unwrap_or_default();
                    let params = decode::bind_params(b.rest)
                        .map(|(formats, values)| Params::new(&formats, values).with_types(types))
                        .unwrap_or_default();
                    (stmt, params, true)
                }
                _ => (None, Params::default(), false),
            };
            if let Some(stmt) = stmt {
                let sql = String::from_utf8_lossy(&stmt.sql);
                items.push(self.item(&sql, params, executes));
            }
        }
        items
    }

    /// Answer a batch of proxy-handled statements (BEGIN, COMMIT, SET shardgate.shard ...)
    /// message by message, as a server would.
    fn answer_batch_locally(
        &mut self,
        frames: &[Frame],
        actions: &[LocalAction],
        error: Option<PgError>,
    ) {
        let mut next = actions.iter();
        let mut error = error;
        for f in frames {
            if error.is_none() && self.skip_until_sync && f.tag != b'S' {
                continue;
            }
            match decode::client(f.tag, f.body()) {
                Ok(ClientMessage::Parse(_)) => build::simple(&mut self.cwbuf, b'1'),
                Ok(ClientMessage::Bind(_)) => build::simple(&mut self.cwbuf, b'2'),
                Ok(ClientMessage::Close(_)) => build::simple(&mut self.cwbuf, b'3'),
                Ok(ClientMessage::Describe(t)) => {
                    if t.kind == b'S' {
                        build::no_parameters(&mut self.cwbuf);
                    }
                    build::simple(&mut self.cwbuf, b'n');
                }
                Ok(ClientMessage::Execute { .. }) => {
                    if let Some(e) = error.take() {
                        // The rest of the batch is skipped, as after any error.
                        build::error(&mut self.cwbuf, &e);
                        self.skip_until_sync = true;
                    } else if let Some(a) = next.next() {
                        self.local_action(a, true);
                    }
                }
                Ok(ClientMessage::Sync) => {
                    self.skip_until_sync = false;
                    self.sent_cycles += 1;
                    self.finish_cycle_locally();
                }
                _ => {}
            }
        }
    }

    /// Queue one extended-protocol frame for `shard`, renaming statements as needed.
    pub(super) fn emit(&mut self, shard: ShardId, f: &Frame) {
        let Ok(msg) = decode::client(f.tag, f.body()) else {
            return;
        };
        match msg {
            ClientMessage::Parse(p) => {
                let stmt = Stmt::new(p.sql, p.param_types);
                let (conn, out) = self.conn_and_buf(shard);
                let named = if p.name.is_empty() {
                    conn.unnamed = Some(stmt.hash);
                    out.extend_from_slice(&f.raw);
                    false
                } else if conn.statements.contains(&stmt.hash) {
                    // Already prepared here under its server name: parse it into the unnamed
                    // slot instead, so the client still gets its ParseComplete in order.
                    build::parse(out, b"", p.sql, p.param_types);
                    conn.unnamed = Some(stmt.hash);
                    false
                } else {
                    build::parse(out, &statement_name(stmt.hash), p.sql, p.param_types);
                    conn.statements.insert(stmt.hash);
                    true
                };
                conn.expect(Expect::Parse {
                    hidden: false,
                    stmt: stmt.hash,
                    named,
                });
            }
            ClientMessage::Bind(b) => {
                let named = self.prepare_on(shard, b.statement);
                let (conn, out) = self.conn_and_buf(shard);
                match named {
                    Named::AsIs => out.extend_from_slice(&f.raw),
                    Named::Renamed(n) => build::bind(out, b.portal, &n, b.rest),
                }
                conn.expect(Expect::Bind);
            }
            ClientMessage::Describe(t) => {
                let named = if t.kind == b'S' {
                    self.prepare_on(shard, t.name)
                } else {
                    Named::AsIs
                };
                let (conn, out) = self.conn_and_buf(shard);
                match named {
                    Named::AsIs => out.extend_from_slice(&f.raw),
                    Named::Renamed(n) => build::target(out, b'D', b'S', &n),
                }
                conn.expect(Expect::Describe);
            }
            ClientMessage::Close(t) => {
                let stmt: Option<std::sync::Arc<Stmt>> = None;
                let closes_unnamed = t.kind == b'S' && t.name.is_empty();
                let (conn, out) = self.conn_and_buf(shard);
                match &stmt {
                    Some(stmt) => {
                        conn.statements.remove(&stmt.hash);
                        build::target(out, b'C', b'S', &statement_name(stmt.hash));
                    }
                    None => {
                        if closes_unnamed {
                            conn.unnamed = None;
                        }
                        out.extend_from_slice(&f.raw);
                    }
                }
                conn.expect(Expect::Close { hidden: false });
                // Forget the client's statement once every target shard has closed it.
                if stmt.is_some() && self.fanout_last(shard) {
                    self.statements.remove(t.name);
                }
                if closes_unnamed && self.fanout_last(shard) {
                    self.unnamed = None;
                }
            }
            ClientMessage::Execute { .. } => self.send(shard, f, Some(Expect::Execute)),
            ClientMessage::Sync => self.send(shard, f, Some(Expect::Sync)),
            ClientMessage::Flush => self.send(shard, f, None),
            _ => {}
        }
    }

    fn conn_and_buf(
        &mut self,
        shard: ShardId,
    ) -> (&mut crate::backend::ServerConn, &mut bytes::BytesMut) {
        let conn = self.backends[shard]
            .as_mut()
            .expect("a shard is bound (ensure_backend) before any frame is queued for it");
        (conn, &mut self.swbufs[shard])
    }

    fn send(&mut self, shard: ShardId, f: &Frame, e: Option<Expect>) {
        let (conn, out) = self.conn_and_buf(shard);
        out.extend_from_slice(&f.raw);
        if let Some(e) = e {
            if matches!(e, Expect::Query { .. }) {
                // A simple query drops the unnamed prepared statement.
                conn.unnamed = None;
            }
            conn.expect(e);
        }
    }

    /// Make sure the client statement `name` exists on the shard's connection, injecting a
    /// hidden Parse when it does not, and say how to name it there.
    fn prepare_on(&mut self, shard: ShardId, name: &[u8]) -> Named {
        let stmt = if name.is_empty() {
            self.unnamed.clone()
        } else {
            self.statements.get(name).cloned()
        };
        let Some(stmt) = stmt else {
            if name.is_empty() {
                // The client has no unnamed statement, but this pooled connection may hold
                // another client's: close it first so the server reports 26000, as it would.
                let (conn, out) = self.conn_and_buf(shard);
                build::target(out, b'C', b'S', b"");
                conn.expect(Expect::Close { hidden: true });
                conn.unnamed = None;
            }
            // Not a statement this client prepared: let the server report it.
            return Named::AsIs;
        };
        let (conn, out) = self.conn_and_buf(shard);
        if name.is_empty() {
            if conn.unnamed != Some(stmt.hash) {
                build::parse(out, b"", &stmt.sql, &stmt.param_types);
                conn.expect(Expect::Parse {
                    hidden: true,
                    stmt: stmt.hash,
                    named: false,
                });
                conn.unnamed = Some(stmt.hash);
            }
            return Named::AsIs;
        }
        let server_name = statement_name(stmt.hash);
        if !conn.statements.contains(&stmt.hash) {
            build::parse(out, &server_name, &stmt.sql, &stmt.param_types);
            conn.expect(Expect::Parse {
                hidden: true,
                stmt: stmt.hash,
                named: true,
            });
            conn.statements.insert(stmt.hash);
        }
        Named::Renamed(server_name)
    }

    /// Record what the statement(s) in `sql` do to session state; pins take effect now,
    /// settings when their request cycle (and transaction) succeeds.
    fn note_effects(&mut self, sql: &[u8], simple: bool) {
        let cycle = self.sent_cycles;
        let ends = |stmt: &[u8]| {
            let (rest, _) =
                crate::router::classify::strip_leading(std::str::from_utf8(stmt).unwrap_or(""));
            matches!(
                crate::router::classify::kind(rest),
                crate::router::classify::Kind::Commit | crate::router::classify::Kind::Rollback
            )
        };
        // ROLLBACK TO SAVEPOINT answers with the same tag as a transaction that rolled back:
        // count them, so that only a ROLLBACK tag beyond them means the transaction ended.
        let rollback_to = |stmt: &[u8]| {
            let (rest, _) =
                crate::router::classify::strip_leading(std::str::from_utf8(stmt).unwrap_or(""));
            rest.get(..8)
                .is_some_and(|w| w.eq_ignore_ascii_case("rollback"))
                && crate::router::classify::kind(rest) == crate::router::classify::Kind::Savepoint
        };
        let pieces: Vec<&[u8]> = if simple {
            split_statements(sql)
        } else {
            vec![sql]
        };
        if pieces.iter().any(|s| ends(s)) {
            let to = pieces.iter().filter(|s| rollback_to(s)).count();
            self.rollback_cycles.push((cycle, to));
            self.savepoints.clear();
        }
        for stmt in pieces {
            // Statements in order: a ROLLBACK TO drops the SETs made since that savepoint,
            // and each SET remembers which savepoints were open when it was made.
            self.sync_savepoint_ids();
            if let Some(i) = track_savepoint(&mut self.savepoints, stmt) {
                let undone = self.savepoint_ids[i];
                self.effects
                    .retain(|(_, _, under)| !under.contains(&undone));
                self.txn_effects
                    .retain(|(_, under)| !under.contains(&undone));
            }
            self.sync_savepoint_ids();
            match classify(stmt) {
                Effect::None => {}
                Effect::Pin(why) => {
                    if self.pinned.is_none() {
                        tracing::debug!(reason = why, "client pinned to its server connection");
                    }
                    self.pinned = Some(why);
                }
                e => self.effects.push((cycle, e, self.savepoint_ids.clone())),
            }
        }
    }

    /// Keep one id per open savepoint (`savepoints` is the source of truth; ids are dropped
    /// with their savepoints and new ones get fresh ids).
    fn sync_savepoint_ids(&mut self) {
        self.savepoint_ids.truncate(self.savepoints.len());
        while self.savepoint_ids.len() < self.savepoints.len() {
            self.next_savepoint_id += 1;
            self.savepoint_ids.push(self.next_savepoint_id);
        }
    }

    /// Answer a Sync (or end a failed Query) that no server will answer.
    pub(super) fn finish_cycle_locally(&mut self) {
        build::ready_for_query(&mut self.cwbuf, self.status);
        let status = self.status;
        self.end_cycle(status, true);
    }
}

/// Whether an Execute in the batch asks for a limited number of rows (a portal fetched in
/// pieces), which a multi-shard answer cannot honour.
fn has_row_limit(frames: &[Frame]) -> bool {
    frames.iter().any(|f| {
        matches!(decode::client(f.tag, f.body()), Ok(ClientMessage::Execute { max_rows, .. }) if max_rows > 0)
    })
}

/// The OIDs of a Parse's parameter-type section (`i16 n`, then `n` u32s).
fn param_oids(raw: &[u8]) -> Vec<u32> {
    raw.get(2..)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// `DEALLOCATE [PREPARE] name` (one statement): the name, lowercased unless quoted.
fn deallocate_name(sql: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(sql)
        .ok()?
        .trim()
        .trim_end_matches(';')
        .trim();
    let mut words = text.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("deallocate") {
        return None;
    }
    let mut name = words.next()?;
    if name.eq_ignore_ascii_case("prepare") {
        name = words.next()?;
    }
    if words.next().is_some() || name.eq_ignore_ascii_case("all") {
        return None;
    }
    Some(
        match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            Some(quoted) => quoted.to_owned(),
            None => name.to_ascii_lowercase(),
        },
    )
}

impl Session {
    /// A merged read in the extended protocol: the batch's one executed statement is run on
    /// every shard as the rewritten statement (the client's parameters verbatim, result
    /// formats extended for the helper columns); the client gets its own ParseComplete,
    /// BindComplete and (if it asked) the merged RowDescription, then the merged rows.
    async fn send_merge_batch(
        &mut self,
        frames: &[Frame],
        shards: Vec<ShardId>,
        sql: String,
        plan: crate::merge::MergePlan,
        synced: bool,
    ) -> bool {
        let mut prefix = bytes::BytesMut::new();
        let mut describe = false;
        let mut bind: Option<(Vec<u8>, Vec<i16>, Arc<Stmt>)> = None;
        let mut shape_ok = synced && !has_row_limit(frames);
        for f in frames {
            match decode::client(f.tag, f.body()) {
                Ok(ClientMessage::Parse(_)) if bind.is_none() => build::simple(&mut prefix, b'1'),
                Ok(ClientMessage::Bind(b)) if bind.is_none() => {
                    let stmt = if b.statement.is_empty() {
                        self.unnamed.clone()
                    } else {
                        self.statements.get(b.statement).cloned()
                    };
                    match (stmt, decode::bind_results(b.rest)) {
                        (Some(stmt), Ok((params, results))) => {
                            bind = Some((params.to_vec(), results, stmt));
                            build::simple(&mut prefix, b'2');
                        }
                        _ => shape_ok = false,
                    }
                }
                Ok(ClientMessage::Describe(t)) if t.kind == b'P' && bind.is_some() => {
                    describe = true
                }
                Ok(ClientMessage::Execute { .. }) | Ok(ClientMessage::Sync) => {}
                _ => shape_ok = false,
            }
        }
        let Some((params, results, stmt)) = bind.filter(|_| shape_ok) else {
            self.refuse_cycle(
                PgError::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "a merged read over several shards must be one Parse/Bind/Describe/Execute/Sync batch without row limits",
                ),
                false,
            );
            self.after_refusal(synced);
            return true;
        };
        // Result formats: one per visible column means the helper columns need theirs (text).
        let mut result_formats = results.clone();
        if results.len() > 1 {
            result_formats.extend(std::iter::repeat_n(0, plan.hidden));
        }
        let mut rest = params;
        rest.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
        for f in &result_formats {
            rest.extend_from_slice(&f.to_be_bytes());
        }
        let shard_stmt = Stmt::new(sql.as_bytes(), &stmt.param_types);
        let name = statement_name(shard_stmt.hash);
        let in_txn = !self.participants.is_empty() || self.deferred_begin.is_some();
        for &s in &shards {
            if let Err(e) = self.ensure_backend(s).await {
                self.release_unused();
                self.refuse_cycle(e, false);
                self.after_refusal(synced);
                return true;
            }
            if in_txn {
                if let Err(e) = self.begin_on(s, true).await {
                    self.refuse_cycle(e, false);
                    self.after_refusal(synced);
                    return true;
                }
            }
            let (conn, out) = self.conn_and_buf(s);
            if !conn.statements.contains(&shard_stmt.hash) {
                build::parse(out, &name, &shard_stmt.sql, &shard_stmt.param_types);
                conn.expect(Expect::Parse {
                    hidden: true,
                    stmt: shard_stmt.hash,
                    named: true,
                });
                conn.statements.insert(shard_stmt.hash);
            }
            build::bind(out, b"", &name, &rest);
            conn.expect(Expect::Bind);
            build::target(out, b'D', b'P', b"");
            conn.expect(Expect::Describe);
            build::execute(out, b"", 0);
            conn.expect(Expect::Execute);
            build::sync(out);
            conn.expect(Expect::Sync);
        }
        self.sent_cycles += 1;
        self.last_target = None;
        self.cycle_shards.push_back(None);
        self.flush_servers().await;
        self.run_merge(shards, plan, Some((prefix, describe))).await
    }
}

impl Session {
    /// COPY data for a COPY split by shard: rows to their shards; CopyDone/CopyFail to all.
    fn split_copy(&mut self, f: &Frame) {
        let Some(mut split) = self.copy_in.take() else {
            return;
        };
        let router = self.proxy.router().clone();
        let (scheme, table, key_type) = (
            split.spec.scheme.clone(),
            split.spec.table.clone(),
            split.spec.key_type,
        );
        let place = move |k: &crate::router::KeyValue| -> Result<ShardId, String> {
            let Some(scheme) = &scheme else {
                return Err("no scheme".into());
            };
            let plan = Plan::Sharded {
                scheme: scheme.clone(),
                table: table.clone(),
                key_type,
                keys: Some(vec![crate::router::keys::KeySource::Literal(k.clone())]),
                write: true,
                merge: None,
                must_be_single: false,
            };
            match router.decide(&plan, &Params::default(), &crate::router::NoDirectory) {
                crate::router::Decision::Route(r) if r.shards.len() == 1 => Ok(r.shards[0]),
                crate::router::Decision::Lookup { .. } => Err(
                    "COPY into a directory-scheme table needs its keys looked up first: insert the rows instead".into(),
                ),
                other => Err(format!("cannot place a COPY row: {other:?}")),
            }
        };
        let rows = match f.tag {
            b'd' => split.feed(f.body(), &place),
            b'c' => split.finish(&place),
            _ => Ok(Vec::new()),
        };
        let shards = split.shards.clone();
        match rows {
            Ok(rows) => {
                for (shard, data) in rows {
                    let out = &mut self.swbufs[shard];
                    out.extend_from_slice(b"d");
                    out.extend_from_slice(&((data.len() + 4) as i32).to_be_bytes());
                    out.extend_from_slice(&data);
                }
                if f.tag == b'd' {
                    self.copy_in = Some(split);
                    return;
                }
                // CopyDone or CopyFail: to every shard, and the COPY is over.
                for &s in &shards {
                    self.swbufs[s].extend_from_slice(&f.raw);
                }
                if !self.simple_cycle {
                    // The extended protocol's Sync that follows belongs to this COPY: every
                    // shard of it waits for one.
                    self.batch_target = Some(shards);
                }
            }
            Err(why) => {
                // Fail the COPY everywhere: nothing of it commits, and each shard reports it.
                let why = why.replace('\0', "");
                let mut fail = bytes::BytesMut::new();
                fail.extend_from_slice(b"f");
                fail.extend_from_slice(&((why.len() + 5) as i32).to_be_bytes());
                fail.extend_from_slice(why.as_bytes());
                fail.extend_from_slice(&[0]);
                for &s in &shards {
                    self.swbufs[s].extend_from_slice(&fail);
                }
                if !self.simple_cycle {
                    self.batch_target = Some(shards);
                }
                // Data the client still sends for this COPY is ignored, as a server does.
            }
        }
    }
}

/// Keep the list of open savepoints current: SAVEPOINT adds one; RELEASE drops it and later
/// ones; ROLLBACK TO drops the later ones and returns the index of the one rolled back to.
fn track_savepoint(list: &mut Vec<String>, stmt: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(stmt);
    let (rest, _) = crate::router::classify::strip_leading(&text);
    let words: Vec<String> = rest
        .split_whitespace()
        .map(|w| w.trim_end_matches(';').to_string())
        .collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let name_at = |i: usize| {
        words.get(i).map(
            |w| match w.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
                Some(q) => q.to_string(),
                None => w.to_ascii_lowercase(),
            },
        )
    };
    let skip = |i: usize, word: &str| {
        if lower.get(i).map(String::as_str) == Some(word) {
            i + 1
        } else {
            i
        }
    };
    match lower.first().map(String::as_str) {
        Some("savepoint") => {
            if let Some(n) = name_at(1) {
                list.push(n);
            }
        }
        Some("release") => {
            if let Some(n) = name_at(skip(1, "savepoint")) {
                if let Some(i) = list.iter().rposition(|s| *s == n) {
                    list.truncate(i);
                }
            }
        }
        Some("rollback") => {
            let i = skip(skip(1, "work"), "transaction");
            let i = if lower.get(i).map(String::as_str) == Some("transaction") {
                i + 1
            } else {
                i
            };
            if lower.get(i).map(String::as_str) == Some("to") {
                if let Some(n) = name_at(skip(i + 1, "savepoint")) {
                    if let Some(i) = list.iter().rposition(|s| *s == n) {
                        list.truncate(i + 1);
                        return Some(i);
                    }
                }
            }
        }
        _ => {}
    }
    None
}

#[cfg(test)]
mod savepoint_tests {
    #[test]
    fn savepoint_list() {
        let mut l = Vec::new();
        for s in [
            "SAVEPOINT a",
            "savepoint B",
            "SAVEPOINT \"C c\"",
            "ROLLBACK TO SAVEPOINT b",
        ] {
            super::track_savepoint(&mut l, s.as_bytes());
        }
        assert_eq!(l, vec!["a", "b"]);
        super::track_savepoint(&mut l, b"SAVEPOINT c");
        super::track_savepoint(&mut l, b"release savepoint b");
        assert_eq!(l, vec!["a"]);
        super::track_savepoint(&mut l, b"ROLLBACK TRANSACTION TO a");
        assert_eq!(l, vec!["a"]);
    }
}
