//! Server frames -> the client.
//!
//! Frames are forwarded as bytes; only their tags are read, plus the status byte of
//! ReadyForQuery, ParameterStatus values and the first word of a CommandComplete. When
//! nothing in a read has to be hidden, the bytes go to the client straight from the server
//! connection's buffer, without a copy. The end of each request cycle settles the session
//! state the cycle changed (settings, discarded statements) and may hand the connection back
//! to the pool.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use bytes::Buf;

use super::{Flow, Session};
use crate::backend::conn::MAX_SERVER_MESSAGE;
use crate::backend::PooledConn;
use crate::config::ShardId;
use crate::frontend::settings::Effect;
use crate::protocol::track::{Expect, Visibility};

use super::fanout::Fate;
use crate::protocol::{frame, sqlstate, PgError};

/// Read from whichever bound server connection has data. Cancel-safe: a read that loses the
/// race in `select!` has read nothing.
pub(super) async fn read_any(
    backends: &mut [Option<PooledConn>],
    only: Option<&[ShardId]>,
) -> (ShardId, std::io::Result<usize>) {
    poll_fn(|cx| {
        for (shard, slot) in backends.iter_mut().enumerate() {
            if only.is_some_and(|o| !o.contains(&shard)) {
                continue;
            }
            let Some(conn) = slot.as_mut() else { continue };
            let conn = &mut **conn;
            if conn.rbuf.capacity() - conn.rbuf.len() < 4096 {
                conn.rbuf.reserve(32 * 1024);
            }
            if let Poll::Ready(r) =
                tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.rbuf)
            {
                return Poll::Ready((shard, r));
            }
        }
        Poll::Pending
    })
    .await
}

impl Session {
    pub(super) async fn on_server_input(&mut self, shard: ShardId) -> Flow {
        let shard_name = self.cfg.shards[shard].name.clone();
        let Some(conn) = self.backends[shard].as_mut() else {
            return Flow::Continue;
        };
        let conn = &mut **conn;
        let mut off = 0;
        // Whether every frame so far went to the client, so the buffer can be sent as is.
        let mut direct = self.cwbuf.is_empty();
        let mut cycles_done = Vec::new();
        let mut fan_over = false;
        let mut fan_end = None;
        loop {
            let (tag, total) = match frame::peek_tagged(&conn.rbuf[off..], MAX_SERVER_MESSAGE) {
                Ok(Some((tag, total))) if conn.rbuf.len() - off >= total => (tag, total),
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(shard = %shard_name, error = %e, "malformed message from a shard");
                    conn.broken = true;
                    let err = PgError::fatal(
                        sqlstate::CONNECTION_FAILURE,
                        format!("malformed message from shard \"{shard_name}\""),
                    );
                    self.send_error(&err).await;
                    return Flow::Close;
                }
            };
            let body = &conn.rbuf[off + 5..off + total];
            let head = conn.tracker.head();
            tracing::trace!(pid = self.cancel.pid, tag = %(tag as char), ?head, "server frame");
            let mut vis = conn.tracker.on_server(tag);
            let mut replacement = None;
            match tag {
                b'Z' => {
                    let status = body.first().copied().unwrap_or(b'I');
                    conn.tx_status = status;
                    if vis == Visibility::Forward && self.fan.is_none() {
                        cycles_done.push(status);
                        if status == b'I' && self.deferred_begin.is_some() {
                            // The client is in a transaction the proxy has not opened on any
                            // shard yet: it must read 'T', not the server's 'I'.
                            let mut z = bytes::BytesMut::new();
                            crate::protocol::build::ready_for_query(&mut z, b'T');
                            replacement = Some(z);
                            vis = Visibility::Hide;
                        }
                    }
                }
                b'S' => {
                    if let Some((k, v)) = crate::protocol::decode::parameter_status(body) {
                        if k == "client_encoding" && vis == Visibility::Forward {
                            self.utf8_client = super::is_utf8(&v);
                        }
                        conn.params.insert(k, v);
                    }
                }
                b'E' => {
                    // Requests the server skipped never took effect: forget statements they
                    // were to create (only those this very Parse created).
                    for skipped in conn.tracker.take_skipped() {
                        if let Expect::Parse { stmt, named, .. } = skipped {
                            if named {
                                conn.statements.remove(&stmt);
                            } else if conn.unnamed == Some(stmt) {
                                conn.unnamed = None;
                            }
                        }
                    }
                    if vis == Visibility::Forward {
                        self.cycle_error = true;
                        self.proxy.metrics().server_error();
                    }
                }
                b'C' if body.starts_with(b"ROLLBACK") => {
                    // A COMMIT or ROLLBACK that rolled back, unless it is one of the cycle's
                    // ROLLBACK TO SAVEPOINTs, which have the same tag.
                    let cycle = self.done_cycles;
                    if let Some((_, to)) =
                        self.rollback_cycles.iter_mut().find(|(c, _)| *c == cycle)
                    {
                        if *to > 0 {
                            *to -= 1;
                        } else {
                            self.saw_rollback = true;
                        }
                    }
                }
                _ => {}
            }
            if vis == Visibility::Forward {
                if let Some(fan) = self.fan.as_mut() {
                    match fan.on_frame(tag, body, &shard_name) {
                        Fate::Forward => {}
                        Fate::Hide => vis = Visibility::Hide,
                        Fate::Replace(bytes) => {
                            vis = Visibility::Hide;
                            replacement = Some(bytes);
                        }
                        Fate::ShardDone(end) => {
                            vis = Visibility::Hide;
                            if let Some(end) = end {
                                fan_end = Some(end);
                                fan_over = true;
                            }
                        }
                    }
                }
            }
            match vis {
                Visibility::Forward if !direct => {
                    self.cwbuf.extend_from_slice(&conn.rbuf[off..off + total])
                }
                Visibility::Forward => {}
                Visibility::Hide => {
                    if direct {
                        // Switch to copying: what came before this frame goes first.
                        self.cwbuf.extend_from_slice(&conn.rbuf[..off]);
                        direct = false;
                    }
                    if let Some(bytes) = replacement {
                        self.cwbuf.extend_from_slice(&bytes);
                    }
                }
            }
            off += total;
            if fan_over || self.fan.as_ref().is_some_and(|f| f.current() != shard) {
                // The next shard's turn (or the end): stop reading this one.
                break;
            }
        }
        // Syncs the server ignored during COPY IN: their cycles end with the COPY's.
        let dropped = conn.tracker.take_dropped_syncs();
        // One client cycle per ignored Sync, however many shards ran the COPY.
        if self
            .fan
            .as_ref()
            .is_none_or(|f| f.shards.first() == Some(&shard))
        {
            for _ in 0..dropped {
                self.cycle_shards.pop_front();
                self.done_cycles += 1;
            }
        }
        let write = if direct {
            let r = self.client.write_all(&conn.rbuf[..off]).await;
            conn.rbuf.advance(off);
            r
        } else {
            conn.rbuf.advance(off);
            let r = self.client.write_all(&self.cwbuf).await;
            self.cwbuf.clear();
            r
        };
        if let Some(end) = fan_end {
            let shards = self.fan.take().map(|f| f.shards).unwrap_or_default();
            if !self.finish_multi(end).await {
                return Flow::Close;
            }
            for s in shards {
                self.maybe_release(s);
            }
        }
        for status in cycles_done {
            self.status = if status == b'I' && self.deferred_begin.is_some() {
                b'T'
            } else {
                status
            };
            self.end_cycle(status, false);
        }
        self.maybe_release(shard);
        // A shard whose turn came may already have its answer buffered.
        if let Some(next) = self.fan.as_ref().map(|f| f.current()) {
            if next != shard
                && self.backends[next]
                    .as_ref()
                    .is_some_and(|c| !c.rbuf.is_empty())
            {
                return Box::pin(self.on_server_input(next)).await;
            }
        }
        match write {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    /// A server connection closed or failed under the session.
    pub(super) async fn on_server_lost(&mut self, shard: ShardId) -> Flow {
        let busy = self.backends[shard]
            .as_ref()
            .is_some_and(|c| !c.tracker.is_idle() || c.tx_status != b'I');
        if let Some(conn) = self.backends[shard].as_mut() {
            conn.broken = true;
        }
        self.release(shard);
        if !busy && self.pinned.is_none() {
            // An idle connection went away (server restart): the next statement gets another.
            return Flow::Continue;
        }
        let name = self.cfg.shards[shard].name.clone();
        let e = PgError::fatal(
            sqlstate::CONNECTION_FAILURE,
            format!("lost the connection to shard \"{name}\""),
        );
        self.send_error(&e).await;
        Flow::Close
    }

    /// A request cycle (up to ReadyForQuery) ended with transaction status `status`: settle
    /// the session-state effects of its statements.
    pub(super) fn end_cycle(&mut self, status: u8, local: bool) {
        if !local {
            // Which shard this cycle ran on tells which shards take part in a transaction.
            if let Some(Some(shard)) = self.cycle_shards.pop_front() {
                match status {
                    b'T' | b'E' => {
                        if !self.participants.contains(&shard) {
                            self.participants.push(shard);
                        }
                    }
                    _ if self.participants.len() > 1 => {
                        // One participant ended its part alone (cannot happen through the
                        // router); closing the others' connections rolls them back.
                        tracing::warn!(
                            "a shard left a multi-shard transaction; rolling back the rest"
                        );
                        for s in std::mem::take(&mut self.participants) {
                            if let Some(c) = self.backends[s].as_mut() {
                                c.broken = true;
                            }
                            self.release(s);
                        }
                    }
                    _ => self.participants.clear(),
                }
            }
            if status == b'I' {
                self.proxy_aborted = false;
                self.savepoints.clear();
            }
        }
        let cycle = self.done_cycles;
        self.done_cycles += 1;
        self.cycles_done();
        self.rollback_cycles.retain(|&(c, _)| c > cycle);
        let failed = self.cycle_error;
        let mut i = 0;
        while i < self.effects.len() {
            if self.effects[i].0 <= cycle {
                let (_, e, under) = self.effects.remove(i);
                if !failed {
                    self.txn_effects.push((e, under));
                }
            } else {
                i += 1;
            }
        }
        if status == b'I' {
            let effects = std::mem::take(&mut self.txn_effects);
            if !self.saw_rollback && !failed {
                for (e, _) in &effects {
                    self.apply_effect(e);
                }
            }
            self.saw_rollback = false;
        }
        self.cycle_error = false;
    }

    fn apply_effect(&mut self, e: &Effect) {
        self.settings.apply(e);
        let key = self.settings.key();
        if matches!(e, Effect::DiscardAll | Effect::ResetAll) {
            self.hint_shard = None;
        }
        let discard = *e == Effect::DiscardAll;
        let dealloc = discard || *e == Effect::DeallocateAll;
        if dealloc {
            self.statements.clear();
            self.unnamed = None;
        }
        let held: Vec<ShardId> = (0..self.backends.len())
            .filter(|&s| self.backends[s].is_some())
            .collect();
        if discard && held.len() > 1 {
            // The statement ran on one of them; the others still hold session state. Close
            // them all: the next statements get fresh connections.
            for s in held {
                if let Some(c) = self.backends[s].as_mut() {
                    c.broken = true;
                }
                self.release(s);
            }
            self.pinned = None;
            return;
        }
        if discard {
            self.pinned = None;
        }
        let single = held.len() == 1;
        for conn in self.backends.iter_mut().flatten() {
            if dealloc {
                conn.statements.clear();
                conn.unnamed = None;
            }
            if discard {
                conn.settings_key = 0;
            } else if *e != Effect::DeallocateAll {
                // With one connection held, it ran the SET; with several, replay before use.
                conn.settings_key = if single { key } else { u64::MAX };
            }
        }
    }
}

impl Session {
    /// Shards with requests still unanswered.
    pub(super) fn outstanding(&self) -> Vec<ShardId> {
        self.backends
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| !c.tracker.is_idle()))
            .map(|(s, _)| s)
            .collect()
    }

    /// Send what is queued and forward every outstanding answer, so that the session's view
    /// of transactions is current and a reply the proxy makes itself comes after them.
    /// Returns false when the session must close.
    pub(super) async fn settle(&mut self) -> bool {
        self.flush_servers().await;
        while !self.outstanding().is_empty() {
            let only = self.fan.as_ref().map(|f| [f.current()]);
            let (shard, r) = read_any(&mut self.backends, only.as_ref().map(|o| &o[..])).await;
            let flow = match r {
                Ok(0) | Err(_) => self.on_server_lost(shard).await,
                Ok(_) => self.on_server_input(shard).await,
            };
            if let Flow::Close = flow {
                return false;
            }
        }
        true
    }
}

impl Session {
    /// Answer the client at the end of a multi-shard cycle. An implicit transaction (a write on
    /// several shards outside a transaction block) is committed here with two-phase commit, or
    /// rolled back if any shard failed. Returns false when the session must close.
    async fn finish_multi(&mut self, end: super::fanout::FanEnd) -> bool {
        let mut out = bytes::BytesMut::new();
        if end.copy_out {
            crate::protocol::build::simple(&mut out, b'c');
        }
        self.copy_in = None;
        let status = if self.implicit {
            self.implicit = false;
            if end.failed || end.status == b'E' {
                let shards = std::mem::take(&mut self.participants);
                for (_, conn) in self.participant_conns(&shards) {
                    if conn.run_hidden("ROLLBACK").await.is_err() {
                        conn.broken = true;
                    }
                }
            } else {
                match self.end_multi(true).await {
                    Ok(_) => {
                        put_rows(&mut out, &end);
                        if let Some(t) = &end.tag {
                            crate::protocol::build::command_complete(&mut out, t);
                        }
                    }
                    Err(Some(e)) => self.proxy.error_out(&mut out, &e),
                    Err(None) => return false,
                }
            }
            b'I'
        } else {
            put_rows(&mut out, &end);
            if let Some(t) = &end.tag {
                crate::protocol::build::command_complete(&mut out, t);
            }
            if self.participants.is_empty() {
                b'I'
            } else if end.failed || end.status == b'E' {
                b'E'
            } else {
                b'T'
            }
        };
        crate::protocol::build::ready_for_query(&mut out, status);
        if self.client.write_all(&out).await.is_err() {
            return false;
        }
        self.status = status;
        self.end_cycle(status, false);
        true
    }
}

/// The held rows of a split INSERT ... RETURNING, before its tag; a warning first when they
/// could not be put back in VALUES order.
fn put_rows(out: &mut bytes::BytesMut, end: &super::fanout::FanEnd) {
    if end.unordered {
        crate::protocol::build::notice(
            out,
            "WARNING",
            "01000",
            "RETURNING rows of this INSERT are grouped by shard, not in VALUES order: a shard returned fewer or more rows than it was sent",
        );
    }
    for row in &end.rows {
        out.extend_from_slice(row);
    }
}
