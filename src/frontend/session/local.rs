//! Statements the proxy answers itself (BEGIN before its first statement, the end of a
//! transaction that never reached a shard or that the proxy failed, `SET shardgate.shard`),
//! in the simple protocol and message by message in an extended batch.

use super::route::LocalAction;
use super::Session;
use crate::protocol::decode::{self, ClientMessage};
use crate::protocol::{build, Frame, PgError};

impl Session {
    /// Answer a statement the proxy handles itself (simple protocol: its CommandComplete).
    pub(super) fn local_action(&mut self, a: &LocalAction, write_tag: bool) {
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
                    self.proxy.error_out(&mut self.cwbuf, &e);
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
    pub(super) async fn prepare_local(&mut self, actions: &[LocalAction]) {
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

    /// Answer a batch of proxy-handled statements (BEGIN, COMMIT, SET shardgate.shard ...)
    /// message by message, as a server would.
    pub(super) fn answer_batch_locally(
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
                        self.proxy.error_out(&mut self.cwbuf, &e);
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
}
