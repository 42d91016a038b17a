//! Table-driven tests of the merge, and the helpers they share: frames built from compact
//! text (`"1|a|NULL"` is a row, `;` separates rows of one shard), plans from short specs
//! (`"0, 1 desc nulls last"`), and a driver that feeds shard rows only when the merger asks.

mod aggregate;
mod numeric;
mod rows;
mod stream;
mod values;

use bytes::{BufMut, BytesMut};

use super::engine::{Merger, Progress};
use super::error::MergeError;
use super::plan::{MergePlan, Output, SortKey};
use super::rows::{parse_data_row, write_data_row};

/// A RowDescription body: `(name, type oid, format)` per column.
pub(super) fn desc(cols: &[(&str, u32, i16)]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(cols.len() as i16);
    for (name, oid, format) in cols {
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_u32(16_384);
        b.put_i16(1);
        b.put_u32(*oid);
        b.put_i16(-1);
        b.put_i32(-1);
        b.put_i16(*format);
    }
    b.to_vec()
}

/// A text-format RowDescription: `(name, type oid)` per column.
pub(super) fn tdesc(cols: &[(&str, u32)]) -> Vec<u8> {
    let full: Vec<(&str, u32, i16)> = cols.iter().map(|&(n, o)| (n, o, 0)).collect();
    desc(&full)
}

/// A DataRow body from raw fields.
pub(super) fn row(fields: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    write_data_row(&mut out, fields.iter().map(|f| f.as_deref())).expect("small row");
    out[5..].to_vec()
}

/// A DataRow body from `"1|a|NULL"`.
pub(super) fn trow(text: &str) -> Vec<u8> {
    let fields: Vec<Option<Vec<u8>>> = text
        .split('|')
        .map(|f| (f != "NULL").then(|| f.as_bytes().to_vec()))
        .collect();
    row(&fields)
}

/// One shard's rows from `"1|a; 2|b"` (empty string: no rows).
pub(super) fn shard(text: &str) -> Vec<Vec<u8>> {
    text.split(';')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(trow)
        .collect()
}

/// DataRow frames -> each row's fields.
pub(super) fn fields(frames: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
    let mut rows = Vec::new();
    let mut rest = frames;
    let mut spans = Vec::new();
    while !rest.is_empty() {
        assert_eq!(rest[0], b'D', "only DataRow frames are emitted");
        let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let body = &rest[5..1 + len];
        parse_data_row(body, &mut spans).expect("emitted rows parse");
        rows.push(
            spans
                .iter()
                .map(|s| s.clone().map(|r| body[r].to_vec()))
                .collect(),
        );
        rest = &rest[1 + len..];
    }
    rows
}

/// DataRow frames -> rows as `"1|a|NULL"`, one string per row.
pub(super) fn render(frames: &[u8]) -> Vec<String> {
    fields(frames)
        .into_iter()
        .map(|r| {
            r.iter()
                .map(|f| match f {
                    None => "NULL".to_string(),
                    Some(b) => String::from_utf8_lossy(b).into_owned(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// `"0, 1 desc, 2 asc nulls first"` -> sort keys, with Postgres' NULLS defaults.
pub(super) fn order(spec: &str) -> Vec<SortKey> {
    spec.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            let words: Vec<&str> = k.split_whitespace().collect();
            let descending = words.contains(&"desc");
            let nulls_first = if words.contains(&"first") {
                true
            } else if words.contains(&"last") {
                false
            } else {
                descending
            };
            SortKey {
                column: words[0].parse().expect("a column index"),
                descending,
                nulls_first,
            }
        })
        .collect()
}

/// A non-grouping plan showing the first `visible` columns.
pub(super) fn plain(visible: usize) -> MergePlan {
    MergePlan {
        visible,
        outputs: (0..visible).map(Output::Column).collect(),
        ..MergePlan::default()
    }
}

/// What a driven merge produced.
#[derive(Debug)]
pub(super) struct Outcome {
    pub rows: Vec<String>,
    /// The same rows as raw fields (for binary formats).
    pub raw: Vec<Vec<Option<Vec<u8>>>>,
    pub tag: String,
    /// Rows pushed per shard (less than offered when LIMIT stopped the reading early).
    pub pushed: Vec<usize>,
    /// The most rows the merger ever held.
    pub peak_buffered: usize,
}

/// Drive a merge the way the session will: each round, feed one row to some of the shards
/// `wants()` names (`seed` varies which, to interleave arrivals), finish shards that have
/// no more rows, drain; stop at `Done`.
pub(super) fn drive(
    plan: MergePlan,
    desc_body: &[u8],
    shards: &[Vec<Vec<u8>>],
    max_rows: u64,
    seed: u64,
) -> Result<Outcome, MergeError> {
    let mut m = Merger::new(plan, desc_body, shards.len(), max_rows)?;
    let mut next = vec![0usize; shards.len()];
    let mut out = BytesMut::new();
    let mut rng = seed;
    let mut peak = 0;
    for _round in 0..10_000_000 {
        let wants: Vec<usize> = m.wants().collect();
        for &s in &wants {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            if seed != 0 && (rng >> 33) % 3 == 0 && wants.len() > 1 {
                continue; // this shard's row is "still on the wire"
            }
            match shards[s].get(next[s]) {
                Some(r) => {
                    m.push_row(s, r)?;
                    next[s] += 1;
                }
                None => m.finish_shard(s)?,
            }
            peak = peak.max(m.buffered_rows());
        }
        if m.drain(&mut out)? == Progress::Done {
            assert_eq!(m.wants().count(), 0, "a finished merge wants nothing");
            return Ok(Outcome {
                rows: render(&out),
                raw: fields(&out),
                tag: m.command_tag(),
                pushed: next,
                peak_buffered: peak,
            });
        }
        assert!(
            m.wants().count() > 0,
            "the merge needs input but names no shard to read"
        );
    }
    panic!("the merge did not finish");
}
