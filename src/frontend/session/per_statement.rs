//! An extended-protocol batch whose statements go to different shards (JDBC `executeBatch`,
//! `executemany`), run one statement at a time in message order.
//!
//! Each Bind (with its Describe and Execute) goes to its own shard followed by a Flush; its
//! answers are forwarded before the next statement is sent, so the client sees them in order.
//! Parse and Close are answered by the proxy (statements are prepared on a shard at first use).
//! After an error the rest of the batch is skipped, as a server does. The batch's Sync then
//! goes to every shard involved. Outside a transaction, a batch that writes on several shards
//! is an implicit transaction committed with two-phase commit; inside one, shards join it.

use bytes::{Buf, BytesMut};

use super::{relay, Session};
use crate::backend::conn::MAX_SERVER_MESSAGE;
use crate::config::ShardId;
use crate::protocol::decode::{self, ClientMessage};
use crate::protocol::track::{Expect, Visibility};
use crate::protocol::{build, frame, sqlstate, Frame, PgError};

impl Session {
    /// Run the batch; ends the cycle. Returns false when the session must close.
    pub(super) async fn run_per_statement(&mut self, frames: &[Frame], write: bool) -> bool {
        let in_txn = !self.participants.is_empty() || self.deferred_begin.is_some();
        let implicit = !in_txn && write;
        let mut involved: Vec<ShardId> = Vec::new();
        let mut current: Option<ShardId> = None;
        let mut failed = false;
        let mut out = BytesMut::new();
        for (i, f) in frames.iter().enumerate() {
            if failed {
                continue;
            }
            match decode::client(f.tag, f.body()) {
                Ok(ClientMessage::Parse(_)) => build::simple(&mut out, b'1'),
                Ok(ClientMessage::Close(_)) => build::simple(&mut out, b'3'),
                Ok(ClientMessage::Bind(_)) => {
                    let shard = match self.shard_of_bind(&frames[i..=i]).await {
                        Ok(s) => s,
                        Err(e) => {
                            self.proxy.error_out(&mut out, &e);
                            failed = true;
                            continue;
                        }
                    };
                    if let Err(e) = self.enter(shard, implicit, in_txn, &mut involved).await {
                        self.proxy.error_out(&mut out, &e);
                        failed = true;
                        continue;
                    }
                    current = Some(shard);
                    self.emit(shard, f);
                }
                Ok(ClientMessage::Describe(t)) if t.kind == b'P' => match current {
                    Some(s) => self.emit(s, f),
                    None => failed = true,
                },
                Ok(ClientMessage::Execute { .. }) => {
                    let Some(s) = current else {
                        failed = true;
                        continue;
                    };
                    self.emit(s, f);
                    // Flush: the answers of this statement come now, before the next is sent.
                    self.swbufs[s].extend_from_slice(b"H\x00\x00\x00\x04");
                    self.flush_servers().await;
                    if self.client.write_all(&out).await.is_err() {
                        return false;
                    }
                    out.clear();
                    match self.relay_answers(s, &mut out).await {
                        Some(error) => failed |= error,
                        None => return false,
                    }
                }
                Ok(ClientMessage::Sync) => {}
                _ => {
                    let e = PgError::error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "this message in a batch whose statements go to different shards",
                    );
                    self.proxy.error_out(&mut out, &e);
                    failed = true;
                }
            }
        }
        // The batch's Sync, to every shard involved; their ReadyForQuery stay with the proxy.
        for &s in &involved {
            if let Some(conn) = self.backends[s].as_mut() {
                build::sync(&mut self.swbufs[s]);
                conn.expect(Expect::Sync);
            }
        }
        self.flush_servers().await;
        for &s in &involved {
            let mut ignored = BytesMut::new();
            if self.relay_answers(s, &mut ignored).await.is_none() {
                return false;
            }
        }
        let mut status = b'I';
        if implicit {
            self.implicit = false;
            if failed {
                let shards = std::mem::take(&mut self.participants);
                for (_, conn) in self.participant_conns(&shards) {
                    if conn.run_hidden("ROLLBACK").await.is_err() {
                        conn.broken = true;
                    }
                }
            } else {
                match self.end_multi(true).await {
                    Ok(_) => {}
                    Err(Some(e)) => self.proxy.error_out(&mut out, &e),
                    Err(None) => return false,
                }
            }
        } else if !self.participants.is_empty() {
            status = if failed { b'E' } else { b'T' };
        }
        build::ready_for_query(&mut out, status);
        if self.client.write_all(&out).await.is_err() {
            return false;
        }
        self.status = status;
        self.sent_cycles += 1;
        self.end_cycle(status, true);
        for s in involved {
            self.maybe_release(s);
        }
        true
    }

    /// The shard of one Bind (with its parameters).
    async fn shard_of_bind(&mut self, bind: &[Frame]) -> Result<ShardId, PgError> {
        let items = self.batch_items(bind);
        match self.target(&items).await {
            super::route::Target::Shard(s) => Ok(s),
            super::route::Target::Refuse(e) => Err(e),
            _ => Err(PgError::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "a statement over several shards inside a batch whose statements go to different shards",
            )),
        }
    }

    /// Bind `shard` and open the transaction there (the client's, or the implicit one).
    async fn enter(
        &mut self,
        shard: ShardId,
        implicit: bool,
        in_txn: bool,
        involved: &mut Vec<ShardId>,
    ) -> Result<(), PgError> {
        self.ensure_backend(shard).await?;
        if implicit && !self.participants.contains(&shard) {
            self.implicit = true;
            if let Some(conn) = self.backends[shard].as_mut() {
                conn.run_hidden("BEGIN")
                    .await
                    .map_err(|e| PgError::error(sqlstate::CONNECTION_FAILURE, e.to_string()))?;
            }
            self.participants.push(shard);
        } else if in_txn {
            self.begin_on(shard, true).await?;
        }
        if !involved.contains(&shard) {
            involved.push(shard);
        }
        Ok(())
    }

    /// Forward shard `s`'s answers to `out` until it has answered everything sent; the client
    /// gets `out` written as it fills. Some(true) when an error came; None when the shard or
    /// the client went away.
    async fn relay_answers(&mut self, s: ShardId, out: &mut BytesMut) -> Option<bool> {
        let mut error = false;
        loop {
            let conn = &mut **self.backends[s].as_mut()?;
            while let Ok(Some((tag, total))) = frame::peek_tagged(&conn.rbuf, MAX_SERVER_MESSAGE) {
                if conn.rbuf.len() < total {
                    break;
                }
                let vis = conn.tracker.on_server(tag);
                if tag == b'Z' {
                    conn.tx_status = conn.rbuf.get(5).copied().unwrap_or(b'I');
                }
                if tag == b'E' {
                    error = true;
                    for skipped in conn.tracker.take_skipped() {
                        if let Expect::Parse {
                            stmt, named: true, ..
                        } = skipped
                        {
                            conn.statements.remove(&stmt);
                        }
                    }
                }
                if vis == Visibility::Forward && tag != b'Z' {
                    out.extend_from_slice(&conn.rbuf[..total]);
                }
                conn.rbuf.advance(total);
            }
            if conn.tracker.is_idle() {
                break;
            }
            if !out.is_empty() {
                if self.client.write_all(out).await.is_err() {
                    return None;
                }
                out.clear();
            }
            let only = [s];
            let (_, r) = relay::read_any(&mut self.backends, Some(&only)).await;
            if !matches!(r, Ok(n) if n > 0) {
                return None;
            }
        }
        Some(error)
    }
}
