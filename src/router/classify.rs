//! The first look at a statement, before (and instead of) sqlparser: routing hints in a
//! leading comment, and the statement kinds sqlparser cannot read or that need no parse
//! (transaction control incl. `PREPARE TRANSACTION`, `SET`/`SHOW`/`RESET`/`DISCARD`, `DO`,
//! `VACUUM`, cursor commands, ...). Works on text only.

/// A routing hint from a leading `/* shardgate: ... */` comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// `shard=s1`
    Shard(String),
    /// `key=42 table=users`
    Key { key: String, table: String },
}

/// What the keywords alone say about a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT, RELEASE, ROLLBACK TO: go to every shard of the transaction.
    Savepoint,
    /// PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED issued by the client itself.
    ClientTwoPhase,
    /// SET, RESET, SHOW, DISCARD, DEALLOCATE, LISTEN, UNLISTEN, NOTIFY, LOAD: session commands
    /// that touch no table.
    Session,
    /// FETCH, MOVE, CLOSE: act on a cursor, which lives where it was declared.
    Cursor,
    /// VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT: maintenance, not transactional.
    Maintenance,
    /// DO blocks and other text sqlparser cannot analyse; routed by the tables they name.
    Opaque,
    /// Anything else: sqlparser decides.
    Parse,
    /// Only whitespace and comments.
    Empty,
}

/// Skip whitespace and comments, returning the rest and any shardgate hint found in a
/// leading block comment.
pub fn strip_leading(sql: &str) -> (&str, Option<Hint>) {
    let mut s = sql;
    let mut hint = None;
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.find('\n').map_or("", |n| &rest[n..]);
        } else if let Some(rest) = s.strip_prefix("/*") {
            let end = rest.find("*/").unwrap_or(rest.len());
            if hint.is_none() {
                hint = parse_hint(&rest[..end]);
            }
            s = rest.get(end + 2..).unwrap_or("");
        } else {
            return (s, hint);
        }
    }
}

fn parse_hint(comment: &str) -> Option<Hint> {
    let body = comment.trim().strip_prefix("shardgate:")?;
    let mut shard = None;
    let mut key = None;
    let mut table = None;
    for part in body.split_whitespace() {
        let (k, v) = part.split_once('=')?;
        let v = v
            .trim_matches(|c| c == '\'' || c == '"' || c == ',')
            .to_owned();
        match k {
            "shard" => shard = Some(v),
            "key" => key = Some(v),
            "table" => table = Some(v.to_ascii_lowercase()),
            _ => return None,
        }
    }
    match (shard, key, table) {
        (Some(s), None, None) => Some(Hint::Shard(s)),
        (None, Some(key), Some(table)) => Some(Hint::Key { key, table }),
        _ => None,
    }
}

/// Whether a BEGIN text has no options (`BEGIN`, `BEGIN WORK|TRANSACTION`, `START
/// TRANSACTION`, any case, optional `;`): nothing the server could reject. Anything else
/// (isolation levels, comments, savepoints for a joining shard) is not plain.
pub fn plain_begin(text: &str) -> bool {
    let mut words = text
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty());
    let is = |w: Option<&str>, k: &str| w.is_some_and(|w| w.eq_ignore_ascii_case(k));
    let (a, b, c) = (words.next(), words.next(), words.next());
    if c.is_some() {
        return false;
    }
    (is(a, "begin") && (b.is_none() || is(b, "work") || is(b, "transaction")))
        || (is(a, "start") && is(b, "transaction"))
}

/// Classify by the first keywords of `s` (already stripped of leading comments). Runs for
/// every statement a client sends, so it compares words in place instead of allocating.
pub fn kind(s: &str) -> Kind {
    let mut w = s
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .filter(|w| !w.is_empty());
    let w0 = w.next().unwrap_or("");
    let mut w1 = w.next().unwrap_or("");
    let is = |word: &str, k: &str| word.eq_ignore_ascii_case(k);
    let any = |word: &str, ks: &[&str]| ks.iter().any(|k| word.eq_ignore_ascii_case(k));
    if any(w0, &["rollback", "commit", "end", "abort"]) && any(w1, &["work", "transaction"]) {
        // ROLLBACK WORK TO SAVEPOINT, COMMIT TRANSACTION ...: the noise word changes nothing.
        w1 = w.next().unwrap_or("");
    }
    match w0 {
        "" => Kind::Empty,
        _ if any(w0, &["begin", "start"]) => Kind::Begin,
        _ if any(w0, &["commit", "end"]) && is(w1, "prepared") => Kind::ClientTwoPhase,
        _ if any(w0, &["commit", "end"]) => Kind::Commit,
        _ if is(w0, "abort") => Kind::Rollback,
        _ if is(w0, "rollback") && is(w1, "prepared") => Kind::ClientTwoPhase,
        _ if is(w0, "rollback") && is(w1, "to") => Kind::Savepoint,
        _ if is(w0, "rollback") => Kind::Rollback,
        _ if any(w0, &["savepoint", "release"]) => Kind::Savepoint,
        _ if is(w0, "prepare") && is(w1, "transaction") => Kind::ClientTwoPhase,
        _ if any(
            w0,
            &[
                "set",
                "reset",
                "show",
                "discard",
                "deallocate",
                "listen",
                "unlisten",
                "notify",
                "load",
            ],
        ) =>
        {
            Kind::Session
        }
        _ if any(w0, &["fetch", "move", "close"]) => Kind::Cursor,
        _ if any(
            w0,
            &[
                "vacuum",
                "analyze",
                "analyse",
                "cluster",
                "reindex",
                "checkpoint",
            ],
        ) =>
        {
            Kind::Maintenance
        }
        _ if is(w0, "do") => Kind::Opaque,
        _ => Kind::Parse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_begins() {
        for t in [
            "BEGIN",
            "begin;",
            " Begin Work ; ",
            "BEGIN TRANSACTION",
            "start transaction",
        ] {
            assert!(plain_begin(t), "{t}");
        }
        for t in [
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "begin read only",
            "start transaction read write",
            "/* x */ BEGIN",
            "BEGIN; SAVEPOINT \"a\"",
            "START",
            "",
        ] {
            assert!(!plain_begin(t), "{t}");
        }
    }

    #[test]
    fn hints_and_kinds() {
        let cases: &[(&str, Kind, Option<Hint>)] = &[
            ("BEGIN", Kind::Begin, None),
            (
                "start transaction isolation level serializable",
                Kind::Begin,
                None,
            ),
            ("begin read write, deferrable", Kind::Begin, None),
            ("COMMIT", Kind::Commit, None),
            ("end", Kind::Commit, None),
            ("ROLLBACK", Kind::Rollback, None),
            ("rollback to savepoint a", Kind::Savepoint, None),
            ("ROLLBACK TRANSACTION TO SAVEPOINT a", Kind::Savepoint, None),
            ("rollback work to a", Kind::Savepoint, None),
            ("rollback work", Kind::Rollback, None),
            ("commit transaction", Kind::Commit, None),
            ("SAVEPOINT a", Kind::Savepoint, None),
            ("release savepoint a", Kind::Savepoint, None),
            ("PREPARE TRANSACTION 'x'", Kind::ClientTwoPhase, None),
            ("COMMIT PREPARED 'x'", Kind::ClientTwoPhase, None),
            ("ROLLBACK PREPARED 'x'", Kind::ClientTwoPhase, None),
            ("SET search_path = a", Kind::Session, None),
            ("show all", Kind::Session, None),
            ("DISCARD ALL", Kind::Session, None),
            ("FETCH 10 FROM c", Kind::Cursor, None),
            ("MOVE NEXT IN c", Kind::Cursor, None),
            ("VACUUM (VERBOSE) users", Kind::Maintenance, None),
            ("DO $$ begin end $$", Kind::Opaque, None),
            ("select 1", Kind::Parse, None),
            ("  -- only a comment\n", Kind::Empty, None),
            (
                "/* shardgate: shard=s1 */ select 1",
                Kind::Parse,
                Some(Hint::Shard("s1".into())),
            ),
            (
                "/* shardgate: key=42 table=Users */ delete from users",
                Kind::Parse,
                Some(Hint::Key {
                    key: "42".into(),
                    table: "users".into(),
                }),
            ),
            ("/* just a comment */ select 1", Kind::Parse, None),
            ("/* shardgate: bogus=1 */ select 1", Kind::Parse, None),
        ];
        for (sql, k, h) in cases {
            let (rest, hint) = strip_leading(sql);
            assert_eq!((kind(rest), &hint), (*k, h), "{sql}");
        }
    }
}
