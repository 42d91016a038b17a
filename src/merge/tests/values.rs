//! Values: decode and compare every supported type in text and binary, encode back, and
//! the float, date and timestamp text forms Postgres prints.
//!
//! Beyond these tables, the ordering and printing were checked once against Postgres 15 over
//! 30,000 adjacent pairs of random values (numeric, float4/8, timestamptz in a zone with LMT
//! offsets, timestamp, BC dates, text in "C", bpchar, uuid, int8); the cases that check
//! caught are kept here.

use std::cmp::Ordering::{self, Equal, Greater, Less};

use crate::merge::value::{oid::*, ColumnType, Value, ValueError};

fn text(oid: u32) -> ColumnType {
    ColumnType { oid, format: 0 }
}

fn binary(oid: u32) -> ColumnType {
    ColumnType { oid, format: 1 }
}

/// `(type, a, b, a compared with b)`, both text literals as a shard prints them.
const ORDER: &[(u32, &str, &str, Ordering)] = &[
    (INT2, "10", "9", Greater),
    (INT2, "-32768", "32767", Less),
    (INT4, "-5", "3", Less),
    (INT4, "7", "7", Equal),
    (INT8, "-9223372036854775808", "9223372036854775807", Less),
    (INT8, "100", "-100", Greater),
    (FLOAT8, "NaN", "Infinity", Greater),
    (FLOAT8, "NaN", "NaN", Equal),
    (FLOAT8, "-Infinity", "-1e+308", Less),
    (FLOAT8, "-0", "0", Equal),
    (FLOAT8, "1e-05", "0.0001", Less),
    (FLOAT8, "-1.5", "-1.25", Less),
    (FLOAT4, "1.5", "-Infinity", Greater),
    (FLOAT4, "NaN", "3.4028235e+38", Greater),
    (FLOAT4, "0.1", "0.1", Equal),
    (NUMERIC, "1.50", "1.5", Equal),
    (NUMERIC, "1.5", "1.50000", Equal),
    (NUMERIC, "-1.5", "-1.49", Less),
    (NUMERIC, "10", "9.99999", Greater),
    (NUMERIC, "0", "-0.000", Equal),
    (NUMERIC, "0.0001", "0.00001", Greater),
    (NUMERIC, "-0.0001", "-0.00001", Less),
    (NUMERIC, "10000", "9999.9999", Greater),
    (
        NUMERIC,
        "123456789012345678901234567890.5",
        "123456789012345678901234567890.49",
        Greater,
    ),
    (NUMERIC, "NaN", "Infinity", Greater),
    (NUMERIC, "NaN", "NaN", Equal),
    (NUMERIC, "Infinity", "99999999999999999999", Greater),
    (NUMERIC, "-Infinity", "-99999999999999999999", Less),
    (NUMERIC, "-Infinity", "-Infinity", Equal),
    (TEXT, "a", "b", Less),
    (TEXT, "B", "a", Less),
    (TEXT, "ab", "a", Greater),
    (TEXT, "", "a", Less),
    (TEXT, "é", "z", Greater),
    (VARCHAR, "apple", "apples", Less),
    (NAME, "pg_class", "pg_attribute", Greater),
    (BPCHAR, "a  ", "a", Equal),
    (BPCHAR, "a ", "ab", Less),
    (BOOL, "f", "t", Less),
    (BOOL, "t", "t", Equal),
    (DATE, "1999-12-31", "2000-01-01", Less),
    (DATE, "0044-03-15 BC", "0001-01-01", Less),
    (DATE, "0001-01-01 BC", "0001-01-01", Less),
    (DATE, "2024-02-29", "2024-03-01", Less),
    (DATE, "infinity", "9999-12-31", Greater),
    (DATE, "-infinity", "4713-01-01 BC", Less),
    (DATE, "12345-01-01", "9999-12-31", Greater),
    (
        TIMESTAMP,
        "1999-12-31 23:59:59.999999",
        "2000-01-01 00:00:00",
        Less,
    ),
    (
        TIMESTAMP,
        "1970-01-01 00:00:00",
        "1969-12-31 23:59:59.5",
        Greater,
    ),
    (
        TIMESTAMP,
        "1900-06-01 12:00:00",
        "1900-06-01 12:00:00.000001",
        Less,
    ),
    (
        TIMESTAMP,
        "0010-01-01 00:00:00 BC",
        "0001-01-01 00:00:00",
        Less,
    ),
    (TIMESTAMP, "infinity", "294276-12-31 23:59:59", Greater),
    (
        TIMESTAMPTZ,
        "2024-01-15 10:30:00+01",
        "2024-01-15 09:45:00+00",
        Less,
    ),
    (
        TIMESTAMPTZ,
        "1850-01-01 00:00:00+05:53:28",
        "1849-12-31 18:06:32+00",
        Equal,
    ),
    (
        TIMESTAMPTZ,
        "1999-12-31 23:59:59.5+05:30",
        "1999-12-31 18:29:59.5+00",
        Equal,
    ),
    (
        TIMESTAMPTZ,
        "2000-01-01 00:00:00-08",
        "2000-01-01 07:00:00+00",
        Greater,
    ),
    (
        UUID,
        "00000000-0000-0000-0000-000000000001",
        "ffffffff-0000-0000-0000-000000000000",
        Less,
    ),
    (
        UUID,
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        Equal,
    ),
    // interval: not read by value, compared as raw text bytes
    (1186, "1 day", "2 days", Less),
];

#[test]
fn text_values_order_like_postgres() {
    for &(oid, a, b, want) in ORDER {
        let t = text(oid);
        let va = t
            .decode(a.as_bytes())
            .unwrap_or_else(|e| panic!("{oid} {a}: {e:?}"));
        let vb = t
            .decode(b.as_bytes())
            .unwrap_or_else(|e| panic!("{oid} {b}: {e:?}"));
        assert_eq!(va.compare(&vb), want, "type {oid}: {a} vs {b}");
        assert_eq!(vb.compare(&va), want.reverse(), "type {oid}: {b} vs {a}");
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        va.key_bytes(&mut ka);
        vb.key_bytes(&mut kb);
        assert_eq!(ka == kb, want == Equal, "group keys of {a} and {b} ({oid})");
    }
}

#[test]
fn binary_values_round_trip_and_order_the_same() {
    for &(oid, a, b, want) in ORDER {
        if !text(oid).is_ordered() {
            continue;
        }
        let to_binary = |s: &str| {
            let v = text(oid).decode(s.as_bytes()).expect("text decodes");
            let bytes = binary(oid).encode(&v).expect("binary encodes");
            let back = binary(oid).decode(&bytes).expect("binary decodes");
            assert_eq!(back.compare(&v), Equal, "{oid} {s} survives binary");
            back
        };
        assert_eq!(
            to_binary(a).compare(&to_binary(b)),
            want,
            "binary {oid}: {a} vs {b}"
        );
    }
}

/// Binary fields exactly as Postgres 15 sends them (`*_send` functions), and what they are.
#[test]
fn binary_fields_from_postgres() {
    let cases: &[(u32, &str, &str)] = &[
        (INT2, "fffe", "-2"),
        (INT4, "00000005", "5"),
        (INT8, "ffffffffffffffff", "-1"),
        (FLOAT8, "3ff8000000000000", "1.5"),
        (FLOAT4, "c0200000", "-2.5"),
        (NUMERIC, "000200000000000200011388", "1.50"),
        (NUMERIC, "0001ffff40000004000f", "-0.0015"),
        (NUMERIC, "0004000200000002000109291a8504b0", "123456789.12"),
        (NUMERIC, "00000000c0000000", "NaN"),
        (NUMERIC, "00000000d0000020", "Infinity"),
        (NUMERIC, "00000000f0000020", "-Infinity"),
        (NUMERIC, "0000000000000003", "0.000"),
        (TIMESTAMP, "fffffffffff0bdc0", "1999-12-31 23:59:59"),
        (DATE, "ffffffff", "1999-12-31"),
        (TIMESTAMPTZ, "0000000000000000", "2000-01-01 01:00:00+01"),
        (
            UUID,
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ),
        (BOOL, "01", "t"),
        (TEXT, "6869", "hi"),
    ];
    for &(oid, hex, txt) in cases {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let from_binary = binary(oid).decode(&bytes).expect("binary decodes");
        let from_text = text(oid).decode(txt.as_bytes()).expect("text decodes");
        assert_eq!(from_binary.compare(&from_text), Equal, "{oid} {txt}");
        // Text output keeps the scale: the binary 1.50 prints as 1.50.
        if oid == NUMERIC {
            assert_eq!(
                text(oid).encode(&from_binary).expect("encodes"),
                txt.as_bytes()
            );
            assert_eq!(
                binary(oid).encode(&from_text).expect("encodes")[..4],
                bytes[..4]
            );
        }
    }
}

#[test]
fn malformed_fields_are_errors() {
    let cases: &[(ColumnType, &[u8])] = &[
        (text(INT4), b"12x"),
        (text(INT8), b""),
        (text(FLOAT8), b"one"),
        (text(NUMERIC), b"1.2.3"),
        (text(NUMERIC), b"-"),
        (text(NUMERIC), b"1e999999999"),
        (text(BOOL), b"maybe"),
        (text(DATE), b"2024-02-30"),
        (text(DATE), b"3641-02-29"),
        (text(DATE), b"15/01/2024"),
        (text(TIMESTAMP), b"2024-01-15"),
        (text(TIMESTAMPTZ), b"2024-01-15 10:00:00"),
        (text(UUID), b"not-a-uuid"),
        (binary(INT4), &[0, 0, 1]),
        (binary(INT8), &[0; 9]),
        (binary(FLOAT8), &[0; 4]),
        (binary(NUMERIC), &[0, 1, 0, 0, 0, 0, 0, 0]),
        (binary(NUMERIC), &[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]),
        (binary(NUMERIC), &[0, 0, 0, 0, 0x12, 0x34, 0, 0]),
        (binary(NUMERIC), &[0xff, 0xff, 0, 0, 0, 0, 0, 0]),
        (binary(UUID), &[1, 2, 3]),
        (binary(DATE), &[]),
    ];
    for (ty, bytes) in cases {
        assert!(
            ty.decode(bytes).is_err(),
            "{ty:?} {bytes:?} should not decode"
        );
    }
}

/// Encoding merged results: `(type, value, text form)`.
#[test]
fn encode_text_forms() {
    let num = |s: &str| Value::Numeric(crate::merge::numeric::Numeric::parse(s).expect("numeric"));
    let cases: Vec<(u32, Value, &str)> = vec![
        (INT8, Value::Int(-42), "-42"),
        (INT4, Value::Int(7), "7"),
        (NUMERIC, Value::Int(12), "12"),
        (NUMERIC, num("1.50"), "1.50"),
        (INT8, num("9223372036854775807"), "9223372036854775807"),
        (FLOAT8, Value::Float(1e15), "1e+15"),
        (FLOAT8, Value::Float(123456789012345.0), "123456789012345"),
        (FLOAT8, Value::Float(1e-5), "1e-05"),
        (FLOAT8, Value::Float(0.0001), "0.0001"),
        (FLOAT8, Value::Float(-0.0), "-0"),
        (FLOAT8, Value::Float(1e100), "1e+100"),
        (FLOAT8, Value::Float(f64::NAN), "NaN"),
        (FLOAT8, Value::Float(f64::NEG_INFINITY), "-Infinity"),
        (FLOAT8, Value::Float(0.1 + 0.2), "0.30000000000000004"),
        // Postgres never prints digits that sit exactly between two floats...
        (
            FLOAT8,
            Value::Float(-4.734951633773834e16),
            "-4.7349516337738336e+16",
        ),
        // ... and breaks an exact tie in the last digit towards even.
        (
            FLOAT8,
            Value::Float(-1.9100400614066883e15),
            "-1.9100400614066882e+15",
        ),
        (FLOAT8, Value::Float(2.5), "2.5"),
        (FLOAT8, Value::Float(-1234.5678), "-1234.5678"),
        (FLOAT8, Value::Int(3), "3"),
        (FLOAT4, Value::Float(1234567.0), "1.234567e+06"),
        (FLOAT4, Value::Float(123456.0), "123456"),
        (FLOAT4, Value::Float(1.5e-5), "1.5e-05"),
        (FLOAT4, Value::Float(f64::from(0.1f32 + 0.2f32)), "0.3"),
        (BOOL, Value::Bool(true), "t"),
        (BOOL, Value::Bool(false), "f"),
        (DATE, Value::Date(-1), "1999-12-31"),
        (DATE, Value::Date(i32::MAX), "infinity"),
        (
            TIMESTAMP,
            Value::Timestamp(-1_000_000),
            "1999-12-31 23:59:59",
        ),
        (
            TIMESTAMP,
            Value::Timestamp(1_500_000),
            "2000-01-01 00:00:01.5",
        ),
        (TIMESTAMPTZ, Value::Timestamp(0), "2000-01-01 00:00:00+00"),
        (TEXT, Value::Text(b"x".to_vec()), "x"),
    ];
    for (oid, v, want) in cases {
        let got = text(oid)
            .encode(&v)
            .unwrap_or_else(|e| panic!("{oid} {v:?}: {e:?}"));
        assert_eq!(String::from_utf8_lossy(&got), want, "{oid} {v:?}");
    }
}

#[test]
fn dates_and_timestamps_print_as_read() {
    let cases: &[(u32, &str)] = &[
        (DATE, "2024-01-15"),
        (DATE, "0044-03-15 BC"),
        (DATE, "1600-02-29"),
        (DATE, "3641-02-29 BC"),
        (DATE, "-infinity"),
        (TIMESTAMP, "2024-01-15 10:30:00.123456"),
        (TIMESTAMP, "1899-12-31 23:59:59.9"),
        (TIMESTAMP, "0001-01-01 00:00:00 BC"),
        (TIMESTAMPTZ, "1999-12-31 18:29:59.5+00"),
        (TIMESTAMPTZ, "0044-03-15 10:00:00+00 BC"),
    ];
    for &(oid, s) in cases {
        let v = text(oid).decode(s.as_bytes()).expect("decodes");
        assert_eq!(
            text(oid).encode(&v).expect("encodes"),
            s.as_bytes(),
            "{oid} {s}"
        );
    }
}

#[test]
fn out_of_range_results_use_postgres_messages() {
    let cases: &[(u32, i128, &str)] = &[
        (INT8, i128::from(i64::MAX) + 1, "bigint out of range"),
        (INT4, 1 << 31, "integer out of range"),
        (INT2, -32769, "smallint out of range"),
    ];
    for &(oid, v, msg) in cases {
        assert_eq!(
            text(oid).encode_integer(v),
            Err(ValueError::OutOfRange(msg.into()))
        );
    }
    assert_eq!(
        text(FLOAT4).encode(&Value::Float(1e300)),
        Err(ValueError::OutOfRange(
            "value out of range: overflow".into()
        ))
    );
}

#[test]
fn cross_type_comparisons_cast_like_postgres() {
    let num = |s: &str| Value::Numeric(crate::merge::numeric::Numeric::parse(s).expect("numeric"));
    assert_eq!(Value::Int(2).compare(&num("2.000")), Equal);
    assert_eq!(Value::Int(2).compare(&num("2.5")), Less);
    assert_eq!(num("1e20").compare(&Value::Int(i64::MAX)), Greater);
    assert_eq!(Value::Float(2.5).compare(&num("2.5")), Equal);
    assert_eq!(Value::Float(f64::NAN).compare(&num("NaN")), Equal);
    assert_eq!(Value::Int(3).compare(&Value::Float(2.9)), Greater);
    assert_eq!(
        Value::Date(1).compare(&Value::Timestamp(86_400_000_000)),
        Equal
    );
    assert_eq!(
        Value::Date(1).compare(&Value::Timestamp(86_400_000_001)),
        Less
    );
}

#[test]
fn literals_parse_in_the_column_type() {
    let cases: &[(u32, &str, Value)] = &[
        (INT8, "5", Value::Int(5)),
        (INT8, " 5 ", Value::Int(5)),
        (BOOL, "true", Value::Bool(true)),
        (BOOL, "off", Value::Bool(false)),
        (FLOAT8, "1.5", Value::Float(1.5)),
        (DATE, "2000-01-02", Value::Date(1)),
    ];
    for (oid, lit, want) in cases {
        let got = text(*oid).parse_literal(lit).expect("parses");
        assert_eq!(got.compare(want), Equal, "{oid} {lit}");
    }
    // A fraction against an integer column is read as numeric, as Postgres compares.
    assert!(matches!(
        text(INT8).parse_literal("2.5"),
        Ok(Value::Numeric(_))
    ));
    assert!(text(INT8).parse_literal("many").is_err());
}
