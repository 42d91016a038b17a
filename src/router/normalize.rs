//! Literal normalisation for simple-protocol statements: `... WHERE aid = 4242` becomes
//! `... WHERE aid = $1` with the literal `4242` as its parameter, so statements that differ
//! only in their integer literals share one cached plan instead of being parsed each time
//! (sqlparser costs ~20 µs per short statement; see docs/performance.md).
//!
//! Deliberately narrow: only unsigned integer literals are replaced, and any text with a
//! comment (hints live there), a `$` (parameters, dollar quotes), a backslash (escape
//! strings), a decimal or exponent number, or a sign before a number is left alone. The
//! session uses the result only when it routes to exactly one shard by key (see
//! `Router::plan_normalized`); everything else takes the ordinary path, so a rewrite the
//! parser reads differently (`varchar($1)`, `ORDER BY $1`) can at worst fall back.

use std::ops::Range;

/// Whether a byte continues an identifier (letters, digits, `_`, and non-ASCII bytes).
fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The text with every integer literal replaced by `$1`, `$2`, ... and the byte ranges of the
/// literals in `sql`; None when the text has no integer literal or is not simple enough.
pub fn normalize(sql: &str) -> Option<(String, Vec<Range<usize>>)> {
    let b = sql.as_bytes();
    if b.iter().any(|&c| c == b'$' || c == b'\\') || sql.contains("--") || sql.contains("/*") {
        return None;
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut literals = Vec::new();
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        let c = b[i];
        if c == b'\'' || c == b'"' {
            // A quoted string or identifier: skip to its end ('' and "" escape the quote).
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(&q) if q == c && b.get(i + 1) == Some(&c) => i += 2,
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
        } else if ident_byte(c) && !c.is_ascii_digit() {
            // An identifier or keyword, digits included (t1, x2y).
            while i < b.len() && ident_byte(b[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let next = b.get(i).copied().unwrap_or(b' ');
            let before = b[..start].iter().rev().find(|c| !c.is_ascii_whitespace());
            if next == b'.' || ident_byte(next) || matches!(before, Some(b'.' | b'-' | b'+')) {
                return None;
            }
            out.push_str(&sql[copied..start]);
            out.push('$');
            out.push_str(&(literals.len() + 1).to_string());
            copied = i;
            literals.push(start..i);
        } else {
            i += 1;
        }
    }
    if literals.is_empty() {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some((out, literals))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    /// A statement, and its normalised text with the literals taken out (None: left alone).
    type Case = (
        &'static str,
        Option<(&'static str, &'static [&'static str])>,
    );

    #[test]
    fn table() {
        let cases: &[Case] = &[
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;",
                Some((
                    "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
                    &["4242"],
                )),
            ),
            (
                "update t1 set x = 5 where id=7",
                Some(("update t1 set x = $1 where id=$2", &["5", "7"])),
            ),
            (
                "select * from users where name = 'a''42' and id = 42",
                Some((
                    "select * from users where name = 'a''42' and id = $1",
                    &["42"],
                )),
            ),
            (
                "select \"col 1\" from t where id in (1,2)",
                Some(("select \"col 1\" from t where id in ($1,$2)", &["1", "2"])),
            ),
            ("select 1.5", None),
            ("select 1e5", None),
            ("select * from t where id = -5", None),
            ("select * from t where id = 5 - 1", None),
            ("select * from t where id = $1", None),
            ("/* shardgate: shard=s1 */ select 1", None),
            ("select 1 -- one", None),
            ("select E'\\'' , 1", None),
            ("select 'unterminated 1", None),
            ("select x from t", None),
            ("select t.1 from t", None),
        ];
        for (sql, want) in cases {
            let got = normalize(sql).map(|(text, lits)| {
                let lits: Vec<&str> = lits.iter().map(|r| &sql[r.clone()]).collect();
                (text, lits)
            });
            let want = want.map(|(t, l)| (t.to_string(), l.to_vec()));
            assert_eq!(got, want, "{sql}");
        }
    }
}
