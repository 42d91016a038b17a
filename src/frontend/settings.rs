//! Session state that must follow a client across pooled server connections.
//!
//! Owns: the client's startup parameters and successful `SET`s (replayed on whichever server
//! connection it gets next, after `RESET ALL`), and a cheap keyword classifier that spots
//! `SET`/`RESET`/`DISCARD ALL` and statements whose state cannot move between connections
//! (temporary tables, LISTEN, session advisory locks, WITH HOLD cursors, SQL-level PREPARE),
//! which pin the client to its connection. It reads statement text as bytes and never
//! parses SQL fully; routing is not decided here.

use std::hash::{Hash, Hasher};

/// Startup parameters that are not settings and must not be replayed.
const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// `(name, value)` from the startup packet (and `-c name=value` in `options`).
    startup: Vec<(String, String)>,
    /// Committed session-level `SET` statements: `(lowercase name, statement text)`.
    sets: Vec<(String, String)>,
    key: u64,
}

/// What one statement does to session state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    Set {
        name: String,
        stmt: String,
    },
    Reset {
        name: String,
    },
    ResetAll,
    DiscardAll,
    /// DEALLOCATE ALL: drops every prepared statement of the connection that runs it.
    DeallocateAll,
    /// State that only this server connection holds; the reason is for logs and docs.
    Pin(&'static str),
}

impl ClientSettings {
    pub fn from_startup(params: &[(String, String)]) -> Self {
        let mut startup: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !NOT_SETTINGS.contains(&k.as_str()))
            .cloned()
            .collect();
        if let Some((_, opts)) = params.iter().find(|(k, _)| k == "options") {
            startup.extend(parse_options(opts));
        }
        let mut s = ClientSettings {
            startup,
            sets: Vec::new(),
            key: 0,
        };
        s.rekey();
        s
    }

    /// Fingerprint of everything to replay; 0 means "nothing", matching a fresh connection.
    pub fn key(&self) -> u64 {
        self.key
    }

    fn rekey(&mut self) {
        self.key = if self.startup.is_empty() && self.sets.is_empty() {
            0
        } else {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.startup.hash(&mut h);
            self.sets.hash(&mut h);
            h.finish() | 1
        };
    }

    /// Apply a committed effect.
    pub fn apply(&mut self, e: &Effect) {
        match e {
            Effect::Set { name, stmt } => {
                self.sets.retain(|(n, _)| n != name);
                self.sets.push((name.clone(), stmt.clone()));
            }
            Effect::Reset { name } => self.sets.retain(|(n, _)| n != name),
            Effect::ResetAll | Effect::DiscardAll => self.sets.clear(),
            Effect::None | Effect::Pin(_) | Effect::DeallocateAll => return,
        }
        self.rekey();
    }

    /// The statements that bring a connection from its startup defaults to this client's
    /// state, as one simple-query string.
    pub fn replay_sql(&self) -> String {
        let mut sql = String::from("RESET ALL");
        for (k, v) in &self.startup {
            sql.push_str(&format!("; SET {} TO {}", quote_ident(k), quote_literal(v)));
        }
        for (_, stmt) in &self.sets {
            sql.push_str("; ");
            sql.push_str(stmt);
        }
        sql
    }
}

/// `-c name=value` and `--name=value` pairs from the startup `options` parameter.
fn parse_options(opts: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = opts.split_whitespace();
    while let Some(w) = words.next() {
        let pair = if w == "-c" {
            words.next()
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest)
        } else {
            w.strip_prefix("--")
        };
        if let Some((k, v)) = pair.and_then(|p| p.split_once('=')) {
            out.push((k.replace('-', "_"), v.to_owned()));
        }
    }
    out
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Split a simple-query string into statements at top-level semicolons (quotes, dollar
/// quotes and comments respected). Empty pieces are dropped.
pub fn split_statements(sql: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut i, mut start) = (0, 0);
    while i < sql.len() {
        match sql[i] {
            b'\'' | b'"' => {
                let q = sql[i];
                i += 1;
                while i < sql.len() && sql[i] != q {
                    i += 1;
                }
            }
            b'-' if sql.get(i + 1) == Some(&b'-') => {
                while i < sql.len() && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < sql.len() && !(sql[i] == b'*' && sql[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                // A dollar-quote tag is $$ or $ident$; a positional parameter ($1) is not.
                let tag_end = sql[i + 1..]
                    .iter()
                    .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
                    .map(|n| i + 1 + n);
                if let Some(e) = tag_end {
                    if sql[e] == b'$' && !sql[i + 1..e].first().is_some_and(u8::is_ascii_digit) {
                        let tag = &sql[i..=e];
                        let body = e + 1;
                        i = find(&sql[body..], tag).map_or(sql.len(), |n| body + n + tag.len() - 1);
                    }
                }
            }
            b';' => {
                push_trimmed(&mut out, &sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push_trimmed(&mut out, &sql[start.min(sql.len())..]);
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a [u8]>, s: &'a [u8]) {
    let s = s.trim_ascii();
    if !s.is_empty() {
        out.push(s);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn find_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Skip leading whitespace and comments; return the rest.
fn skip_noise(mut s: &[u8]) -> &[u8] {
    loop {
        s = s.trim_ascii_start();
        if s.starts_with(b"--") {
            s = s.iter().position(|&c| c == b'\n').map_or(&[], |n| &s[n..]);
        } else if s.starts_with(b"/*") {
            s = find(s, b"*/").map_or(&[], |n| &s[n + 2..]);
        } else {
            return s;
        }
    }
}

/// The leading words of a statement, lowercased (up to `n`).
fn words(stmt: &[u8], n: usize) -> Vec<String> {
    skip_noise(stmt)
        .split(|c| c.is_ascii_whitespace() || *c == b'(' || *c == b'=')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(|w| String::from_utf8_lossy(w).to_ascii_lowercase())
        .collect()
}

/// Classify one statement (no semicolons inside, as `split_statements` returns them).
pub fn classify(stmt: &[u8]) -> Effect {
    let first = skip_noise(stmt);
    let kw = |k: &[u8]| first.len() >= k.len() && first[..k.len()].eq_ignore_ascii_case(k);
    if kw(b"set") {
        let w = words(stmt, 4);
        let name_at = match w.get(1).map(String::as_str) {
            Some("local") | Some("transaction") | Some("constraints") => return Effect::None,
            Some("session") if w.get(2).map(String::as_str) == Some("characteristics") => {
                return Effect::None
            }
            Some("session") if w.get(2).map(String::as_str) == Some("authorization") => {
                return Effect::Set {
                    name: "session_authorization".into(),
                    stmt: String::from_utf8_lossy(first).into_owned(),
                };
            }
            Some("session") => 2,
            _ => 1,
        };
        return match w.get(name_at) {
            Some(name) => Effect::Set {
                name: name.trim_matches('"').to_owned(),
                stmt: String::from_utf8_lossy(first).into_owned(),
            },
            None => Effect::None,
        };
    }
    if kw(b"reset") {
        return match words(stmt, 2).get(1).map(String::as_str) {
            Some("all") => Effect::ResetAll,
            Some(name) => Effect::Reset {
                name: name.trim_matches('"').to_owned(),
            },
            None => Effect::None,
        };
    }
    if kw(b"discard") {
        return match words(stmt, 2).get(1).map(String::as_str) {
            Some("all") => Effect::DiscardAll,
            Some("temp") | Some("temporary") | Some("plans") | Some("sequences") => Effect::None,
            _ => Effect::None,
        };
    }
    if kw(b"deallocate") {
        let w = words(stmt, 3);
        let all = w.get(1).map(String::as_str) == Some("all")
            || (w.get(1).map(String::as_str) == Some("prepare")
                && w.get(2).map(String::as_str) == Some("all"));
        return if all {
            Effect::DeallocateAll
        } else {
            Effect::None
        };
    }
    if kw(b"prepare") {
        return match words(stmt, 2).get(1).map(String::as_str) {
            Some("transaction") => Effect::None,
            _ => Effect::Pin("SQL-level PREPARE"),
        };
    }
    if kw(b"listen") {
        return Effect::Pin("LISTEN");
    }
    if kw(b"declare") && find_ci(stmt, b"with hold") {
        return Effect::Pin("a cursor WITH HOLD");
    }
    if kw(b"create") {
        let w = words(stmt, 3);
        let temp =
            |s: Option<&String>| matches!(s.map(String::as_str), Some("temp") | Some("temporary"));
        if temp(w.get(1))
            || (matches!(w.get(1).map(String::as_str), Some("local") | Some("global"))
                && temp(w.get(2)))
        {
            return Effect::Pin("a temporary table");
        }
    }
    if find_ci(stmt, b"advisory_lock") && !find_ci(stmt, b"advisory_xact_lock") {
        return Effect::Pin("a session-level advisory lock");
    }
    if find_ci(stmt, b"into temp") {
        return Effect::Pin("a temporary table");
    }
    Effect::None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let set = |n: &str, s: &str| Effect::Set {
            name: n.into(),
            stmt: s.into(),
        };
        let cases: Vec<(&str, Effect)> = vec![
            (
                "SET search_path TO a,b",
                set("search_path", "SET search_path TO a,b"),
            ),
            (
                "set work_mem='64MB'",
                set("work_mem", "set work_mem='64MB'"),
            ),
            (
                "SET SESSION TimeZone = 'UTC'",
                set("timezone", "SET SESSION TimeZone = 'UTC'"),
            ),
            ("  /* c */ SET x.y = 1", set("x.y", "SET x.y = 1")),
            ("SET LOCAL work_mem = '1MB'", Effect::None),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", Effect::None),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
                Effect::None,
            ),
            ("RESET ALL", Effect::ResetAll),
            (
                "reset work_mem",
                Effect::Reset {
                    name: "work_mem".into(),
                },
            ),
            ("DISCARD ALL", Effect::DiscardAll),
            ("PREPARE p AS SELECT 1", Effect::Pin("SQL-level PREPARE")),
            ("PREPARE TRANSACTION 'x'", Effect::None),
            ("LISTEN chan", Effect::Pin("LISTEN")),
            (
                "CREATE TEMP TABLE t (a int)",
                Effect::Pin("a temporary table"),
            ),
            (
                "create local temporary table t (a int)",
                Effect::Pin("a temporary table"),
            ),
            ("CREATE TABLE temp (a int)", Effect::None),
            (
                "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                Effect::Pin("a cursor WITH HOLD"),
            ),
            ("DECLARE c CURSOR FOR SELECT 1", Effect::None),
            (
                "SELECT pg_advisory_lock(1)",
                Effect::Pin("a session-level advisory lock"),
            ),
            ("SELECT pg_advisory_xact_lock(1)", Effect::None),
            ("SELECT 1", Effect::None),
        ];
        for (sql, want) in cases {
            assert_eq!(classify(sql.as_bytes()), want, "{sql}");
        }
    }

    #[test]
    fn split_respects_quotes_and_comments() {
        let s = b"select ';'; select $$a;b$$; -- x;y\nselect $1; select \"a;b\"; /* ; */";
        let parts: Vec<String> = split_statements(s)
            .into_iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        assert_eq!(
            parts,
            vec![
                "select ';'",
                "select $$a;b$$",
                "-- x;y\nselect $1",
                "select \"a;b\"",
                "/* ; */"
            ]
        );
    }

    #[test]
    fn settings_key_and_replay() {
        let mut s = ClientSettings::from_startup(&[
            ("user".into(), "app".into()),
            ("application_name".into(), "psql".into()),
            ("options".into(), "-c search_path=x --work-mem=4MB".into()),
        ]);
        let k0 = s.key();
        assert_ne!(k0, 0);
        s.apply(&classify(b"SET statement_timeout = 1000"));
        assert_ne!(s.key(), k0);
        assert_eq!(
            s.replay_sql(),
            "RESET ALL; SET \"application_name\" TO 'psql'; SET \"search_path\" TO 'x'; \
             SET \"work_mem\" TO '4MB'; SET statement_timeout = 1000"
        );
        s.apply(&Effect::ResetAll);
        assert_eq!(s.key(), k0);
        assert_eq!(ClientSettings::from_startup(&[]).key(), 0);
    }
}
