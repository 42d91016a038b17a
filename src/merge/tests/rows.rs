//! Frames: RowDescription and DataRow bodies parse with every length checked; malformed or
//! random bytes are errors, never panics.

use bytes::BytesMut;

use super::{desc, trow};
use crate::merge::rows::{
    parse_data_row, parse_row_description, write_data_row, write_row_description,
};

#[test]
fn row_description_round_trips() {
    let body = desc(&[("id", 20, 1), ("name", 25, 0), ("", 1700, 0)]);
    let fields = parse_row_description(&body).expect("parses");
    assert_eq!(fields.len(), 3);
    assert_eq!(fields[0].name, b"id");
    assert_eq!((fields[0].type_oid, fields[0].format), (20, 1));
    assert_eq!((fields[1].table_oid, fields[1].column_attr), (16_384, 1));
    assert_eq!((fields[2].type_len, fields[2].type_modifier), (-1, -1));
    let mut out = BytesMut::new();
    write_row_description(&mut out, &fields).expect("writes");
    assert_eq!(out[0], b'T');
    assert_eq!(&out[5..], &body[..]);
    assert_eq!(
        i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize,
        out.len() - 1
    );
}

#[test]
fn data_rows_round_trip_with_nulls_and_empty_fields() {
    let body = trow("1||NULL|abc");
    let mut spans = Vec::new();
    parse_data_row(&body, &mut spans).expect("parses");
    let fields: Vec<Option<&[u8]>> = spans.iter().map(|s| s.clone().map(|r| &body[r])).collect();
    assert_eq!(
        fields,
        vec![Some(&b"1"[..]), Some(&b""[..]), None, Some(&b"abc"[..])]
    );
    let mut out = BytesMut::new();
    write_data_row(&mut out, fields.into_iter()).expect("writes");
    assert_eq!(&out[5..], &body[..]);
}

#[test]
fn malformed_frames_are_errors() {
    let good_desc = desc(&[("a", 23, 0)]);
    let desc_cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff, 0xff],
        vec![0, 1, b'a'],
        good_desc[..good_desc.len() - 1].to_vec(),
        [good_desc.clone(), vec![0]].concat(),
    ];
    for body in desc_cases {
        assert!(parse_row_description(&body).is_err(), "{body:?}");
    }
    let row_cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0, 1],
        vec![0, 1, 0, 0, 0, 5, b'a'],
        vec![0, 1, 0xff, 0xff, 0xff, 0xfe],
        vec![0xff, 0xff],
        vec![0, 0, 9],
    ];
    let mut spans = Vec::new();
    for body in row_cases {
        assert!(parse_data_row(&body, &mut spans).is_err(), "{body:?}");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut spans = Vec::new();
    for _ in 0..20_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let len = (rng % 24) as usize;
        let body: Vec<u8> = (0..len).map(|i| (rng >> (i % 8 * 8)) as u8 % 4).collect();
        let _ = parse_data_row(&body, &mut spans);
        let _ = parse_row_description(&body);
    }
}
