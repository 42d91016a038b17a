//! Shard-key values in SQL: literals in the statement text and parameters bound to it.
//!
//! Owns turning a literal expression (`42`, `-7`, `'abc'`, `'…'::uuid`, `$1`) into a
//! [`KeySource`], and decoding bound parameter bytes (text or binary format, scalars and
//! one-dimensional arrays for `= ANY($n)`) into [`KeyValue`]s of the table's key type. A value
//! that cannot be read as the key type yields no key (the statement then fans out, and the
//! server reports the type error), never a guess.

use sqlparser::ast::{Expr, UnaryOperator, Value};

use super::KeyValue;
use crate::config::KeyType;
pub use crate::pgtext::parse_uuid;

/// Where a key value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Literal(KeyValue),
    /// `$n` (0-based index).
    Param(usize),
    /// `= ANY($n)`: every element of an array parameter.
    AnyParam(usize),
}

/// A literal or parameter expression as a key source of type `kt`.
pub fn key_source(e: &Expr, kt: KeyType) -> Option<KeySource> {
    match e {
        Expr::Nested(inner) => key_source(inner, kt),
        // A cast to another type family changes the value the server compares: unknown.
        Expr::Cast {
            expr, data_type, ..
        } if cast_keeps(data_type, kt) => key_source(expr, kt),
        Expr::Cast { .. } => None,
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match key_source(expr, kt)? {
            KeySource::Literal(KeyValue::Int(i)) => i
                .checked_neg()
                .map(|n| KeySource::Literal(KeyValue::Int(n))),
            _ => None,
        },
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => placeholder(p).map(KeySource::Param),
            Value::Number(n, _) => match kt {
                KeyType::Bigint => n.parse().ok().map(|i| KeySource::Literal(KeyValue::Int(i))),
                _ => None,
            },
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => {
                parse_text(s, kt).map(KeySource::Literal)
            }
            _ => None,
        },
        Expr::TypedString(ts) => match &ts.value.value {
            Value::SingleQuotedString(s) => parse_text(s, kt).map(KeySource::Literal),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a cast to `t` keeps a key of type `kt` what it is.
fn cast_keeps(t: &sqlparser::ast::DataType, kt: KeyType) -> bool {
    let name = t.to_string().to_ascii_lowercase();
    let base = name.split('(').next().unwrap_or("").trim();
    match kt {
        KeyType::Bigint => matches!(
            base,
            "bigint" | "int8" | "int" | "integer" | "int4" | "smallint" | "int2"
        ),
        KeyType::Text => matches!(
            base,
            "text" | "varchar" | "character varying" | "char" | "character" | "bpchar" | "name"
        ),
        KeyType::Uuid => base == "uuid",
    }
}

/// `$3` -> 2.
fn placeholder(p: &str) -> Option<usize> {
    p.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1)
}

/// The text form of a key, as Postgres would read it for the key type.
pub fn parse_text(s: &str, kt: KeyType) -> Option<KeyValue> {
    match kt {
        KeyType::Bigint => s.trim().parse().ok().map(KeyValue::Int),
        KeyType::Text => Some(KeyValue::Text(s.to_owned())),
        KeyType::Uuid => parse_uuid(s).map(KeyValue::Uuid),
    }
}

/// Decode one bound parameter of a scalar key. `binary` is its format code.
pub fn param_value(bytes: &[u8], binary: bool, kt: KeyType) -> Option<KeyValue> {
    if !binary {
        return parse_text(std::str::from_utf8(bytes).ok()?, kt);
    }
    match kt {
        // The wire width says which integer type the client bound.
        KeyType::Bigint => match bytes.len() {
            8 => Some(KeyValue::Int(i64::from_be_bytes(bytes.try_into().ok()?))),
            4 => Some(KeyValue::Int(
                i32::from_be_bytes(bytes.try_into().ok()?).into(),
            )),
            2 => Some(KeyValue::Int(
                i16::from_be_bytes(bytes.try_into().ok()?).into(),
            )),
            _ => None,
        },
        KeyType::Text => std::str::from_utf8(bytes)
            .ok()
            .map(|s| KeyValue::Text(s.to_owned())),
        KeyType::Uuid => bytes.try_into().ok().map(KeyValue::Uuid),
    }
}

/// Decode an array parameter (`= ANY($n)`): text form `{1,2,"a b"}` or the binary array
/// format (one dimension). `None` when it cannot be read completely.
pub fn param_array(bytes: &[u8], binary: bool, kt: KeyType) -> Option<Vec<KeyValue>> {
    if binary {
        return binary_array(bytes, kt);
    }
    let s = std::str::from_utf8(bytes).ok()?.trim();
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        let mut item = String::new();
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => item.push(chars.next()?),
                    '"' => break,
                    c => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            // NULL, nested arrays and backslash escapes: not read here (unknown key).
            if item.trim().eq_ignore_ascii_case("null") || item.contains('{') || item.contains('\\')
            {
                return None;
            }
        }
        out.push(parse_text(item.trim_end(), kt)?);
        match chars.next() {
            Some(',') => continue,
            None => return Some(out),
            Some(_) => {
                // Whatever follows a quoted item before the comma is malformed.
                return None;
            }
        }
    }
}

fn binary_array(b: &[u8], kt: KeyType) -> Option<Vec<KeyValue>> {
    let rd = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let ndim = rd(0)?;
    if ndim == 0 {
        return Some(Vec::new());
    }
    if ndim != 1 {
        return None;
    }
    let n = usize::try_from(rd(12)?).ok()?;
    let mut at = 20;
    let mut out = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let len = rd(at)?;
        at += 4;
        if len < 0 {
            return None; // NULL element: matches no row, but be conservative.
        }
        let len = len as usize;
        out.push(param_value(b.get(at..at + len)?, true, kt)?);
        at += len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_text_and_binary() {
        use KeyType::*;
        assert_eq!(param_value(b"42", false, Bigint), Some(KeyValue::Int(42)));
        assert_eq!(param_value(b"x", false, Bigint), None);
        assert_eq!(
            param_value(&7i64.to_be_bytes(), true, Bigint),
            Some(KeyValue::Int(7))
        );
        assert_eq!(
            param_value(&(-7i32).to_be_bytes(), true, Bigint),
            Some(KeyValue::Int(-7))
        );
        assert_eq!(
            param_value(&3i16.to_be_bytes(), true, Bigint),
            Some(KeyValue::Int(3))
        );
        assert_eq!(
            param_value(b"abc", true, Text),
            Some(KeyValue::Text("abc".into()))
        );
        let u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        assert_eq!(
            param_value(u.as_bytes(), false, Uuid),
            param_value(&parse_uuid(u).unwrap(), true, Uuid)
        );
        assert_eq!(
            parse_uuid("{A0EEBC999C0B4EF8BB6D6BB9BD380A11}"),
            parse_uuid(u)
        );
        assert_eq!(parse_uuid("a0ee"), None);
    }

    #[test]
    fn arrays_text_and_binary() {
        use KeyType::*;
        let ints = |v: &[i64]| v.iter().map(|&i| KeyValue::Int(i)).collect::<Vec<_>>();
        assert_eq!(
            param_array(b"{1,2, 3}", false, Bigint),
            Some(ints(&[1, 2, 3]))
        );
        assert_eq!(param_array(b"{}", false, Bigint), Some(vec![]));
        assert_eq!(param_array(b"{1,NULL}", false, Bigint), None);
        assert_eq!(
            param_array(br#"{"a b","c\"d",e}"#, false, Text),
            Some(vec![
                KeyValue::Text("a b".into()),
                KeyValue::Text("c\"d".into()),
                KeyValue::Text("e".into())
            ])
        );
        // int8[] {5, -1} in binary: ndim 1, no nulls, elem oid 20, dim 2, lbound 1.
        let mut b = Vec::new();
        for x in [1i32, 0, 20, 2, 1] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        for v in [5i64, -1] {
            b.extend_from_slice(&8i32.to_be_bytes());
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(param_array(&b, true, Bigint), Some(ints(&[5, -1])));
        assert_eq!(param_array(&b[..b.len() - 1], true, Bigint), None);
    }
}
