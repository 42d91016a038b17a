//! RowDescription (`T`) and DataRow (`D`) bodies: parsed with every length bounds-checked (a
//! malformed frame is a `FrameError`, never a panic) and built back into whole frames.
//!
//! Bodies are the bytes after the tag and the length word. Parsing a DataRow yields spans
//! into the body rather than copies, so a row can be kept as one buffer. This module knows
//! nothing about types or merging.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

/// A frame that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FrameError(pub String);

/// One RowDescription field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name, without the terminating NUL.
    pub name: Vec<u8>,
    pub table_oid: u32,
    pub column_attr: i16,
    pub type_oid: u32,
    pub type_len: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.b.len())
            .ok_or_else(|| {
                FrameError(format!(
                    "{} body is truncated: {} bytes needed at offset {}, {} present",
                    self.what,
                    n,
                    self.pos,
                    self.b.len()
                ))
            })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, FrameError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn cstring(&mut self) -> Result<&'a [u8], FrameError> {
        let rest = &self.b[self.pos..];
        let nul = rest.iter().position(|&c| c == 0).ok_or_else(|| {
            FrameError(format!(
                "{} body: a name lacks its NUL terminator",
                self.what
            ))
        })?;
        self.pos += nul + 1;
        Ok(&rest[..nul])
    }

    fn count(&mut self) -> Result<usize, FrameError> {
        let n = self.i16()?;
        usize::try_from(n)
            .map_err(|_| FrameError(format!("{} body: negative field count {n}", self.what)))
    }

    fn end(&self) -> Result<(), FrameError> {
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(FrameError(format!(
                "{} body has {} bytes after its last field",
                self.what,
                self.b.len() - self.pos
            )))
        }
    }
}

/// Parse a RowDescription body.
pub fn parse_row_description(body: &[u8]) -> Result<Vec<FieldDescription>, FrameError> {
    let mut r = Reader {
        b: body,
        pos: 0,
        what: "RowDescription",
    };
    let n = r.count()?;
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.cstring()?.to_vec();
        fields.push(FieldDescription {
            name,
            table_oid: r.i32()? as u32,
            column_attr: r.i16()?,
            type_oid: r.i32()? as u32,
            type_len: r.i16()?,
            type_modifier: r.i32()?,
            format: r.i16()?,
        });
    }
    r.end()?;
    Ok(fields)
}

/// Parse a DataRow body into `spans` (cleared first): one entry per field, `None` for NULL,
/// else the field's byte range within `body`.
pub fn parse_data_row(
    body: &[u8],
    spans: &mut Vec<Option<Range<usize>>>,
) -> Result<(), FrameError> {
    spans.clear();
    let mut r = Reader {
        b: body,
        pos: 0,
        what: "DataRow",
    };
    let n = r.count()?;
    for _ in 0..n {
        let len = r.i32()?;
        if len == -1 {
            spans.push(None);
            continue;
        }
        let len = usize::try_from(len)
            .map_err(|_| FrameError(format!("DataRow body: invalid field length {len}")))?;
        let start = r.pos;
        r.take(len)?;
        spans.push(Some(start..start + len));
    }
    r.end()
}

/// Write a whole frame: `tag`, a length word, then whatever `body` writes.
fn write_frame(
    out: &mut BytesMut,
    tag: u8,
    body: impl FnOnce(&mut BytesMut),
) -> Result<(), FrameError> {
    let start = out.len();
    out.put_u8(tag);
    out.put_i32(0);
    body(out);
    let len = i32::try_from(out.len() - start - 1).map_err(|_| {
        out.truncate(start);
        FrameError("a merged row is too large for one protocol message".into())
    })?;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Append a DataRow frame with the given fields (`None` is NULL).
pub fn write_data_row<'a>(
    out: &mut BytesMut,
    fields: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
) -> Result<(), FrameError> {
    let count = i16::try_from(fields.len())
        .map_err(|_| FrameError("too many fields for one DataRow".into()))?;
    write_frame(out, b'D', |out| {
        out.put_i16(count);
        for field in fields {
            match field {
                None => out.put_i32(-1),
                Some(f) => {
                    // A field longer than i32::MAX makes the frame too long, which write_frame
                    // reports; the length word written here is then discarded.
                    out.put_i32(i32::try_from(f.len()).unwrap_or(i32::MAX));
                    out.put_slice(f);
                }
            }
        }
    })
}

/// Append a RowDescription frame for `fields`.
pub fn write_row_description(
    out: &mut BytesMut,
    fields: &[FieldDescription],
) -> Result<(), FrameError> {
    let count = i16::try_from(fields.len())
        .map_err(|_| FrameError("too many fields for one RowDescription".into()))?;
    write_frame(out, b'T', |out| {
        out.put_i16(count);
        for f in fields {
            out.put_slice(&f.name);
            out.put_u8(0);
            out.put_u32(f.table_oid);
            out.put_i16(f.column_attr);
            out.put_u32(f.type_oid);
            out.put_i16(f.type_len);
            out.put_i32(f.type_modifier);
            out.put_i16(f.format);
        }
    })
}
