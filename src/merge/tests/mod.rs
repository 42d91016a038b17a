//! Table-driven tests of the merge, and the helpers they share.

mod numeric;
mod rows;
mod values;

use bytes::{BufMut, BytesMut};

use super::rows::write_data_row;

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
