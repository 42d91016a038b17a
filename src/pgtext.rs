//! Text forms of Postgres values that more than one part of the proxy reads or writes: the
//! router (shard keys in literals and text parameters) and the merge (values of merged
//! columns). Pure.

/// The spellings Postgres' `uuid_in` accepts: 32 hex digits, optionally in braces, with a
/// hyphen allowed after any group of four digits.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let t = text.trim();
    let t = match t.strip_prefix('{') {
        Some(inner) => inner.strip_suffix('}')?,
        None => t,
    };
    let mut digits = Vec::with_capacity(32);
    let mut after_hyphen = false;
    for c in t.chars() {
        if c == '-' {
            let at_group_end = !digits.is_empty() && digits.len() % 4 == 0 && digits.len() < 32;
            if after_hyphen || !at_group_end {
                return None;
            }
            after_hyphen = true;
            continue;
        }
        digits.push(u8::try_from(c.to_digit(16)?).ok()?);
        after_hyphen = false;
    }
    if digits.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (b, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
        *b = pair[0] << 4 | pair[1];
    }
    Some(bytes)
}

/// Postgres' uuid output: lowercase, hyphenated 8-4-4-4-12.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_round_trips_through_its_accepted_spellings() {
        let want = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for s in [
            want,
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        ] {
            assert_eq!(
                parse_uuid(s).map(|b| format_uuid(&b)).as_deref(),
                Some(want),
                "{s}"
            );
        }
        assert_eq!(parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"), None);
        assert_eq!(parse_uuid("g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), None);
    }
}
