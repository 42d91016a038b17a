//! A read sent to several shards whose rows are concatenated (no ordering or aggregation:
//! the router refuses statements that would need a merge).
//!
//! The shards answer one after another, in shard order: the first shard's answer is forwarded
//! up to its CommandComplete (so the client gets one RowDescription, ParseComplete, ...), the
//! others contribute only their rows; their command tags are summed into one
//! CommandComplete and a single ReadyForQuery ends the cycle. Reading one shard at a time
//! keeps memory flat: the others wait in their sockets. The first error fails the statement
//! with that shard's error, its detail naming the shard; later shards are drained silently.
//!
//! A split multi-row `INSERT ... RETURNING` is the one exception to "forward rows as they
//! come": its rows are held (they are bounded by the statement's own VALUES list) and handed
//! back at the end interleaved into VALUES order, since each shard answers its own rows in
//! their original order.

use crate::config::ShardId;
use crate::protocol::{build, decode};

use bytes::BytesMut;

#[derive(Debug)]
pub(super) struct FanOut {
    pub shards: Vec<ShardId>,
    /// Index into `shards` of the shard being read.
    pub at: usize,
    /// CommandComplete tag without its row count (`SELECT`, `INSERT 0`), and the sum.
    tag: Option<String>,
    count: u64,
    counted: bool,
    failed: bool,
    /// The worst transaction status the shards reported: `E` over `T` over `I`.
    status: u8,
    /// A COPY TO STDOUT: the client needs one CopyDone before the tag.
    copy_out: bool,
    /// For a split INSERT ... RETURNING: the shard of each VALUES row, in order.
    order: Option<Vec<ShardId>>,
    /// The held DataRow frames of each shard, in the order the shard sent them.
    held: std::collections::HashMap<ShardId, std::collections::VecDeque<BytesMut>>,
}

/// How a multi-shard cycle ended, for the session to answer the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FanEnd {
    /// The combined CommandComplete tag (`None` after an error, or when no shard sent one).
    pub tag: Option<String>,
    pub failed: bool,
    pub status: u8,
    pub copy_out: bool,
    /// Held DataRow frames to send before the tag (a split INSERT ... RETURNING).
    pub rows: Vec<BytesMut>,
    /// Rows could not be matched to their VALUES rows (a trigger or rule skipped some): they
    /// are returned grouped by shard instead, and the client is told so.
    pub unordered: bool,
}

/// What to do with one frame of the shard being read.
pub(super) enum Fate {
    Forward,
    Hide,
    /// Forward this rebuilt frame instead (an error naming its shard).
    Replace(bytes::BytesMut),
    /// The shard finished; if it was the last, how the whole cycle ended.
    ShardDone(Option<FanEnd>),
}

/// `SELECT 12` -> ("SELECT", Some(12)); `INSERT 0 3` -> ("INSERT 0", Some(3)); `VACUUM`.
fn split_tag(tag: &str) -> (String, Option<u64>) {
    match tag.rsplit_once(' ') {
        Some((head, n)) => match n.parse() {
            Ok(n) => (head.to_owned(), Some(n)),
            Err(_) => (tag.to_owned(), None),
        },
        None => (tag.to_owned(), None),
    }
}

impl FanOut {
    pub fn new(shards: Vec<ShardId>) -> Self {
        FanOut {
            shards,
            at: 0,
            tag: None,
            count: 0,
            counted: false,
            failed: false,
            status: b'I',
            copy_out: false,
            order: None,
            held: Default::default(),
        }
    }

    /// Hold the rows and return them in the order of `row_shards` (the shard of each VALUES
    /// row of a split INSERT ... RETURNING).
    pub fn keep_row_order(&mut self, row_shards: Vec<ShardId>) {
        self.order = Some(row_shards);
    }

    /// The held rows interleaved into VALUES order; `true` when the counts did not match and
    /// the leftovers were appended by shard.
    fn ordered_rows(&mut self) -> (Vec<BytesMut>, bool) {
        let Some(order) = self.order.take() else {
            return (Vec::new(), false);
        };
        let mut out = Vec::with_capacity(order.len());
        let mut unordered = false;
        for s in &order {
            match self.held.get_mut(s).and_then(|q| q.pop_front()) {
                Some(row) => out.push(row),
                None => unordered = true,
            }
        }
        for s in &self.shards {
            if let Some(q) = self.held.get_mut(s) {
                unordered |= !q.is_empty();
                out.extend(q.drain(..));
            }
        }
        (out, unordered)
    }

    pub fn current(&self) -> ShardId {
        self.shards[self.at]
    }

    fn first(&self) -> bool {
        self.at == 0
    }

    /// Decide the fate of one frame from the current shard.
    pub fn on_frame(&mut self, tag: u8, body: &[u8], shard_name: &str) -> Fate {
        match tag {
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                if status == b'E' || (status == b'T' && self.status == b'I') {
                    self.status = status;
                }
                self.at += 1;
                if self.at < self.shards.len() {
                    return Fate::ShardDone(None);
                }
                let tag = match (&self.tag, self.failed) {
                    (Some(t), false) if self.counted => Some(format!("{t} {}", self.count)),
                    (Some(t), false) => Some(t.clone()),
                    _ => None,
                };
                let (rows, unordered) = if self.failed {
                    (Vec::new(), false)
                } else {
                    self.ordered_rows()
                };
                Fate::ShardDone(Some(FanEnd {
                    tag,
                    failed: self.failed,
                    status: self.status,
                    copy_out: self.copy_out && !self.failed,
                    rows,
                    unordered,
                }))
            }
            b'C' => {
                let text = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(body));
                let (head, n) = split_tag(&text);
                self.tag.get_or_insert(head);
                if let Some(n) = n {
                    self.count += n;
                    self.counted = true;
                }
                Fate::Hide
            }
            b'E' if self.failed => Fate::Hide,
            b'E' => {
                self.failed = true;
                let mut fields = decode::error_fields(body);
                let note = format!("(on shard {shard_name})");
                match fields.iter_mut().find(|(k, _)| *k == b'D') {
                    Some((_, d)) => {
                        d.push(' ');
                        d.push_str(&note);
                    }
                    None => fields.push((b'D', note)),
                }
                let mut out = bytes::BytesMut::new();
                build::error_fields(&mut out, fields);
                Fate::Replace(out)
            }
            _ if self.failed => Fate::Hide,
            b'D' if self.order.is_some() => {
                let mut frame = BytesMut::with_capacity(body.len() + 5);
                frame.extend_from_slice(b"D");
                frame.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
                frame.extend_from_slice(body);
                let shard = self.current();
                self.held.entry(shard).or_default().push_back(frame);
                Fate::Hide
            }
            b'D' | b'd' | b'N' | b'A' => Fate::Forward,
            b'H' if self.first() => {
                self.copy_out = true;
                Fate::Forward
            }
            // One CopyDone for the whole COPY TO, sent at the end.
            b'c' => Fate::Hide,
            b'S' => Fate::Hide,
            // Statement-level answers (ParseComplete, BindComplete, RowDescription, ...) once.
            _ if self.first() => Fate::Forward,
            _ => Fate::Hide,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_and_sum() {
        assert_eq!(split_tag("SELECT 12"), ("SELECT".into(), Some(12)));
        assert_eq!(split_tag("INSERT 0 3"), ("INSERT 0".into(), Some(3)));
        assert_eq!(split_tag("VACUUM"), ("VACUUM".into(), None));
        let mut f = FanOut::new(vec![0, 1]);
        assert!(matches!(f.on_frame(b'T', b"", "s0"), Fate::Forward));
        assert!(matches!(f.on_frame(b'D', b"", "s0"), Fate::Forward));
        assert!(matches!(f.on_frame(b'C', b"SELECT 1\0", "s0"), Fate::Hide));
        assert!(matches!(
            f.on_frame(b'Z', b"I", "s0"),
            Fate::ShardDone(None)
        ));
        assert!(matches!(f.on_frame(b'T', b"", "s1"), Fate::Hide));
        assert!(matches!(f.on_frame(b'D', b"", "s1"), Fate::Forward));
        assert!(matches!(f.on_frame(b'C', b"SELECT 2\0", "s1"), Fate::Hide));
        let Fate::ShardDone(Some(end)) = f.on_frame(b'Z', b"I", "s1") else {
            panic!("cycle end expected")
        };
        assert_eq!(end.tag.as_deref(), Some("SELECT 3"));
        assert_eq!((end.failed, end.status), (false, b'I'));
    }

    #[test]
    fn returning_rows_come_back_in_values_order() {
        // VALUES rows 0..4 live on shards [1, 0, 1, 0].
        let mut f = FanOut::new(vec![0, 1]);
        f.keep_row_order(vec![1, 0, 1, 0]);
        assert!(matches!(f.on_frame(b'T', b"", "s0"), Fate::Forward));
        assert!(matches!(f.on_frame(b'D', b"r1", "s0"), Fate::Hide));
        assert!(matches!(f.on_frame(b'D', b"r3", "s0"), Fate::Hide));
        assert!(matches!(
            f.on_frame(b'C', b"INSERT 0 2\0", "s0"),
            Fate::Hide
        ));
        assert!(matches!(
            f.on_frame(b'Z', b"T", "s0"),
            Fate::ShardDone(None)
        ));
        assert!(matches!(f.on_frame(b'T', b"", "s1"), Fate::Hide));
        assert!(matches!(f.on_frame(b'D', b"r0", "s1"), Fate::Hide));
        assert!(matches!(f.on_frame(b'D', b"r2", "s1"), Fate::Hide));
        assert!(matches!(
            f.on_frame(b'C', b"INSERT 0 2\0", "s1"),
            Fate::Hide
        ));
        let Fate::ShardDone(Some(end)) = f.on_frame(b'Z', b"T", "s1") else {
            panic!("cycle end expected")
        };
        let bodies: Vec<&[u8]> = end.rows.iter().map(|r| &r[5..]).collect();
        assert_eq!(bodies, vec![&b"r0"[..], b"r1", b"r2", b"r3"]);
        assert_eq!(&end.rows[0][..5], &[b'D', 0, 0, 0, 6]);
        assert!(!end.unordered);
        assert_eq!(end.tag.as_deref(), Some("INSERT 0 4"));

        // A shard that returned fewer rows than it was sent: grouped by shard, flagged.
        let mut f = FanOut::new(vec![0, 1]);
        f.keep_row_order(vec![0, 1, 0]);
        let _ = f.on_frame(b'D', b"a", "s0");
        let _ = f.on_frame(b'Z', b"T", "s0");
        let _ = f.on_frame(b'D', b"b", "s1");
        let _ = f.on_frame(b'D', b"c", "s1");
        let Fate::ShardDone(Some(end)) = f.on_frame(b'Z', b"T", "s1") else {
            panic!("cycle end expected")
        };
        assert!(end.unordered);
        assert_eq!(end.rows.len(), 3);
    }

    #[test]
    fn first_error_names_its_shard_and_later_output_is_dropped() {
        let mut f = FanOut::new(vec![0, 1]);
        let Fate::Replace(e) = f.on_frame(b'E', b"SERROR\0C22012\0Mdivision by zero\0\0", "s0")
        else {
            panic!("error expected")
        };
        let want = b"D(on shard s0)\0";
        assert!(e.windows(want.len()).any(|w| w == want));
        assert!(matches!(
            f.on_frame(b'Z', b"I", "s0"),
            Fate::ShardDone(None)
        ));
        assert!(matches!(f.on_frame(b'D', b"", "s1"), Fate::Hide));
        assert!(matches!(f.on_frame(b'E', b"", "s1"), Fate::Hide));
        let Fate::ShardDone(Some(end)) = f.on_frame(b'Z', b"E", "s1") else {
            panic!("cycle end expected")
        };
        assert_eq!(end.tag, None, "no CommandComplete after an error");
        assert_eq!((end.failed, end.status), (true, b'E'));
    }
}
