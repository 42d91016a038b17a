//! Splitting `COPY ... FROM STDIN` data by shard.
//!
//! The client's CopyData chunks are cut into rows (text format: a raw newline always ends a
//! row; CSV: a newline outside quotes, with the quote state carried across chunks), the key
//! field of each row is read (text escapes decoded; CSV quotes removed) and the row goes to the
//! shard that owns the key, unchanged. A reference table gets every row on every shard. A row
//! whose key is NULL or unreadable fails the COPY (the session sends CopyFail to every shard,
//! so nothing of it commits). The header line (CSV HEADER) goes to every shard.

use super::Session;
use crate::config::ShardId;
use crate::protocol::Frame;
use crate::router::analyze::CopySpec;
use crate::router::keys::parse_text;
use crate::router::KeyValue;
use crate::router::{Params, Plan};

pub(super) struct CopySplit {
    pub spec: CopySpec,
    /// Every shard of the COPY (all of them receive CopyDone or CopyFail).
    pub shards: Vec<ShardId>,
    /// The start of a row whose end has not arrived yet.
    partial: Vec<u8>,
    /// CSV: whether `partial` ends inside a quoted field.
    in_quotes: bool,
    header_pending: bool,
}

impl CopySplit {
    pub fn new(spec: CopySpec, shards: Vec<ShardId>) -> Self {
        let header_pending = spec.csv && spec.header;
        CopySplit {
            spec,
            shards,
            partial: Vec::new(),
            in_quotes: false,
            header_pending,
        }
    }

    /// Feed a CopyData chunk; returns the complete rows per shard. `place` maps a key to its
    /// shard. Errors are messages for CopyFail.
    pub fn feed(
        &mut self,
        data: &[u8],
        place: &dyn Fn(&KeyValue) -> Result<ShardId, String>,
    ) -> Result<Vec<(ShardId, Vec<u8>)>, String> {
        let mut out: Vec<(ShardId, Vec<u8>)> = Vec::new();
        let mut push = |shard: ShardId, row: &[u8]| match out.iter_mut().find(|(s, _)| *s == shard)
        {
            Some((_, buf)) => buf.extend_from_slice(row),
            None => out.push((shard, row.to_vec())),
        };
        for &byte in data {
            self.partial.push(byte);
            if self.spec.csv && byte == self.spec.quote {
                self.in_quotes = !self.in_quotes;
            }
            if byte != b'\n' || (self.spec.csv && self.in_quotes) {
                continue;
            }
            let row = std::mem::take(&mut self.partial);
            for (shard, bytes) in self.route_row(&row, place)? {
                push(shard, &bytes);
            }
        }
        Ok(out)
    }

    /// The end of the data: a last row without its newline.
    pub fn finish(
        &mut self,
        place: &dyn Fn(&KeyValue) -> Result<ShardId, String>,
    ) -> Result<Vec<(ShardId, Vec<u8>)>, String> {
        if self.partial.is_empty() {
            return Ok(Vec::new());
        }
        if self.in_quotes {
            return Err("unterminated CSV quoted field".into());
        }
        let row = std::mem::take(&mut self.partial);
        self.route_row(&row, place)
    }

    fn route_row(
        &mut self,
        row: &[u8],
        place: &dyn Fn(&KeyValue) -> Result<ShardId, String>,
    ) -> Result<Vec<(ShardId, Vec<u8>)>, String> {
        let everywhere = self.header_pending
            || self.spec.scheme.is_none()
            || row.strip_suffix(b"\n").unwrap_or(row) == b"\\.";
        self.header_pending = false;
        if everywhere {
            return Ok(self.shards.iter().map(|&s| (s, row.to_vec())).collect());
        }
        let line = row.strip_suffix(b"\n").unwrap_or(row);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let field = if self.spec.csv {
            csv_field(line, self.spec.key_pos, &self.spec)
        } else {
            text_field(line, self.spec.key_pos, self.spec.delimiter)
        }
        .ok_or_else(|| {
            format!(
                "a row of the COPY into \"{}\" has no value for its shard key (column {})",
                self.spec.table,
                self.spec.key_pos + 1
            )
        })?;
        let text = String::from_utf8(field)
            .map_err(|_| "a shard key in COPY data is not valid UTF-8".to_string())?;
        let key = parse_text(&text, self.spec.key_type).ok_or_else(|| {
            format!(
                "\"{text}\" is not a valid shard key of \"{}\"",
                self.spec.table
            )
        })?;
        Ok(vec![(place(&key)?, row.to_vec())])
    }
}

/// Field `pos` of a text-format row, escapes decoded; None for NULL (`\N`) or a missing field.
fn text_field(line: &[u8], pos: usize, delim: u8) -> Option<Vec<u8>> {
    let raw = line.split(|&b| b == delim).nth(pos)?;
    if raw == b"\\N" {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next()? {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            // Octal and hex escapes are rare in keys: refuse rather than guess.
            c if c.is_ascii_digit() || *c == b'x' => return None,
            &c => out.push(c),
        }
    }
    Some(out)
}

/// Field `pos` of a CSV row, quotes removed; None for an unquoted empty field (NULL).
fn csv_field(line: &[u8], pos: usize, spec: &CopySpec) -> Option<Vec<u8>> {
    let (mut field, mut quoted, mut in_q, mut n) = (Vec::new(), false, false, 0);
    let mut i = 0;
    while i <= line.len() {
        let b = line.get(i).copied();
        match b {
            Some(c)
                if in_q
                    && c == spec.escape
                    && line.get(i + 1) == Some(&spec.quote)
                    && spec.escape != spec.quote =>
            {
                field.push(spec.quote);
                i += 1;
            }
            Some(c) if in_q && c == spec.quote => {
                if spec.escape == spec.quote && line.get(i + 1) == Some(&spec.quote) {
                    field.push(spec.quote);
                    i += 1;
                } else {
                    in_q = false;
                }
            }
            Some(c) if !in_q && c == spec.quote => {
                in_q = true;
                quoted = true;
            }
            Some(c) if !in_q && c == spec.delimiter => {
                if n == pos {
                    return (quoted || !field.is_empty()).then_some(field);
                }
                n += 1;
                field.clear();
                quoted = false;
            }
            None => {
                return (n == pos && (quoted || !field.is_empty())).then_some(field);
            }
            Some(c) => field.push(c),
        }
        i += 1;
    }
    None
}

impl Session {
    /// COPY data for a COPY split by shard: rows to their shards; CopyDone/CopyFail to all.
    pub(super) fn split_copy(&mut self, f: &Frame) {
        let Some(mut split) = self.copy_in.take() else {
            return;
        };
        let router = self.snap.router.clone();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyType;

    fn spec(csv: bool, header: bool) -> CopySpec {
        CopySpec {
            table: "t".into(),
            scheme: Some("s".into()),
            key_type: KeyType::Bigint,
            key_pos: 1,
            csv,
            delimiter: if csv { b',' } else { b'\t' },
            quote: b'"',
            escape: b'"',
            header,
        }
    }

    fn by_parity(k: &KeyValue) -> Result<ShardId, String> {
        match k {
            KeyValue::Int(i) => Ok((*i % 2) as usize),
            _ => Err("int keys only".into()),
        }
    }

    #[test]
    fn text_rows_split_by_key_across_chunks() {
        let mut s = CopySplit::new(spec(false, false), vec![0, 1]);
        let mut got = s.feed(b"a\t1\tx\nb\t2\ty\nc\t", &by_parity).unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![(0, b"b\t2\ty\n".to_vec()), (1, b"a\t1\tx\n".to_vec())]
        );
        assert_eq!(s.feed(b"3\tz", &by_parity).unwrap(), vec![]);
        assert_eq!(
            s.finish(&by_parity).unwrap(),
            vec![(1, b"c\t3\tz".to_vec())]
        );
        assert!(s.feed(b"d\t\\N\tq\n", &by_parity).is_err());
    }

    #[test]
    fn csv_quotes_and_header() {
        let mut s = CopySplit::new(spec(true, true), vec![0, 1]);
        let mut got = s
            .feed(b"name,id\n\"a,\"\"b\nc\",4\nplain,\"5\"\n", &by_parity)
            .unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                (0, b"name,id\n\"a,\"\"b\nc\",4\n".to_vec()),
                (1, b"name,id\nplain,\"5\"\n".to_vec())
            ]
        );
        assert!(
            s.feed(b"x,\n", &by_parity).is_err(),
            "empty unquoted key is NULL"
        );
    }
}
