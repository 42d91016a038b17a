//! One column value, decoded from a DataRow field by the column's type OID and format code,
//! compared the way Postgres orders it, and encoded back into a field.
//!
//! Types read by value: int2/int4/int8, float4/float8, numeric (exact, see `numeric.rs`),
//! text/varchar/bpchar/name (bytewise, i.e. collation "C"; bpchar ignores trailing blanks as
//! Postgres does), bool, date, timestamp, timestamptz (ISO text, see `datetime.rs`) and uuid,
//! in text and binary format. Every other type is kept as its raw field bytes and compares
//! bytewise: equal bytes mean equal values for nearly every type (so grouping and DISTINCT
//! work), but byte order is not the type's order, so the merge refuses ORDER BY, min/max and
//! ordering comparisons on them (`ColumnType::is_ordered` says which types are read by value).
//!
//! NULL is not a `Value`: callers hold `Option<Value>` and place NULLs per NULLS FIRST/LAST.
//! Encoding is needed only for values the merge computes (counts, sums, averages, bool
//! aggregates); min/max and group keys are forwarded as the shard sent them.

use std::cmp::Ordering;

use super::datetime;
use super::float;
use super::numeric::{Numeric, NumericError};

/// Type OIDs the merge reads by value.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
}

/// A decoded, non-NULL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// int2, int4, int8.
    Int(i64),
    /// float8, and float4 widened exactly.
    Float(f64),
    Numeric(Numeric),
    /// text, varchar, bpchar (trailing blanks removed), name.
    Text(Vec<u8>),
    Bool(bool),
    /// Days since 2000-01-01; `i32::MIN`/`i32::MAX` are -infinity/infinity.
    Date(i32),
    /// Microseconds since 2000-01-01 (UTC for timestamptz); extremes are ±infinity.
    Timestamp(i64),
    Uuid([u8; 16]),
    /// Any other type: the field's bytes, compared bytewise.
    Raw(Vec<u8>),
}

/// Why a field could not be decoded or a value encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// The bytes are not a valid value of the type.
    Malformed(String),
    /// The value does not fit the target type (SQLSTATE 22003); the message is Postgres'.
    OutOfRange(String),
    /// The value cannot be written in the target type at all.
    Mismatch(String),
}

/// A column's type and wire format, from its RowDescription entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnType {
    pub oid: u32,
    /// 0 text, 1 binary.
    pub format: i16,
}

fn float_cmp(a: f64, b: f64) -> Ordering {
    // Postgres: NaN equals NaN and sorts above every number; -0 equals 0.
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn fixed<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], ValueError> {
    b.try_into().map_err(|_| {
        ValueError::Malformed(format!("binary {what} must be {N} bytes, got {}", b.len()))
    })
}

fn numeric_err(e: NumericError) -> ValueError {
    match e {
        NumericError::Malformed(m) => ValueError::Malformed(m),
        NumericError::Overflow => ValueError::OutOfRange("value overflows numeric format".into()),
    }
}

impl ColumnType {
    pub fn binary(&self) -> bool {
        self.format == 1
    }

    /// Whether values of this type are read by value (and so sort, group and min/max like
    /// Postgres); other types fall back to bytewise comparison of the field.
    pub fn is_ordered(&self) -> bool {
        use oid::*;
        matches!(
            self.oid,
            INT2 | INT4
                | INT8
                | FLOAT4
                | FLOAT8
                | NUMERIC
                | TEXT
                | VARCHAR
                | BPCHAR
                | NAME
                | BOOL
                | DATE
                | TIMESTAMP
                | TIMESTAMPTZ
                | UUID
        )
    }

    /// Whether this is a number type a sum or average can be computed in.
    pub fn is_number(&self) -> bool {
        use oid::*;
        matches!(self.oid, INT2 | INT4 | INT8 | FLOAT4 | FLOAT8 | NUMERIC)
    }

    /// Decode one non-NULL field.
    pub fn decode(&self, field: &[u8]) -> Result<Value, ValueError> {
        if self.binary() {
            self.decode_binary(field)
        } else {
            self.decode_text(field)
        }
    }

    fn decode_binary(&self, b: &[u8]) -> Result<Value, ValueError> {
        use oid::*;
        Ok(match self.oid {
            INT2 => Value::Int(i16::from_be_bytes(fixed(b, "int2")?).into()),
            INT4 => Value::Int(i32::from_be_bytes(fixed(b, "int4")?).into()),
            INT8 => Value::Int(i64::from_be_bytes(fixed(b, "int8")?)),
            FLOAT4 => Value::Float(f32::from_be_bytes(fixed(b, "float4")?).into()),
            FLOAT8 => Value::Float(f64::from_be_bytes(fixed(b, "float8")?)),
            NUMERIC => Value::Numeric(Numeric::from_binary(b).map_err(numeric_err)?),
            BOOL => Value::Bool(u8::from_be_bytes(fixed(b, "bool")?) != 0),
            DATE => Value::Date(i32::from_be_bytes(fixed(b, "date")?)),
            TIMESTAMP | TIMESTAMPTZ => Value::Timestamp(i64::from_be_bytes(fixed(b, "timestamp")?)),
            UUID => Value::Uuid(fixed(b, "uuid")?),
            _ => self.decode_text(b)?,
        })
    }

    fn decode_text(&self, b: &[u8]) -> Result<Value, ValueError> {
        use oid::*;
        let bad = || {
            ValueError::Malformed(format!(
                "invalid text for type {}: {:?}",
                self.oid,
                String::from_utf8_lossy(&b[..b.len().min(64)])
            ))
        };
        let text = || std::str::from_utf8(b).map_err(|_| bad());
        Ok(match self.oid {
            INT2 | INT4 | INT8 => Value::Int(text()?.trim().parse().map_err(|_| bad())?),
            FLOAT4 => Value::Float(float::parse(text()?, true).ok_or_else(bad)?),
            FLOAT8 => Value::Float(float::parse(text()?, false).ok_or_else(bad)?),
            NUMERIC => Value::Numeric(Numeric::parse(text()?).map_err(numeric_err)?),
            TEXT | VARCHAR | NAME => Value::Text(b.to_vec()),
            BPCHAR => {
                let end = b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
                Value::Text(b[..end].to_vec())
            }
            BOOL => Value::Bool(match text()?.trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "yes" | "y" | "on" | "1" => true,
                "f" | "false" | "no" | "n" | "off" | "0" => false,
                _ => return Err(bad()),
            }),
            DATE => Value::Date(datetime::parse_date(b).ok_or_else(bad)?),
            TIMESTAMP => Value::Timestamp(datetime::parse_timestamp(b, false).ok_or_else(bad)?),
            TIMESTAMPTZ => Value::Timestamp(datetime::parse_timestamp(b, true).ok_or_else(bad)?),
            UUID => Value::Uuid(
                std::str::from_utf8(b)
                    .ok()
                    .and_then(crate::pgtext::parse_uuid)
                    .ok_or_else(bad)?,
            ),
            _ => Value::Raw(b.to_vec()),
        })
    }

    /// A literal of Postgres text (as in `HAVING count(*) > 5`) in this column's type. A number
    /// that does not fit an integer column (`sum(x) > 2.5`) is read as numeric, since Postgres
    /// would compare the two as numeric.
    pub fn parse_literal(&self, literal: &str) -> Result<Value, ValueError> {
        let text_type = ColumnType {
            oid: self.oid,
            format: 0,
        };
        match text_type.decode_text(literal.trim().as_bytes()) {
            Ok(Value::Raw(_)) if self.binary() => Err(ValueError::Mismatch(format!(
                "a literal cannot be compared with binary values of type {}",
                self.oid
            ))),
            Err(_) if matches!(self.oid, oid::INT2 | oid::INT4 | oid::INT8) => {
                Numeric::parse(literal)
                    .map(Value::Numeric)
                    .map_err(numeric_err)
            }
            other => other,
        }
    }

    /// Encode an integer result (count, integer sum) in this column's type.
    pub fn encode_integer(&self, v: i128) -> Result<Vec<u8>, ValueError> {
        use oid::*;
        let range = |name: &str| ValueError::OutOfRange(format!("{name} out of range"));
        let bin = self.binary();
        let text = |v: i128| v.to_string().into_bytes();
        Ok(match self.oid {
            INT2 => {
                let v = i16::try_from(v).map_err(|_| range("smallint"))?;
                if bin {
                    v.to_be_bytes().to_vec()
                } else {
                    text(v.into())
                }
            }
            INT4 => {
                let v = i32::try_from(v).map_err(|_| range("integer"))?;
                if bin {
                    v.to_be_bytes().to_vec()
                } else {
                    text(v.into())
                }
            }
            INT8 => {
                let v = i64::try_from(v).map_err(|_| range("bigint"))?;
                if bin {
                    v.to_be_bytes().to_vec()
                } else {
                    text(v.into())
                }
            }
            _ => return self.encode(&Value::Numeric(Numeric::from_i128(v))),
        })
    }

    fn encode_float(&self, v: f64) -> Result<Vec<u8>, ValueError> {
        if self.oid == oid::FLOAT4 {
            let narrow = v as f32;
            if narrow.is_infinite() && v.is_finite() {
                return Err(ValueError::OutOfRange(
                    "value out of range: overflow".into(),
                ));
            }
            return Ok(if self.binary() {
                narrow.to_be_bytes().to_vec()
            } else {
                float::text(narrow.into(), true).into_bytes()
            });
        }
        Ok(if self.binary() {
            v.to_be_bytes().to_vec()
        } else {
            float::text(v, false).into_bytes()
        })
    }

    /// Encode a value in this column's type and format.
    pub fn encode(&self, v: &Value) -> Result<Vec<u8>, ValueError> {
        use oid::*;
        let bin = self.binary();
        let mismatch = || {
            ValueError::Mismatch(format!(
                "cannot write {} as a value of type {}",
                v.kind_name(),
                self.oid
            ))
        };
        Ok(match (self.oid, v) {
            (INT2 | INT4 | INT8 | NUMERIC | FLOAT4 | FLOAT8, Value::Int(i)) => {
                if matches!(self.oid, FLOAT4 | FLOAT8) {
                    self.encode_float(*i as f64)?
                } else {
                    self.encode_integer((*i).into())?
                }
            }
            (INT2 | INT4 | INT8, Value::Numeric(n)) => {
                self.encode_integer(n.to_i128().ok_or_else(mismatch)?)?
            }
            (FLOAT4 | FLOAT8, Value::Float(f)) => self.encode_float(*f)?,
            (FLOAT4 | FLOAT8, Value::Numeric(n)) => self.encode_float(n.to_f64())?,
            (NUMERIC, Value::Numeric(n)) if bin => n.to_binary().map_err(numeric_err)?,
            (NUMERIC, Value::Numeric(n)) => n.to_text().into_bytes(),
            (TEXT | VARCHAR | BPCHAR | NAME, Value::Text(t)) => t.clone(),
            (BOOL, Value::Bool(b)) if bin => vec![u8::from(*b)],
            (BOOL, Value::Bool(b)) => if *b { b"t" } else { b"f" }.to_vec(),
            (DATE, Value::Date(d)) if bin => d.to_be_bytes().to_vec(),
            (DATE, Value::Date(d)) => datetime::format_date(*d).into_bytes(),
            (TIMESTAMP | TIMESTAMPTZ, Value::Timestamp(t)) if bin => t.to_be_bytes().to_vec(),
            (TIMESTAMP | TIMESTAMPTZ, Value::Timestamp(t)) => {
                datetime::format_timestamp(*t, self.oid == TIMESTAMPTZ).into_bytes()
            }
            (UUID, Value::Uuid(u)) if bin => u.to_vec(),
            (UUID, Value::Uuid(u)) => crate::pgtext::format_uuid(u).into_bytes(),
            (_, Value::Raw(r)) if !self.is_ordered() => r.clone(),
            _ => return Err(mismatch()),
        })
    }
}

impl Value {
    fn kind_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Numeric(_) => "a numeric",
            Value::Text(_) => "text",
            Value::Bool(_) => "a bool",
            Value::Date(_) => "a date",
            Value::Timestamp(_) => "a timestamp",
            Value::Uuid(_) => "a uuid",
            Value::Raw(_) => "raw bytes",
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Int(_) | Value::Float(_) | Value::Numeric(_) => 0,
            Value::Text(_) | Value::Raw(_) => 1,
            Value::Bool(_) => 2,
            Value::Date(_) | Value::Timestamp(_) => 3,
            Value::Uuid(_) => 4,
        }
    }

    /// Postgres' ordering. Values of one column always share a variant; across number
    /// variants (a HAVING comparing a bigint count with a numeric sum) the comparison is
    /// made as Postgres would cast: integer with numeric as numeric, anything with float as
    /// float. A date compares with a timestamp as midnight of that day.
    pub fn compare(&self, other: &Value) -> Ordering {
        use Value::*;
        let date_micros = |d: i32| match d {
            i32::MAX => i64::MAX,
            i32::MIN => i64::MIN,
            d => i64::from(d) * 86_400_000_000,
        };
        match (self, other) {
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => float_cmp(*a, *b),
            (Numeric(a), Numeric(b)) => a.compare(b),
            (Int(a), Numeric(b)) => super::numeric::Numeric::from_i128((*a).into()).compare(b),
            (Numeric(a), Int(b)) => a.compare(&super::numeric::Numeric::from_i128((*b).into())),
            (Int(a), Float(b)) => float_cmp(*a as f64, *b),
            (Float(a), Int(b)) => float_cmp(*a, *b as f64),
            (Numeric(a), Float(b)) => float_cmp(a.to_f64(), *b),
            (Float(a), Numeric(b)) => float_cmp(*a, b.to_f64()),
            (Text(a) | Raw(a), Text(b) | Raw(b)) => a.cmp(b),
            (Bool(a), Bool(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Timestamp(a), Timestamp(b)) => a.cmp(b),
            (Date(a), Timestamp(b)) => date_micros(*a).cmp(b),
            (Timestamp(a), Date(b)) => a.cmp(&date_micros(*b)),
            (Uuid(a), Uuid(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    /// Append bytes that are equal exactly when two values of one column are equal
    /// (`1.50` and `1.5` alike, NaN like NaN, -0 like 0): the key of a group or distinct row.
    pub fn key_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Value::Float(f) => {
                out.push(2);
                let canonical = if f.is_nan() {
                    f64::NAN.to_bits()
                } else if *f == 0.0 {
                    0
                } else {
                    f.to_bits()
                };
                out.extend_from_slice(&canonical.to_be_bytes());
            }
            Value::Numeric(n) => {
                out.push(3);
                n.key_bytes(out);
            }
            Value::Text(t) | Value::Raw(t) => {
                out.push(4);
                out.extend_from_slice(&(t.len() as u64).to_be_bytes());
                out.extend_from_slice(t);
            }
            Value::Bool(b) => out.extend_from_slice(&[5, u8::from(*b)]),
            Value::Date(d) => {
                out.push(6);
                out.extend_from_slice(&d.to_be_bytes());
            }
            Value::Timestamp(t) => {
                out.push(7);
                out.extend_from_slice(&t.to_be_bytes());
            }
            Value::Uuid(u) => {
                out.push(8);
                out.extend_from_slice(u);
            }
        }
    }
}
