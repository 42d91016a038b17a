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
    /// The same cycle on several shards; reads are concatenated, writes summed. Outside a
    /// transaction a write runs as an implicit transaction committed with two-phase commit.
    Multi {
        shards: Vec<ShardId>,
        write: bool,
        /// False for maintenance commands, which cannot run inside a transaction.
        transactional: bool,
    },
    /// One multi-row INSERT split by rows: each shard gets its own statement text.
    Split(crate::router::split::SplitInsert, Vec<ShardId>),
    /// A read over several shards whose answers are merged (sorted, limited, aggregated):
    /// each shard runs `sql`, the rewrite of the client's statement.
    Merge {
        shards: Vec<ShardId>,
        sql: String,
        plan: crate::merge::MergePlan,
    },
    /// `COPY ... FROM STDIN` into a configured table over several shards: the session splits
    /// the client's rows by key.
    CopyIn {
        shards: Vec<ShardId>,
        spec: crate::router::analyze::CopySpec,
    },
    /// An extended-protocol batch whose statements each go to one shard, but not the same one
    /// (JDBC executeBatch, executemany): run statement by statement, in message order.
    PerStatement {
        write: bool,
    },
    /// Transaction control or proxy settings the proxy answers itself.
    Local(Vec<LocalAction>),
    /// COMMIT (`true`) or ROLLBACK of a transaction with several participants.
    EndMulti {
        commit: bool,
    },
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
    /// A statement already carried out (a multi-shard COMMIT): only its tag is left to send.
    Tag(&'static str),
}

impl LocalAction {
    pub fn tag(&self, aborted: bool) -> &'static str {
        match self {
            LocalAction::Begin(_) => "BEGIN",
            LocalAction::End { commit: true } if !aborted => "COMMIT",
            LocalAction::End { .. } => "ROLLBACK",
            LocalAction::SetShard(Some(_)) => "SET",
            LocalAction::SetShard(None) => "RESET",
            LocalAction::Tag(t) => t,
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
            let d = self.snap.router.decide(
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

    /// Route a whole cycle, apply the limits of SPEC 11 to a fan-out, and count it.
    pub(super) async fn target(&mut self, items: &[Item<'_>]) -> Target {
        self.routed = None;
        let mut t = self.route_cycle(items).await;
        // A resharding cutover holds some shards: wait, then route again on the new map.
        let mut waited = std::time::Duration::ZERO;
        while let Some(shard) = self.held_shard(&t) {
            if let Some(mine) = (0..self.backends.len())
                .find(|&s| self.backends[s].is_some() && self.proxy.holds().is_held(s))
            {
                // Waiting while holding a connection to a held shard would keep that shard
                // from draining: the cutover would wait for us and we for it.
                return Target::Refuse(PgError::error(
                    "40001",
                    format!(
                        "shard \"{}\" is paused for a resharding cutover and this transaction also holds shard \"{}\", which is being cut over; retry the transaction",
                        self.cfg.shards[shard].name, self.cfg.shards[mine].name
                    ),
                ));
            }
            if waited >= crate::frontend::holds::HOLD_WAIT_MAX {
                return Target::Refuse(PgError::error(
                    "55P03",
                    format!(
                        "shard \"{}\" has been held for a resharding cutover for more than {:?}",
                        self.cfg.shards[shard].name,
                        crate::frontend::holds::HOLD_WAIT_MAX
                    ),
                ));
            }
            let started = std::time::Instant::now();
            let mut changed = self.proxy.holds().subscribe();
            if self.proxy.holds().is_held(shard) {
                let left = crate::frontend::holds::HOLD_WAIT_MAX - waited;
                let _ = tokio::time::timeout(left, changed.changed()).await;
            }
            waited += started.elapsed();
            // Route on the newest snapshot: a reload may have happened during the wait.
            self.refresh();
            self.routed = None;
            t = self.route_cycle(items).await;
        }
        if matches!(
            t,
            Target::Refuse(_) | Target::Local(_) | Target::EndMulti { .. }
        ) {
            return t;
        }
        let Some((class, shards)) = self.routed else {
            return t;
        };
        // A cycle routed twice (after settling earlier answers) is charged and counted once.
        if self.counted_cycle == Some(self.sent_cycles) {
            return t;
        }
        let limits = &self.cfg.limits;
        if let Err((limit, e)) = self.proxy.inner.limits.admit(&self.user, shards, limits) {
            self.proxy.metrics().limit_rejected(limit);
            return Target::Refuse(e);
        }
        self.counted_cycle = Some(self.sent_cycles);
        self.proxy.metrics().query(class, shards);
        self.timings
            .push_back((self.sent_cycles + 1, std::time::Instant::now(), class));
        t
    }

    /// A shard of `t` that a cutover holds and this session holds no connection to.
    fn held_shard(&self, t: &Target) -> Option<ShardId> {
        let holds = self.proxy.holds();
        if !holds.any() {
            return None;
        }
        let shards: &[ShardId] = match t {
            Target::Shard(s) => std::slice::from_ref(s),
            Target::Multi { shards, .. }
            | Target::Merge { shards, .. }
            | Target::CopyIn { shards, .. }
            | Target::Split(_, shards) => shards,
            _ => &[],
        };
        shards
            .iter()
            .copied()
            .find(|&s| holds.is_held(s) && self.backends.get(s).is_none_or(|b| b.is_none()))
    }

    /// Route a whole cycle (the decision alone).
    async fn route_cycle(&mut self, items: &[Item<'_>]) -> Target {
        let executing: Vec<&Item> = items.iter().filter(|i| i.executes).collect();
        let no_txn = self.participants.is_empty() && self.deferred_begin.is_none();
        // Statements the proxy answers itself: only when the whole cycle is made of them.
        let local: Option<Vec<LocalAction>> = executing
            .iter()
            .map(|i| match i.plan.as_ref() {
                Plan::Control(Kind::Begin) if no_txn => Some(LocalAction::Begin(i.sql.to_string())),
                Plan::Control(Kind::Commit)
                    if self.participants.is_empty() && self.deferred_begin.is_some() =>
                {
                    Some(LocalAction::End { commit: true })
                }
                Plan::Control(Kind::Rollback)
                    if self.participants.is_empty() && self.deferred_begin.is_some() =>
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
        let ends: Option<bool> = match executing.as_slice() {
            [one] => match one.plan.as_ref() {
                Plan::Control(Kind::Commit) => Some(true),
                Plan::Control(Kind::Rollback) => Some(false),
                _ => None,
            },
            _ => None,
        };
        if self.proxy_aborted {
            // ROLLBACK TO SAVEPOINT recovers a failed transaction, as in Postgres.
            if let [one] = executing.as_slice() {
                if matches!(one.plan.as_ref(), Plan::Control(Kind::Savepoint))
                    && one
                        .sql
                        .trim_start()
                        .to_ascii_lowercase()
                        .starts_with("rollback")
                {
                    self.proxy_aborted = false;
                    return match self.participants.as_slice() {
                        [] => Target::Shard(self.cfg.default_shard),
                        [s] => Target::Shard(*s),
                        many => Target::Multi {
                            shards: many.to_vec(),
                            write: false,
                            transactional: true,
                        },
                    };
                }
            }
            return match ends {
                Some(_) if self.participants.len() > 1 => Target::EndMulti { commit: false },
                Some(_) => Target::Local(vec![LocalAction::End { commit: false }]),
                None => Target::Refuse(PgError::error(
                    "25P02",
                    "current transaction is aborted, commands ignored until end of transaction block",
                )),
            };
        }
        if self.participants.len() > 1 {
            if executing
                .iter()
                .any(|i| matches!(i.plan.as_ref(), Plan::Control(Kind::ClientTwoPhase)))
            {
                return refuse("PREPARE TRANSACTION in a transaction that spans several shards (shardgate runs two-phase commit itself)");
            }
            if let Some(commit) = ends {
                return Target::EndMulti { commit };
            }
            if executing.iter().any(|i| {
                matches!(
                    i.plan.as_ref(),
                    Plan::Control(Kind::Commit | Kind::Rollback)
                )
            }) {
                return refuse(
                    "COMMIT or ROLLBACK of a transaction on several shards must be sent on its own",
                );
            }
            if executing
                .iter()
                .all(|i| matches!(i.plan.as_ref(), Plan::Control(Kind::Savepoint)))
                && !executing.is_empty()
            {
                return Target::Multi {
                    shards: self.participants.clone(),
                    write: false,
                    transactional: true,
                };
            }
        }
        if items.iter().any(|i| shardgate_setting(&i.sql).is_some()) {
            return refuse("SET shardgate.shard must be sent on its own");
        }
        let in_txn = !no_txn;
        if let Some(s) = self.hint_shard {
            return self.join_check(s);
        }
        let mut fixed: Vec<ShardId> = Vec::new();
        let mut multi: Option<(Vec<ShardId>, crate::router::Route)> = None;
        let mut data = 0;
        let mut any_write = false;
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
                // Runs wherever the cycle's other statements run (a reference read).
                if item.executes && self.routed.is_none() {
                    self.routed = Some((route.class, 1));
                }
                continue;
            }
            if !item.executes {
                // A Parse or Describe only prepares: the Bind that executes it decides.
                continue;
            }
            data += 1;
            any_write |= route.write;
            if self.routed.is_none_or(|(_, n)| route.shards.len() >= n) {
                self.routed = Some((route.class, route.shards.len()));
            }
            if route.shards.len() == 1 {
                fixed.push(route.shards[0]);
            } else {
                multi = Some((route.shards.clone(), route));
            }
        }
        fixed.sort_unstable();
        fixed.dedup();
        if let Some((shards, route)) = multi {
            let names = self.names(&shards);
            if data > 1 || !fixed.is_empty() || executing.len() != 1 {
                // Answers of several shards are combined for exactly one statement.
                return refuse(
                    "a request whose statements go to different shards: send them one by one",
                );
            }
            if let (Some(_), false) = (&route.merge, route.write) {
                return match crate::router::rewrite::rewrite_fanout(&executing[0].sql) {
                    Ok(rw) => Target::Merge {
                        shards,
                        sql: rw.shard_sql,
                        plan: rw.plan,
                    },
                    Err(u) => refuse(format!(
                        "a read on several shards ({names}) with {u} cannot be merged across shards"
                    )),
                };
            }
            if let Some(m) = &route.merge {
                return refuse(format!(
                    "a read on several shards ({names}) needs {m} merged across shards, which is not available yet: fix the shard key or add a hint"
                ));
            }
            if route.write && !self.cfg.twopc.enabled {
                return refuse(format!(
                    "a write on several shards ({names}) needs two-phase commit, which is disabled (twopc.enabled: false)"
                ));
            }
            if !route.transactional && in_txn {
                return refuse(
                    "a maintenance command on several shards cannot run inside a transaction block",
                );
            }
            if route.write && in_txn && !self.cfg.twopc.enabled {
                return refuse(
                    "a transaction over several shards needs two-phase commit, which is disabled",
                );
            }
            if let Plan::CopyIn(spec) = executing[0].plan.as_ref() {
                return Target::CopyIn {
                    shards,
                    spec: spec.clone(),
                };
            }
            if let Some(rows) = &route.row_shards {
                // A multi-row INSERT: each shard gets its own rows.
                let [item] = executing.as_slice() else {
                    return refuse(
                        "a multi-row INSERT over several shards must be sent on its own",
                    );
                };
                if !self.simple_cycle {
                    return refuse(format!(
                        "a multi-row INSERT over several shards ({names}) through the extended protocol (send one row per statement, or use the simple protocol)"
                    ));
                }
                return match crate::router::split::split_insert(&item.sql, rows) {
                    Ok(split) => Target::Split(split, rows.clone()),
                    Err(m) => refuse(m),
                };
            }
            return Target::Multi {
                shards,
                write: route.write,
                transactional: route.transactional,
            };
        }
        match fixed.as_slice() {
            [] => Target::Shard(
                self.participants
                    .first()
                    .copied()
                    .unwrap_or(self.cfg.default_shard),
            ),
            [s] => self.join_check(*s),
            many if !self.simple_cycle && (self.cfg.twopc.enabled || !any_write) => {
                let _ = many;
                Target::PerStatement { write: any_write }
            }
            many => refuse(format!(
                "statements of one request go to different shards ({}): send them one by one",
                self.names(many)
            )),
        }
    }

    /// A single-shard cycle on `s`: inside a transaction that does not include `s` yet, `s`
    /// joins it, which needs two-phase commit to be enabled.
    fn join_check(&self, s: ShardId) -> Target {
        if !self.participants.is_empty()
            && !self.participants.contains(&s)
            && !self.cfg.twopc.enabled
        {
            return refuse(format!(
                "this transaction runs on shard \"{}\" and this statement needs shard \"{}\": transactions over several shards need two-phase commit, which is disabled (twopc.enabled: false)",
                self.cfg.shards[self.participants[0]].name, self.cfg.shards[s].name
            ));
        }
        Target::Shard(s)
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
