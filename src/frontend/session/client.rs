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

use super::route::{Item, LocalAction, Target};
use super::{Flow, Session, Stmt};
use crate::backend::conn::statement_name;
use crate::config::ShardId;
use crate::frontend::settings::split_statements;
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
                    .map(|s| self.simple_item(s))
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
                        self.proxy.error_out(&mut self.cwbuf, &e);
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
    pub(super) fn item<'a>(&self, sql: &str, params: Params<'a>, executes: bool) -> Item<'a> {
        let mut plan = self.snap.router.plan(sql);
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

    /// Report an error for a whole cycle the proxy will not send. Inside a transaction the
    /// transaction is now failed, as Postgres does after any error.
    pub(super) fn refuse_cycle(&mut self, e: PgError, ends_cycle: bool) {
        self.proxy.error_out(&mut self.cwbuf, &e);
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
            let plain = crate::router::classify::plain_begin(&begin);
            let (conn, out) = self.conn_and_buf(shard);
            if !plain && conn.tracker.is_idle() && !conn.tracker.in_batch() && out.is_empty() {
                // Run it now, so that a BEGIN the server rejects (a bad option) fails this
                // statement instead of letting it run outside any transaction. A plain BEGIN
                // cannot be rejected on an idle connection: it travels in front of the
                // statement, saving a round trip per transaction.
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

    pub(super) fn after_refusal(&mut self, synced: bool) {
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
                Ok(ClientMessage::Parse(p)) => {
                    // Only its text matters here: no statement is built (copied, hashed).
                    let sql = String::from_utf8_lossy(p.sql);
                    items.push(self.item(&sql, Params::default(), false));
                    continue;
                }
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

    /// Queue one extended-protocol frame for `shard`, renaming statements as needed.
    pub(super) fn emit(&mut self, shard: ShardId, f: &Frame) {
        let Ok(msg) = decode::client(f.tag, f.body()) else {
            return;
        };
        match msg {
            ClientMessage::Parse(p) => {
                let hash = Stmt::hash_of(p.sql, p.param_types);
                let (conn, out) = self.conn_and_buf(shard);
                let named = if p.name.is_empty() {
                    conn.unnamed = Some(hash);
                    out.extend_from_slice(&f.raw);
                    false
                } else if conn.statements.contains(&hash) {
                    // Already prepared here under its server name: parse it into the unnamed
                    // slot instead, so the client still gets its ParseComplete in order.
                    build::parse(out, b"", p.sql, p.param_types);
                    conn.unnamed = Some(hash);
                    false
                } else {
                    build::parse(out, &statement_name(hash), p.sql, p.param_types);
                    conn.statements.insert(hash);
                    true
                };
                conn.expect(Expect::Parse {
                    hidden: false,
                    stmt: hash,
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

    pub(super) fn conn_and_buf(
        &mut self,
        shard: ShardId,
    ) -> (&mut crate::backend::ServerConn, &mut bytes::BytesMut) {
        let conn = self.backends[shard]
            .as_mut()
            .expect("a shard is bound (ensure_backend) before any frame is queued for it");
        (conn, &mut self.swbufs[shard])
    }

    pub(super) fn send(&mut self, shard: ShardId, f: &Frame, e: Option<Expect>) {
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

    /// Answer a Sync (or end a failed Query) that no server will answer.
    pub(super) fn finish_cycle_locally(&mut self) {
        build::ready_for_query(&mut self.cwbuf, self.status);
        let status = self.status;
        self.end_cycle(status, true);
    }
}

/// Whether an Execute in the batch asks for a limited number of rows (a portal fetched in
/// pieces), which a multi-shard answer cannot honour.
pub(super) fn has_row_limit(frames: &[Frame]) -> bool {
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
