//! Routing: statement text (+ bound parameters) -> a [`Decision`]. Pure: no IO, no sockets.
//!
//! - `classify`: hints and the statement kinds sqlparser cannot or need not read;
//! - `analyze` + `scope`: text -> [`Plan`] (tables, keys, co-location), cached by text;
//! - `keys`: literals and bound parameters -> key values;
//! - `normalize`: integer literals -> parameters, so literal texts share a cached plan;
//! - `place`: plan + parameters + bucket map/directory -> shards, with a reason;
//! - `hash`, `key`: the sharding functions and the key value type.
//!
//! The session asks the router; the router never calls the session, the backend or the
//! catalog (directory entries come in through [`DirectoryLookup`]).

pub mod analyze;
pub mod classify;
pub mod hash;
pub mod key;
pub mod keys;
pub mod normalize;
pub mod place;
pub mod rewrite;
pub mod scope;
pub mod split;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use sqlparser::ast::ObjectName;

pub use analyze::Plan;
pub use key::KeyValue;
pub use place::{BucketMaps, Decision, DirectoryLookup, NoDirectory, Params, Route, RouteClass};

use crate::config::{Config, ShardId};
use scope::{ident_name, TableMeta, Tables};

/// How many statement texts the plan cache keeps before it starts over.
const PLAN_CACHE_SIZE: usize = 4096;

/// A cloneable handle: the config snapshot, live bucket maps and the plan cache.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<Config>,
    tables: ConfigTables,
    maps: ArcSwap<BucketMaps>,
    cache: Mutex<HashMap<Box<str>, Arc<Plan>>>,
}

/// The config's tables, looked up by relation name.
struct ConfigTables(HashMap<String, TableMeta>);

impl Tables for ConfigTables {
    fn lookup(&self, name: &ObjectName) -> Option<(String, TableMeta)> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(ident_name)
            .collect();
        let candidates: Vec<String> = match parts.as_slice() {
            [t] => vec![t.clone()],
            [s, t] if s == "public" => vec![format!("{s}.{t}"), t.clone()],
            [s, t] => vec![format!("{s}.{t}")],
            [_, s, t] => vec![format!("{s}.{t}"), t.clone()],
            _ => vec![],
        };
        candidates
            .into_iter()
            .find_map(|c| self.0.get(&c).map(|m| (c, m.clone())))
    }

    fn is_system(&self, name: &ObjectName) -> bool {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(ident_name)
            .collect();
        match parts.as_slice() {
            [s, _] | [_, s, _] => s == "pg_catalog" || s == "information_schema",
            [t] => t.starts_with("pg_"),
            _ => false,
        }
    }
}

impl Router {
    pub fn new(cfg: Arc<Config>) -> Router {
        let tables = ConfigTables(
            cfg.tables
                .iter()
                .map(|(n, t)| (n.clone(), TableMeta::from_config(t)))
                .collect(),
        );
        Router {
            inner: Arc::new(Inner {
                maps: ArcSwap::from_pointee(BucketMaps::from_config(&cfg)),
                tables,
                cfg,
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// The live bucket maps (for `SHOW BUCKETS`).
    pub fn bucket_maps(&self) -> BucketMaps {
        self.inner.maps.load().as_ref().clone()
    }

    /// Install the live bucket map of a hash scheme (from the catalog).
    pub fn set_bucket_map(&self, scheme: &str, map: Vec<ShardId>) {
        let mut maps = self.inner.maps.load().as_ref().clone();
        maps.0.insert(scheme.to_owned(), Arc::new(map));
        self.inner.maps.store(Arc::new(maps));
    }

    /// The plan of one statement's text, from the cache when it has been seen.
    pub fn plan(&self, sql: &str) -> Arc<Plan> {
        if let Some(p) = self
            .inner
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(sql).cloned())
        {
            return p;
        }
        let plan = Arc::new(analyze::analyze(sql, &self.inner.tables));
        if let Ok(mut c) = self.inner.cache.lock() {
            if c.len() >= PLAN_CACHE_SIZE {
                c.clear();
            }
            c.insert(sql.into(), plan.clone());
        }
        plan
    }

    /// A simple-protocol statement through the literal-normalised cache: the plan of its text
    /// with its integer literals as parameters (`normalize`), and those literals' byte ranges
    /// in `sql`, to bind as text parameters. Some only when that plan, with the literals
    /// bound, routes to exactly one shard by key, which is the decision the literal text
    /// itself gets; then the literal text need not be parsed. None sends the caller to
    /// [`Router::plan`].
    pub fn plan_normalized<D: DirectoryLookup>(
        &self,
        sql: &str,
        dir: &D,
    ) -> Option<(Arc<Plan>, Vec<Range<usize>>)> {
        let (text, literals) = normalize::normalize(sql)?;
        let plan = self.plan(&text);
        if !matches!(plan.as_ref(), Plan::Sharded { keys: Some(_), .. }) {
            return None;
        }
        let values = literals
            .iter()
            .map(|r| Some(&sql.as_bytes()[r.clone()]))
            .collect();
        match self.decide(&plan, &Params::new(&[], values), dir) {
            Decision::Route(r) if r.shards.len() == 1 && r.class == RouteClass::Single => {
                Some((plan, literals))
            }
            _ => None,
        }
    }

    /// Decide where a planned statement goes, given its parameters.
    pub fn decide<D: DirectoryLookup>(&self, plan: &Plan, params: &Params, dir: &D) -> Decision {
        let maps = self.inner.maps.load();
        place::Placer {
            cfg: &self.inner.cfg,
            maps: &maps,
            dir,
        }
        .decide(plan, params)
    }

    /// Where `key` of `scheme` lives when its directory entries (if any) say `entries`.
    pub fn shard_of_key<D: DirectoryLookup>(
        &self,
        scheme: &str,
        key: &KeyValue,
        dir: &D,
    ) -> Result<ShardId, String> {
        let maps = self.inner.maps.load();
        place::Placer {
            cfg: &self.inner.cfg,
            maps: &maps,
            dir,
        }
        .shard_of_key(scheme, key)
    }

    /// Text for `shardgate explain` and `SHOW ROUTE`.
    pub fn explain(&self, sql: &str, params: &Params) -> String {
        let plan = self.plan(sql);
        match self.decide(&plan, params, &NoDirectory) {
            Decision::Route(r) => {
                let names: Vec<&str> = r.shards.iter().map(|&s| self.inner.cfg.shards[s].name.as_str()).collect();
                format!(
                    "route: {} ({})\nshards: {}\nwrite: {}\nreason: {}\nmerge: {}",
                    r.class.label(),
                    if r.shards.len() == 1 { "one shard" } else { "fan-out" },
                    names.join(", "),
                    r.write,
                    r.reason,
                    match (&r.merge, r.shards.len()) {
                        (_, n) if n > 1 && r.write => "none; a write on several shards must commit atomically (two-phase commit)".to_string(),
                        (Some(m), n) if n > 1 => format!("needs {m} merged across shards"),
                        _ if r.shards.len() > 1 => "rows concatenated".to_string(),
                        _ => "none (forwarded as is)".to_string(),
                    }
                )
            }
            Decision::Refuse(m) => format!("route: refused (SQLSTATE 0A000)\nreason: {m}"),
            Decision::Lookup { scheme, key } => format!(
                "route: directory lookup\nreason: key {} of directory scheme {scheme} is looked up in the catalog (shardgate directory get {scheme} {})",
                key.canonical_text(),
                key.canonical_text()
            ),
            Decision::Control(k) => format!("route: session ({k:?})\nreason: transaction control and session commands follow the session's shards"),
        }
    }
}
