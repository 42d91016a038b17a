//! Client frames -> server connections.
//!
//! Each complete frame in the client's buffer is validated by the framer, and only Query,
//! Parse, Bind, Describe, Close and Execute are decoded (bounded). Frames go to the server as
//! their original bytes, except those naming a prepared statement, which are rebuilt with the
//! server-side name (`sg_<hash>`); when the server connection lacks the statement, a Parse is
//! injected first (hidden from the client). Output for each shard is written once per batch,
//! so pipelined input costs one write.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{Flow, Session, Stmt};
use crate::backend::conn::statement_name;
use crate::config::ShardId;
use crate::frontend::settings::{classify, split_statements, Effect};
use crate::protocol::decode::{self, ClientMessage};
use crate::protocol::track::Expect;
use crate::protocol::{build, frame, sqlstate, Frame, PgError};

/// How a client frame names its statement on the server.
enum Named {
    /// Forward the frame unchanged.
    AsIs,
    /// Rebuild it with this server-side name.
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
                Err(e) => {
                    self.flush_servers().await;
                    self.send_error(&violation(e)).await;
                    return Flow::Close;
                }
            };
            match self.on_client_frame(f).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => {
                    self.flush_servers().await;
                    return Flow::Close;
                }
                Err(e) => {
                    self.flush_servers().await;
                    self.send_error(&e).await;
                    return Flow::Close;
                }
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

    async fn flush_servers(&mut self) {
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
        if self.skip_until_sync {
            if f.tag == b'S' {
                self.skip_until_sync = false;
                self.finish_cycle_locally();
            }
            return Ok(Flow::Continue);
        }
        let msg = decode::client(f.tag, f.body()).map_err(violation)?;
        match msg {
            ClientMessage::Terminate => return Ok(Flow::Close),
            ClientMessage::Query(sql) => {
                let shard = self.route();
                self.note_effects(sql, true);
                if let Err(e) = self.ensure_backend(shard).await {
                    build::error(&mut self.cwbuf, &e);
                    self.sent_cycles += 1;
                    self.cycle_error = true;
                    self.finish_cycle_locally();
                    return Ok(Flow::Continue);
                }
                self.send(shard, &f, Expect::Query { hidden: false });
                self.sent_cycles += 1;
            }
            ClientMessage::Parse(p) => {
                let shard = self.route();
                self.note_effects(p.sql, false);
                if !self.extended_backend(shard).await {
                    return Ok(Flow::Continue);
                }
                let stmt = Stmt::new(p.sql, p.param_types);
                let (conn, out) = self.conn_and_buf(shard);
                if p.name.is_empty() {
                    conn.unnamed = Some(stmt.hash);
                    out.extend_from_slice(&f.raw);
                } else if conn.statements.contains(&stmt.hash) {
                    // Already prepared here under its server name: parse it into the unnamed
                    // slot instead, so the client still gets its ParseComplete in order.
                    build::parse(out, b"", p.sql, p.param_types);
                    conn.unnamed = Some(stmt.hash);
                } else {
                    build::parse(out, &statement_name(stmt.hash), p.sql, p.param_types);
                    conn.statements.insert(stmt.hash);
                }
                conn.expect(Expect::Parse {
                    hidden: false,
                    stmt: stmt.hash,
                });
                if p.name.is_empty() {
                    self.unnamed = Some(stmt);
                } else {
                    self.statements.insert(Bytes::copy_from_slice(p.name), stmt);
                }
            }
            ClientMessage::Bind(b) => {
                let shard = self.route();
                if !self.extended_backend(shard).await {
                    return Ok(Flow::Continue);
                }
                let named = self.prepare_on(shard, b.statement);
                let (conn, out) = self.conn_and_buf(shard);
                match named {
                    Named::AsIs => out.extend_from_slice(&f.raw),
                    Named::Renamed(n) => build::bind(out, b.portal, &n, b.rest),
                }
                conn.expect(Expect::Bind);
            }
            ClientMessage::Describe(t) => {
                let shard = self.route();
                if !self.extended_backend(shard).await {
                    return Ok(Flow::Continue);
                }
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
                let shard = self.route();
                if !self.extended_backend(shard).await {
                    return Ok(Flow::Continue);
                }
                let removed = match (t.kind, t.name.is_empty()) {
                    (b'S', false) => self.statements.remove(t.name),
                    (b'S', true) => {
                        self.unnamed = None;
                        None
                    }
                    _ => None,
                };
                let (conn, out) = self.conn_and_buf(shard);
                match removed {
                    Some(stmt) => {
                        conn.statements.remove(&stmt.hash);
                        build::target(out, b'C', b'S', &statement_name(stmt.hash));
                    }
                    None => {
                        if t.kind == b'S' && t.name.is_empty() {
                            conn.unnamed = None;
                        }
                        out.extend_from_slice(&f.raw);
                    }
                }
                conn.expect(Expect::Close);
            }
            ClientMessage::Execute { .. } => {
                let shard = self.route();
                if !self.extended_backend(shard).await {
                    return Ok(Flow::Continue);
                }
                self.send(shard, &f, Expect::Execute);
            }
            ClientMessage::Sync => {
                self.sent_cycles += 1;
                match self.bound_shard() {
                    Some(shard) => self.send(shard, &f, Expect::Sync),
                    None => self.finish_cycle_locally(),
                }
            }
            ClientMessage::Flush => {
                if let Some(shard) = self.bound_shard() {
                    self.swbufs[shard].extend_from_slice(&f.raw);
                }
            }
            ClientMessage::Copy => {
                // COPY data goes to the connection running the COPY; outside COPY, Postgres
                // ignores these messages, and so does the proxy.
                if let Some(shard) = self.bound_shard() {
                    self.swbufs[shard].extend_from_slice(&f.raw);
                }
            }
            ClientMessage::FunctionCall => {
                let shard = self.route();
                if let Err(e) = self.ensure_backend(shard).await {
                    build::error(&mut self.cwbuf, &e);
                    self.sent_cycles += 1;
                    self.finish_cycle_locally();
                    return Ok(Flow::Continue);
                }
                self.send(shard, &f, Expect::Query { hidden: false });
                self.sent_cycles += 1;
            }
            ClientMessage::Other => {
                // Unknown to the proxy: the server is the judge of what it means.
                let shard = self.route();
                if self.ensure_backend(shard).await.is_ok() {
                    self.swbufs[shard].extend_from_slice(&f.raw);
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// The shard for the next statement. Until the router lands, always `default_shard`.
    fn route(&self) -> ShardId {
        self.cfg.default_shard
    }

    /// The shard whose connection is bound, for messages that follow a statement (Sync,
    /// Flush, COPY data).
    fn bound_shard(&self) -> Option<ShardId> {
        self.backends.iter().position(Option::is_some)
    }

    fn conn_and_buf(
        &mut self,
        shard: ShardId,
    ) -> (&mut crate::backend::ServerConn, &mut bytes::BytesMut) {
        let conn = self.backends[shard]
            .as_mut()
            .expect("ensure_backend bound this shard before any frame is queued for it");
        (conn, &mut self.swbufs[shard])
    }

    fn send(&mut self, shard: ShardId, f: &Frame, e: Expect) {
        let (conn, out) = self.conn_and_buf(shard);
        out.extend_from_slice(&f.raw);
        conn.expect(e);
    }

    /// Bind a backend for an extended-protocol message; on failure report the error and drop
    /// input up to the next Sync, as a server does after an error.
    async fn extended_backend(&mut self, shard: ShardId) -> bool {
        match self.ensure_backend(shard).await {
            Ok(()) => true,
            Err(e) => {
                build::error(&mut self.cwbuf, &e);
                self.cycle_error = true;
                self.skip_until_sync = true;
                false
            }
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
            });
            conn.statements.insert(stmt.hash);
        }
        Named::Renamed(server_name)
    }

    /// Record what the statement(s) in `sql` do to session state; pins take effect now,
    /// settings when their request cycle (and transaction) succeeds.
    fn note_effects(&mut self, sql: &[u8], simple: bool) {
        let mut note = |stmt: &[u8]| match classify(stmt) {
            Effect::None => {}
            Effect::Pin(why) => {
                if self.pinned.is_none() {
                    tracing::debug!(reason = why, "client pinned to its server connection");
                }
                self.pinned = Some(why);
            }
            e => self.effects.push((self.sent_cycles, e)),
        };
        if simple {
            for stmt in split_statements(sql) {
                note(stmt);
            }
        } else {
            note(sql);
        }
    }

    /// Answer a Sync (or end a failed Query) that no server will answer.
    pub(super) fn finish_cycle_locally(&mut self) {
        build::ready_for_query(&mut self.cwbuf, self.status);
        let status = self.status;
        self.end_cycle(status);
    }
}
