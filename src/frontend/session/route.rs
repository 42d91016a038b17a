//! Where one request cycle goes: a simple Query (possibly several statements) or an
//! extended-protocol batch up to Sync/Flush, routed as a unit.
//!
//! Combines the router's per-statement decisions with the session's own state: an open
//! transaction stays on its shard (until two-phase commit lands), a `BEGIN` waits for the
//! first statement that picks a shard, `SET shardgate.shard` pins routing, and directory keys
//! missing from the cache are fetched from the catalog. Whatever cannot run correctly becomes
//! a refusal (0A000) naming the reason; nothing is sent to a shard that might be wrong.

use std::sync::Arc;

use super::Session;
use crate::config::{KeyType, ShardId};
use crate::protocol::{sqlstate, PgError};
use crate::router::classify::Kind;
use crate::router::{Decision, DirectoryLookup, KeyValue, Params, Plan};

/// One statement of a cycle, as the router sees it.
pub(super) struct Item<'a> {
    pub plan: Arc<Plan>,
    pub params: Params<'a>,
    /// Whether this statement's result rows come back to the client (it is executed), as
    /// opposed to a Parse or Describe that only prepares it.
    pub executes: bool,
    /// The statement text (lossy UTF-8), for the session commands the proxy handles itself.
    pub sql: Arc<str>,
}

/// What the cycle turned out to be.
pub(super) enum Target {
    Shard(ShardId),
    /// A single read over several shards whose rows are concatenated.
    FanOut(Vec<ShardId>),
    /// Transaction control or proxy settings the proxy answers itself.
    Local(Vec<LocalAction>),
    Refuse(PgError),
}

/// A statement the proxy answers without a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LocalAction {
    Begin(String),
    /// Ends a transaction that never reached a shard; `commit` false for ROLLBACK.
    End {
        commit: bool,
    },
    SetShard(Option<String>),
}

impl LocalAction {
    pub fn tag(&self, aborted: bool) -> &'static str {
        match self {
            LocalAction::Begin(_) => "BEGIN",
            LocalAction::End { commit: true } if !aborted => "COMMIT",
            LocalAction::End { .. } => "ROLLBACK",
            LocalAction::SetShard(Some(_)) => "SET",
            LocalAction::SetShard(None) => "RESET",
        }
    }
}

/// `SET shardgate.shard = 's1'` / `RESET shardgate.shard` / `SET shardgate.shard TO DEFAULT`.
fn shardgate_setting(sql: &str) -> Option<Option<String>> {
    let s = sql.trim().trim_end_matches(';').trim();
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("reset") && lower[5..].trim() == "shardgate.shard" {
        return Some(None);
    }
    let rest = lower.strip_prefix("set")?.trim_start();
    let rest = rest
        .strip_prefix("session")
        .map(str::trim_start)
        .unwrap_or(rest);
    let value = rest.strip_prefix("shardgate.shard")?.trim_start();
    let value = value
        .strip_prefix('=')
        .or_else(|| value.strip_prefix("to"))?
        .trim();
    if value == "default" {
        return Some(None);
    }
    // Keep the original case of the value (shard names are case-sensitive).
    let at = s.len() - value.len();
    Some(Some(
        s[at..].trim_matches(|c| c == '\'' || c == '"').to_owned(),
    ))
}

/// The directory as the cache knows it, with shard names resolved.
struct CachedDirectory<'a> {
    session: &'a Session,
}

impl DirectoryLookup for CachedDirectory<'_> {
    fn lookup(&self, scheme: &str, key: &KeyValue) -> Option<Option<ShardId>> {
        match self
            .session
            .proxy
            .directory()
            .get(scheme, &key.canonical_text())?
        {
            None => Some(None),
            // An entry naming a shard the config lacks is not trusted from the cache: the
            // session fetches it again and refuses with a clear message.
            Some(name) => self.session.cfg.shard_id(&name).map(Some),
        }
    }
}

fn refuse(msg: impl Into<String>) -> Target {
    Target::Refuse(PgError::error(sqlstate::FEATURE_NOT_SUPPORTED, msg))
}

impl Session {
    fn names(&self, shards: &[ShardId]) -> String {
        shards
            .iter()
            .map(|&s| self.cfg.shards[s].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Decide one statement, fetching uncached directory entries from the catalog.
    async fn decide(&self, item: &Item<'_>) -> Result<Decision, PgError> {
        for _ in 0..3 {
            let d = self.proxy.router().decide(
                &item.plan,
                &item.params,
                &CachedDirectory { session: self },
            );
            let Decision::Lookup { scheme, key } = d else {
                return Ok(d);
            };
            let Some(catalog) = self.proxy.catalog() else {
                return Err(PgError::error(
                    sqlstate::CONNECTION_FAILURE,
                    "the catalog is not connected: directory keys cannot be looked up",
                ));
            };
            let text = key.canonical_text();
            let found = catalog
                .directory_lookup(self.proxy.directory(), &scheme, &text)
                .await
                .map_err(|e| PgError::error(e.sqlstate(), e.client_message()))?;
            if let Some(name) = found {
                if self.cfg.shard_id(&name).is_none() {
                    return Ok(Decision::Refuse(format!(
                        "the directory entry for key {text} of scheme {scheme} names shard \"{name}\", which is not configured"
                    )));
                }
            }
        }
        Ok(Decision::Refuse(
            "the directory entry kept changing while it was being read".into(),
        ))
    }

    /// Route a whole cycle.
    pub(super) async fn target(&mut self, items: &[Item<'_>]) -> Target {
        // Statements the proxy answers itself: only when the whole cycle is made of them.
        let local: Option<Vec<LocalAction>> = items
            .iter()
            .filter(|i| i.executes)
            .map(|i| match i.plan.as_ref() {
                Plan::Control(Kind::Begin)
                    if self.txn_shard.is_none() && self.deferred_begin.is_none() =>
                {
                    Some(LocalAction::Begin(i.sql.to_string()))
                }
                Plan::Control(Kind::Commit)
                    if self.txn_shard.is_none() && self.deferred_begin.is_some() =>
                {
                    Some(LocalAction::End { commit: true })
                }
                Plan::Control(Kind::Rollback)
                    if self.txn_shard.is_none() && self.deferred_begin.is_some() =>
                {
                    Some(LocalAction::End { commit: false })
                }
                Plan::Control(Kind::Session) => {
                    shardgate_setting(&i.sql).map(LocalAction::SetShard)
                }
                _ => None,
            })
            .collect();
        if let Some(actions) = local {
            if !actions.is_empty() {
                return Target::Local(actions);
            }
        }
        if self.proxy_aborted {
            let ends = items.iter().filter(|i| i.executes).all(|i| {
                matches!(
                    i.plan.as_ref(),
                    Plan::Control(Kind::Commit | Kind::Rollback)
                )
            });
            return if ends && items.iter().any(|i| i.executes) {
                Target::Local(vec![LocalAction::End { commit: false }])
            } else {
                Target::Refuse(PgError::error(
                    "25P02",
                    "current transaction is aborted, commands ignored until end of transaction block",
                ))
            };
        }
        if items.iter().any(|i| shardgate_setting(&i.sql).is_some()) {
            return refuse("SET shardgate.shard must be sent on its own");
        }
        let in_txn = self.txn_shard.is_some() || self.deferred_begin.is_some();
        if let Some(s) = self.hint_shard {
            return match self.txn_shard {
                Some(t) if t != s => refuse(format!(
                    "this transaction runs on shard \"{}\"; shardgate.shard names \"{}\"",
                    self.cfg.shards[t].name, self.cfg.shards[s].name
                )),
                _ => Target::Shard(s),
            };
        }
        let mut fixed: Vec<ShardId> = Vec::new();
        let mut fanout: Option<(Vec<ShardId>, &Item<'_>, crate::router::Route)> = None;
        let mut data = 0;
        for item in items {
            let d = match self.decide(item).await {
                Ok(d) => d,
                Err(e) => return Target::Refuse(e),
            };
            let route = match d {
                Decision::Route(r) => r,
                Decision::Refuse(m) => return refuse(m),
                // Transaction control, SET, cursors follow the cycle's other statements.
                Decision::Control(_) | Decision::Lookup { .. } => continue,
            };
            if route.flexible {
                continue;
            }
            if !item.executes && route.shards.len() > 1 {
                // A Parse or Describe whose parameters are not bound yet: any shard can
                // prepare it; the Bind that executes it decides.
                continue;
            }
            data += 1;
            if route.shards.len() == 1 {
                fixed.push(route.shards[0]);
            } else {
                fanout = Some((route.shards.clone(), item, route));
            }
        }
        fixed.sort_unstable();
        fixed.dedup();
        if let Some((shards, _, route)) = fanout {
            let names = self.names(&shards);
            if route.write {
                return refuse(format!(
                    "a write on several shards ({names}) must commit atomically, and two-phase commit is not available yet: fix the shard key"
                ));
            }
            if let Some(m) = &route.merge {
                return refuse(format!(
                    "a read on several shards ({names}) needs {m} merged across shards, which is not available yet: fix the shard key or add a hint"
                ));
            }
            if data > 1 || !fixed.is_empty() {
                return refuse("a query whose statements go to different shards");
            }
            if in_txn {
                return refuse(format!(
                    "a read on several shards ({names}) inside a transaction needs two-phase commit, which is not available yet"
                ));
            }
            return Target::FanOut(shards);
        }
        match (fixed.as_slice(), self.txn_shard) {
            ([], Some(t)) => Target::Shard(t),
            ([], None) => Target::Shard(self.cfg.default_shard),
            ([s], Some(t)) if *s != t => refuse(format!(
                "this transaction runs on shard \"{}\" and this statement needs shard \"{}\": transactions over several shards need two-phase commit, which is not available yet",
                self.cfg.shards[t].name, self.cfg.shards[*s].name
            )),
            ([s], _) => Target::Shard(*s),
            (many, _) => refuse(format!(
                "statements of one request go to different shards ({})",
                self.names(many)
            )),
        }
    }

    /// Whether text keys can be trusted: the router hashes UTF-8, so a client sending another
    /// encoding gets its text keys treated as unknown (fan-out or refusal), never misrouted.
    pub(super) fn text_keys_reliable(&self, plan: &Plan) -> bool {
        self.utf8_client
            || !matches!(
                plan,
                Plan::Sharded {
                    key_type: KeyType::Text,
                    ..
                }
            )
    }
}

#[cfg(test)]
mod tests {
    use super::shardgate_setting;

    #[test]
    fn shardgate_settings() {
        assert_eq!(
            shardgate_setting("SET shardgate.shard = 's1'"),
            Some(Some("s1".into()))
        );
        assert_eq!(
            shardgate_setting("set shardgate.shard to S2;"),
            Some(Some("S2".into()))
        );
        assert_eq!(
            shardgate_setting("SET SESSION shardgate.shard = \"x\""),
            Some(Some("x".into()))
        );
        assert_eq!(
            shardgate_setting("SET shardgate.shard TO DEFAULT"),
            Some(None)
        );
        assert_eq!(shardgate_setting("RESET shardgate.shard"), Some(None));
        assert_eq!(shardgate_setting("SET search_path = a"), None);
        assert_eq!(shardgate_setting("SET shardgate.shardx = 1"), None);
    }
}
