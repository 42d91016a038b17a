//! Running one merged read: the rewritten statement on every shard, their answers combined by
//! `merge::Merger` into the single answer one Postgres would give (sorted, limited,
//! aggregated ...).
//!
//! The loop takes a shard's next message only when the merger wants a row from that shard, so
//! memory stays bounded however many rows flow: the other shards wait in their sockets. Once
//! LIMIT is satisfied, the rest of each shard's answer is read and discarded when it is short
//! (each shard was asked for at most `LIMIT + OFFSET` rows, at most [`DRAIN_ROWS`]), so the
//! connections go back to the pool; past that, outside a transaction, the shards still sending
//! are dropped (closing the connection makes each server abandon its query). The first error
//! from any shard, or from the merge itself, fails the statement.

use std::sync::Arc;

use bytes::{Buf, BytesMut};

use super::client::has_row_limit;
use super::{relay, Session, Stmt};
use crate::backend::conn::{statement_name, MAX_SERVER_MESSAGE};
use crate::config::ShardId;
use crate::merge::{MergeError, MergePlan, Merger, Progress};
use crate::protocol::decode::ClientMessage;
use crate::protocol::track::Expect;
use crate::protocol::{build, decode, frame, sqlstate, Frame, PgError};

/// Write to the client once this much output has collected.
const FLUSH_AT: usize = 64 * 1024;

/// Up to this many rows per shard (`LIMIT + OFFSET`), the rest of a shard's answer after the
/// merge is done is read and discarded rather than the connection closed: a new server
/// connection (fork, authentication) costs far more than skipping a few thousand rows.
const DRAIN_ROWS: u64 = 10_000;

/// The ErrorResponse frame for a merge failure (the engine names shards by position).
fn merge_error(
    e: &MergeError,
    proxy: &crate::frontend::Proxy,
    cfg: &crate::config::Config,
    shards: &[ShardId],
) -> BytesMut {
    let mut msg = e.to_string();
    for (i, &s) in shards.iter().enumerate() {
        msg = msg.replace(
            &format!("shard {i}"),
            &format!("shard \"{}\"", cfg.shards[s].name),
        );
    }
    let mut f = BytesMut::new();
    proxy.error_out(&mut f, &PgError::error(e.sqlstate(), msg));
    f
}

impl Session {
    /// Merge the answers of `shards` to the statement already sent to them. Ends the cycle.
    /// Returns false when the session must close.
    pub(super) async fn run_merge(
        &mut self,
        shards: Vec<ShardId>,
        plan: MergePlan,
        ext: Option<(BytesMut, bool)>,
    ) -> bool {
        let n = shards.len();
        // In the extended protocol the client gets the answers to its own messages first
        // (ParseComplete, BindComplete), and a RowDescription only if it asked (Describe).
        let describe = ext.as_ref().is_none_or(|(_, d)| *d);
        let max_rows = self.cfg.limits.max_merge_rows;
        let in_txn = !self.participants.is_empty();
        // Whether the shards' answers are short enough to read to the end once LIMIT is met:
        // only ungrouped reads carry LIMIT + OFFSET to the shards (router::rewrite).
        let ungrouped = plan.group_by.is_empty() && !plan.aggregate && !plan.distinct;
        let drain = ungrouped
            && plan
                .limit
                .is_some_and(|l| l.saturating_add(plan.offset) <= DRAIN_ROWS);
        let mut merger: Option<Merger> = None;
        let mut ready = vec![false; n]; // ReadyForQuery seen
        let mut ended = vec![false; n]; // CommandComplete seen
        let mut status = if in_txn { b'T' } else { b'I' };
        // The statement's error, as the ErrorResponse frame to send (the first one wins).
        let mut error: Option<BytesMut> = None;
        let mut done = false;
        let mut out = BytesMut::new();
        if let Some((prefix, _)) = &ext {
            out.extend_from_slice(prefix);
        }
        loop {
            let mut progressed = false;
            for i in 0..n {
                let s = shards[i];
                while !ready[i] {
                    let free = merger.is_none()
                        || error.is_some()
                        || done
                        || ended[i]
                        || merger.as_ref().is_some_and(|m| m.wants().any(|w| w == i));
                    if !free {
                        break;
                    }
                    let Some(conn) = self.backends[s].as_mut() else {
                        ready[i] = true;
                        break;
                    };
                    let conn = &mut **conn;
                    let (tag, total) = match frame::peek_tagged(&conn.rbuf, MAX_SERVER_MESSAGE) {
                        Ok(Some((tag, total))) if conn.rbuf.len() >= total => (tag, total),
                        Ok(_) => break,
                        Err(_) => {
                            conn.broken = true;
                            let e = PgError::fatal(
                                sqlstate::CONNECTION_FAILURE,
                                "malformed message from a shard",
                            );
                            self.send_error(&e).await;
                            return false;
                        }
                    };
                    let body = &conn.rbuf[5..total];
                    conn.tracker.on_server(tag);
                    let step: Result<(), MergeError> = match tag {
                        b'T' => match merger.as_ref() {
                            None => match crate::merge::rows::parse_row_description(body) {
                                Ok(fields) => match plan.resolve(fields.len()) {
                                    Some(p) => Merger::new(p.for_engine(), body, n, max_rows)
                                        .and_then(|m| {
                                            if describe {
                                                m.row_description(&mut out)?;
                                            }
                                            merger = Some(m);
                                            Ok(())
                                        }),
                                    None => Err(MergeError::Contract(
                                        "the shards' result has an unexpected number of columns"
                                            .into(),
                                    )),
                                },
                                Err(e) => Err(MergeError::BadRowDescription(e.to_string())),
                            },
                            Some(m) => m.check_row_description(i, body),
                        },
                        b'D' if error.is_none() && !done => match merger.as_mut() {
                            Some(m) => m.push_row(i, body),
                            None => {
                                Err(MergeError::Contract("a row before its description".into()))
                            }
                        },
                        b'C' => {
                            ended[i] = true;
                            match merger.as_mut() {
                                Some(m) if error.is_none() && !done => m.finish_shard(i),
                                _ => Ok(()),
                            }
                        }
                        b'E' => {
                            if error.is_none() {
                                let mut fields = decode::error_fields(body);
                                let note = format!("(on shard {})", self.cfg.shards[s].name);
                                match fields.iter_mut().find(|(k, _)| *k == b'D') {
                                    Some((_, d)) => {
                                        d.push(' ');
                                        d.push_str(&note);
                                    }
                                    None => fields.push((b'D', note)),
                                }
                                let mut f = BytesMut::new();
                                build::error_fields(&mut f, fields);
                                error = Some(f);
                            }
                            Ok(())
                        }
                        b'Z' => {
                            let st = body.first().copied().unwrap_or(b'I');
                            conn.tx_status = st;
                            if st == b'E' {
                                status = b'E';
                            }
                            ready[i] = true;
                            Ok(())
                        }
                        b'N' | b'A' => {
                            out.extend_from_slice(&conn.rbuf[..total]);
                            Ok(())
                        }
                        _ => Ok(()),
                    };
                    conn.rbuf.advance(total);
                    progressed = true;
                    if let Err(e) = step {
                        if error.is_none() {
                            error = Some(merge_error(&e, &self.proxy, &self.cfg, &shards));
                        }
                    }
                    if let (Some(m), None, false) = (merger.as_mut(), &error, done) {
                        match m.drain(&mut out) {
                            Ok(Progress::Done) => done = true,
                            Ok(Progress::NeedInput) => {}
                            Err(e) => {
                                error = Some(merge_error(&e, &self.proxy, &self.cfg, &shards))
                            }
                        }
                    }
                }
            }
            if out.len() >= FLUSH_AT {
                if self.client.write_all(&out).await.is_err() {
                    return false;
                }
                out.clear();
            }
            if ready.iter().all(|&r| r) {
                break;
            }
            if done && !in_txn && !drain {
                // LIMIT is satisfied and the rest may be long: stop the shards still sending
                // instead of reading on.
                for i in 0..n {
                    if !ready[i] {
                        if let Some(c) = self.backends[shards[i]].as_mut() {
                            c.broken = true;
                        }
                        self.release(shards[i]);
                        ready[i] = true;
                    }
                }
                break;
            }
            if !progressed {
                let wanted: Vec<ShardId> = (0..n)
                    .filter(|&i| !ready[i])
                    .filter(|&i| {
                        merger.is_none()
                            || error.is_some()
                            || done
                            || ended[i]
                            || merger.as_ref().is_some_and(|m| m.wants().any(|w| w == i))
                    })
                    .map(|i| shards[i])
                    .collect();
                let (shard, r) = relay::read_any(&mut self.backends, Some(&wanted)).await;
                if !matches!(r, Ok(n) if n > 0) {
                    // A shard went away mid-statement: the session cannot answer correctly.
                    let _ = self.on_server_lost(shard).await;
                    return false;
                }
            }
        }
        // The end of the cycle: the error, or what the merge still holds and the tag.
        if error.is_none() {
            match merger.as_mut() {
                Some(m) => match m.drain(&mut out) {
                    Ok(_) => build::command_complete(&mut out, &m.command_tag()),
                    Err(e) => error = Some(merge_error(&e, &self.proxy, &self.cfg, &shards)),
                },
                None => {
                    let mut f = BytesMut::new();
                    let e = PgError::error(
                        sqlstate::INTERNAL_ERROR,
                        "no shard described the merged result",
                    );
                    self.proxy.error_out(&mut f, &e);
                    error = Some(f);
                }
            }
        }
        if let Some(f) = error {
            out.extend_from_slice(&f);
            if in_txn {
                // As after any error, the transaction is failed until it ends.
                self.proxy_aborted = true;
                status = b'E';
            }
        }
        build::ready_for_query(&mut out, status);
        if self.client.write_all(&out).await.is_err() {
            return false;
        }
        self.status = status;
        self.end_cycle(status, false);
        for s in shards {
            self.maybe_release(s);
        }
        true
    }
}

impl Session {
    /// A merged read in the extended protocol: the batch's one executed statement is run on
    /// every shard as the rewritten statement (the client's parameters verbatim, result
    /// formats extended for the helper columns); the client gets its own ParseComplete,
    /// BindComplete and (if it asked) the merged RowDescription, then the merged rows.
    pub(super) async fn send_merge_batch(
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
