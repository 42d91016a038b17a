//! Matching a server's responses to the requests the proxy sent it.
//!
//! The proxy sometimes sends a server messages the client never sent (a Parse that
//! re-prepares a statement on a connection that has not seen it, a settings replay) and must
//! hide exactly their answers; and it may only hand a connection back to the pool once every
//! request it forwarded has been answered. A server answers requests strictly in order, so a
//! queue of what each request expects is enough: this module is that queue. It is pure (no
//! IO) and looks only at message tags.

use std::collections::VecDeque;

/// What one request sent to the server expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Parse: ParseComplete. A `hidden` one was injected by the proxy; its success is not
    /// shown, but its error is (it is why the client's next message fails).
    /// `stmt` is the statement's content hash, so a failed Parse can be forgotten; `named`
    /// says whether it creates the server-side `sg_<hash>` (else it fills the unnamed slot).
    Parse {
        hidden: bool,
        stmt: u64,
        named: bool,
    },
    /// Bind: BindComplete.
    Bind,
    /// Describe: (ParameterDescription) then RowDescription or NoData.
    Describe,
    /// Execute: rows, then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    /// Close: CloseComplete (a `hidden` one was injected by the proxy).
    Close { hidden: bool },
    /// Sync: ReadyForQuery.
    Sync,
    /// A simple Query or a FunctionCall: everything up to ReadyForQuery. A `hidden` one is the
    /// proxy's own statement; nothing of its answer reaches the client.
    Query { hidden: bool },
}

/// Whether a server message is passed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Forward,
    Hide,
}

#[derive(Debug, Default, Clone)]
pub struct Tracker {
    queue: VecDeque<Expect>,
    /// Extended-protocol messages were sent since the last Sync: the server is inside an
    /// implicit transaction even when every answer has arrived.
    open_batch: bool,
    /// Requests the server skipped after an error (their effects never happened).
    skipped: Vec<Expect>,
    /// Syncs the server ignored (sent during COPY IN), not yet accounted by the session.
    dropped_syncs: usize,
}

impl Tracker {
    pub fn push(&mut self, e: Expect) {
        match e {
            Expect::Sync | Expect::Query { .. } => self.open_batch = false,
            _ => self.open_batch = true,
        }
        self.queue.push_back(e);
    }

    /// Note a Flush sent outside the queue: it keeps an open batch open.
    pub fn in_batch(&self) -> bool {
        self.open_batch
    }

    /// Requests skipped after an error since the last call.
    pub fn take_skipped(&mut self) -> Vec<Expect> {
        std::mem::take(&mut self.skipped)
    }

    /// Syncs the server ignored since the last call.
    pub fn take_dropped_syncs(&mut self) -> usize {
        std::mem::take(&mut self.dropped_syncs)
    }

    /// The oldest unanswered request.
    pub fn head(&self) -> Option<Expect> {
        self.queue.front().copied()
    }

    /// True when every request sent has been fully answered.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.open_batch = false;
    }

    /// Account for one server message with tag `tag`.
    pub fn on_server(&mut self, tag: u8) -> Visibility {
        let head = self.queue.front().copied();
        if let Some(Expect::Query { hidden: true }) = head {
            // The proxy's own statement: swallow all of it, asynchronous notifications aside.
            if tag == b'Z' {
                self.queue.pop_front();
            }
            return if tag == b'A' {
                Visibility::Forward
            } else {
                Visibility::Hide
            };
        }
        match tag {
            b'E' => {
                if !matches!(head, Some(Expect::Query { .. })) && head.is_some() {
                    // Extended protocol: the failed request is done, and the server skips
                    // every message up to the next Sync, which will answer normally.
                    if let Some(failed) = self.queue.pop_front() {
                        self.skipped.push(failed);
                    }
                    while let Some(e) = self.queue.front() {
                        if *e == Expect::Sync || matches!(e, Expect::Query { .. }) {
                            break;
                        }
                        if let Some(e) = self.queue.pop_front() {
                            self.skipped.push(e);
                        }
                    }
                }
                Visibility::Forward
            }
            b'Z' => {
                if matches!(head, Some(Expect::Sync) | Some(Expect::Query { .. })) {
                    self.queue.pop_front();
                }
                Visibility::Forward
            }
            b'1' => {
                if let Some(Expect::Parse { hidden, .. }) = head {
                    self.queue.pop_front();
                    if hidden {
                        return Visibility::Hide;
                    }
                }
                Visibility::Forward
            }
            b'G' => {
                // COPY FROM STDIN started by an Execute: a Sync sent before the copy data is
                // ignored by the server, so it will not be answered.
                if head == Some(Expect::Execute) {
                    if let Some(i) = self.queue.iter().position(|e| *e == Expect::Sync) {
                        self.queue.remove(i);
                        self.dropped_syncs += 1;
                    }
                }
                Visibility::Forward
            }
            b'2' => self.pop_if(head, Expect::Bind),
            b'3' => {
                if let Some(Expect::Close { hidden }) = head {
                    self.queue.pop_front();
                    if hidden {
                        return Visibility::Hide;
                    }
                }
                Visibility::Forward
            }
            b'T' | b'n' => self.pop_if(head, Expect::Describe),
            b'C' | b'I' | b's' => self.pop_if(head, Expect::Execute),
            _ => Visibility::Forward,
        }
    }

    fn pop_if(&mut self, head: Option<Expect>, want: Expect) -> Visibility {
        if head == Some(want) {
            self.queue.pop_front();
        }
        Visibility::Forward
    }
}

#[cfg(test)]
mod tests {
    use super::Expect::*;
    use super::Visibility::*;
    use super::*;

    /// Feed `sent` then the server's `tags`; return the visible tags and whether idle.
    fn run(sent: &[Expect], tags: &[u8]) -> (String, bool) {
        let mut t = Tracker::default();
        sent.iter().for_each(|e| t.push(*e));
        let shown: String = tags
            .iter()
            .filter(|&&tag| t.on_server(tag) == Forward)
            .map(|&tag| tag as char)
            .collect();
        (shown, t.is_idle())
    }

    #[test]
    fn table() {
        let cases: &[(&[Expect], &[u8], &str, bool)] = &[
            // pgbench -M prepared on a connection that lacks the statement.
            (
                &[
                    Parse {
                        hidden: true,
                        stmt: 1,
                        named: true,
                    },
                    Bind,
                    Execute,
                    Sync,
                ],
                b"12DCZ",
                "2DCZ",
                true,
            ),
            // The injected Parse fails: its error is shown, the rest skipped up to Sync.
            (
                &[
                    Parse {
                        hidden: true,
                        stmt: 1,
                        named: true,
                    },
                    Bind,
                    Execute,
                    Sync,
                ],
                b"EZ",
                "EZ",
                true,
            ),
            // Describe statement: t then T.
            (
                &[
                    Parse {
                        hidden: false,
                        stmt: 1,
                        named: true,
                    },
                    Describe,
                    Sync,
                ],
                b"1tTZ",
                "1tTZ",
                true,
            ),
            (&[Describe, Sync], b"tnZ", "tnZ", true),
            // Simple query with two statements and an error.
            (&[Query { hidden: false }], b"TDCEZ", "TDCEZ", true),
            // Settings replay is invisible; the client's query that follows is not.
            (
                &[Query { hidden: true }, Query { hidden: false }],
                b"CSCZTDCZ",
                "TDCZ",
                true,
            ),
            // Pipelined: answer to the first Sync leaves the second outstanding.
            (
                &[Bind, Execute, Sync, Bind, Execute, Sync],
                b"2CZ",
                "2CZ",
                false,
            ),
            // Portal suspended ends an Execute.
            (&[Execute, Sync], b"DDsZ", "DDsZ", true),
            // Close answers.
            (&[Close { hidden: false }, Sync], b"3Z", "3Z", true),
            (&[Close { hidden: true }, Bind, Sync], b"32Z", "2Z", true),
            // Extended COPY IN: the Sync sent before the data is ignored by the server.
            (&[Bind, Execute, Sync, Sync], b"2GCZ", "2GCZ", true),
            // COPY FROM STDIN in the simple protocol.
            (&[Query { hidden: false }], b"GCZ", "GCZ", true),
            // Notification while a hidden query runs is still delivered.
            (&[Query { hidden: true }], b"AZ", "A", true),
        ];
        for (sent, tags, shown, idle) in cases {
            assert_eq!(
                run(sent, tags),
                (shown.to_string(), *idle),
                "sent {sent:?} got {}",
                String::from_utf8_lossy(tags)
            );
        }
    }
}
