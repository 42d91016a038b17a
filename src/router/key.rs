//! A shard-key value as the router sees it, after parsing a literal or a bound parameter.
//!
//! Owns the typed value and its canonical text (used by the `md5` function and as the
//! directory's key). Does not know how values hash: that is `hash`.

/// A key value of one of the key types a table can declare.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    /// bigint / int / smallint keys.
    Int(i64),
    /// text / varchar keys, as the UTF-8 bytes Postgres would hash (server encoding UTF8).
    Text(String),
    /// uuid keys, the 16 bytes in network order.
    Uuid([u8; 16]),
}

impl KeyValue {
    /// The text Postgres prints for this value (`42`, `abc`, lowercase hyphenated uuid).
    pub fn canonical_text(&self) -> String {
        match self {
            KeyValue::Int(i) => i.to_string(),
            KeyValue::Text(s) => s.clone(),
            KeyValue::Uuid(b) => crate::pgtext::format_uuid(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text() {
        assert_eq!(KeyValue::Int(-42).canonical_text(), "-42");
        let mut b = [0u8; 16];
        b[0] = 0xa0;
        b[15] = 0x0f;
        assert_eq!(
            KeyValue::Uuid(b).canonical_text(),
            "a0000000-0000-0000-0000-00000000000f"
        );
    }
}
