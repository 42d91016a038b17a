//! What statements do to session state, recorded when they are sent and settled when their
//! request cycle (and transaction) ends: `SET`s wait for their transaction to commit (and are
//! dropped by a `ROLLBACK TO` a savepoint made before them), pins take effect at once; the
//! open savepoints are tracked so a shard joining the transaction late gets them too.

use super::Session;
use crate::frontend::settings::{classify, split_statements, Effect};

impl Session {
    /// Record what the statement(s) in `sql` do to session state; pins take effect now,
    /// settings when their request cycle (and transaction) succeeds.
    pub(super) fn note_effects(&mut self, sql: &[u8], simple: bool) {
        let cycle = self.sent_cycles;
        let pieces: Vec<&[u8]> = if simple {
            split_statements(sql)
        } else {
            vec![sql]
        };
        let words: Vec<TxnWord> = pieces.iter().map(|s| txn_word(s)).collect();
        if words.contains(&TxnWord::End) {
            // ROLLBACK TO SAVEPOINT answers with the same tag as a transaction that rolled
            // back: count them, so that only a ROLLBACK tag beyond them ends the transaction.
            let to = words.iter().filter(|w| **w == TxnWord::RollbackTo).count();
            self.rollback_cycles.push((cycle, to));
            self.savepoints.clear();
        }
        for (stmt, word) in pieces.into_iter().zip(words) {
            // Statements in order: a ROLLBACK TO drops the SETs made since that savepoint,
            // and each SET remembers which savepoints were open when it was made.
            if word == TxnWord::Savepoint || word == TxnWord::RollbackTo {
                self.sync_savepoint_ids();
                if let Some(i) = track_savepoint(&mut self.savepoints, stmt) {
                    let undone = self.savepoint_ids[i];
                    self.effects
                        .retain(|(_, _, under)| !under.contains(&undone));
                    self.txn_effects
                        .retain(|(_, under)| !under.contains(&undone));
                }
            }
            self.sync_savepoint_ids();
            match classify(stmt) {
                Effect::None => {}
                Effect::Pin(why) => {
                    if self.pinned.is_none() {
                        tracing::debug!(reason = why, "client pinned to its server connection");
                    }
                    self.pinned = Some(why);
                }
                e => self.effects.push((cycle, e, self.savepoint_ids.clone())),
            }
        }
    }

    /// Keep one id per open savepoint (`savepoints` is the source of truth; ids are dropped
    /// with their savepoints and new ones get fresh ids).
    fn sync_savepoint_ids(&mut self) {
        self.savepoint_ids.truncate(self.savepoints.len());
        while self.savepoint_ids.len() < self.savepoints.len() {
            self.next_savepoint_id += 1;
            self.savepoint_ids.push(self.next_savepoint_id);
        }
    }
}

/// What a statement does to the transaction, as far as session-state bookkeeping cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnWord {
    /// COMMIT/END/ROLLBACK/ABORT.
    End,
    /// ROLLBACK TO SAVEPOINT.
    RollbackTo,
    /// SAVEPOINT or RELEASE.
    Savepoint,
    Other,
}

fn txn_word(stmt: &[u8]) -> TxnWord {
    use crate::router::classify::{kind, strip_leading, Kind};
    let (rest, _) = strip_leading(std::str::from_utf8(stmt).unwrap_or(""));
    match kind(rest) {
        Kind::Commit | Kind::Rollback => TxnWord::End,
        Kind::Savepoint
            if rest
                .get(..8)
                .is_some_and(|w| w.eq_ignore_ascii_case("rollback")) =>
        {
            TxnWord::RollbackTo
        }
        Kind::Savepoint => TxnWord::Savepoint,
        _ => TxnWord::Other,
    }
}

/// Keep the list of open savepoints current: SAVEPOINT adds one; RELEASE drops it and later
/// ones; ROLLBACK TO drops the later ones and returns the index of the one rolled back to.
fn track_savepoint(list: &mut Vec<String>, stmt: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(stmt);
    let (rest, _) = crate::router::classify::strip_leading(&text);
    let words: Vec<String> = rest
        .split_whitespace()
        .map(|w| w.trim_end_matches(';').to_string())
        .collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let name_at = |i: usize| {
        words.get(i).map(
            |w| match w.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
                Some(q) => q.to_string(),
                None => w.to_ascii_lowercase(),
            },
        )
    };
    let skip = |i: usize, word: &str| {
        if lower.get(i).map(String::as_str) == Some(word) {
            i + 1
        } else {
            i
        }
    };
    match lower.first().map(String::as_str) {
        Some("savepoint") => {
            if let Some(n) = name_at(1) {
                list.push(n);
            }
        }
        Some("release") => {
            if let Some(n) = name_at(skip(1, "savepoint")) {
                if let Some(i) = list.iter().rposition(|s| *s == n) {
                    list.truncate(i);
                }
            }
        }
        Some("rollback") => {
            let i = skip(skip(1, "work"), "transaction");
            let i = if lower.get(i).map(String::as_str) == Some("transaction") {
                i + 1
            } else {
                i
            };
            if lower.get(i).map(String::as_str) == Some("to") {
                if let Some(n) = name_at(skip(i + 1, "savepoint")) {
                    if let Some(i) = list.iter().rposition(|s| *s == n) {
                        list.truncate(i + 1);
                        return Some(i);
                    }
                }
            }
        }
        _ => {}
    }
    None
}

#[cfg(test)]
mod savepoint_tests {
    #[test]
    fn savepoint_list() {
        let mut l = Vec::new();
        for s in [
            "SAVEPOINT a",
            "savepoint B",
            "SAVEPOINT \"C c\"",
            "ROLLBACK TO SAVEPOINT b",
        ] {
            super::track_savepoint(&mut l, s.as_bytes());
        }
        assert_eq!(l, vec!["a", "b"]);
        super::track_savepoint(&mut l, b"SAVEPOINT c");
        super::track_savepoint(&mut l, b"release savepoint b");
        assert_eq!(l, vec!["a"]);
        super::track_savepoint(&mut l, b"ROLLBACK TRANSACTION TO a");
        assert_eq!(l, vec!["a"]);
    }
}
