//! Plan + parameter values + placement -> shards. Pure.
//!
//! Owns the sharding functions' application (hash buckets through the live bucket map, md5,
//! ranges, directory entries with their fallback) and the reason text `explain` prints. The
//! directory is consulted through [`DirectoryLookup`], so this stays free of IO: a key that is
//! not cached yields [`Decision::Lookup`] and the caller fetches it and routes again.

use std::collections::HashMap;
use std::sync::Arc;

use super::analyze::Plan;
use super::classify::{Hint, Kind};
use super::hash::{bucket_of, md5_index};
use super::keys::{param_array, param_value, parse_text, KeySource};
use super::KeyValue;
use crate::config::{Config, HashFunction, KeyType, RangeBound, Scheme, ShardId, TableConfig};

/// Parameter values bound to a statement (Bind), borrowed from the message.
#[derive(Debug, Clone, Default)]
pub struct Params<'a> {
    pub values: Vec<Option<&'a [u8]>>,
    pub binary: Vec<bool>,
    /// Parameter type OIDs the client declared in Parse (0 or missing: left to the server).
    pub types: Vec<u32>,
}

impl<'a> Params<'a> {
    /// From Bind's format codes (0, 1 or one per value) and values.
    pub fn new(formats: &[i16], values: Vec<Option<&'a [u8]>>) -> Self {
        let binary = (0..values.len())
            .map(|i| match formats.len() {
                0 => false,
                1 => formats[0] == 1,
                _ => formats.get(i) == Some(&1),
            })
            .collect();
        Params {
            values,
            binary,
            types: Vec::new(),
        }
    }

    /// Declared parameter types (from the statement's Parse).
    pub fn with_types(mut self, types: Vec<u32>) -> Self {
        self.types = types;
        self
    }

    /// Whether parameter `i` was declared with a type that is not the key's: its bytes then
    /// are not a value of the key type and must not be read as one.
    fn foreign_type(&self, i: usize, kt: KeyType) -> bool {
        let oid = self.types.get(i).copied().unwrap_or(0);
        let ok: &[u32] = match kt {
            KeyType::Bigint => &[20, 21, 23],
            KeyType::Text => &[25, 1043, 1042, 19],
            KeyType::Uuid => &[2950],
        };
        let arrays: &[u32] = match kt {
            KeyType::Bigint => &[1016, 1005, 1007],
            KeyType::Text => &[1009, 1015, 1014, 1003],
            KeyType::Uuid => &[2951],
        };
        oid != 0 && !ok.contains(&oid) && !arrays.contains(&oid)
    }

    /// `Some(None)`: the parameter is SQL NULL; `None`: not bound (explain without values).
    fn get(&self, i: usize) -> Option<Option<(&'a [u8], bool)>> {
        let v = self.values.get(i)?;
        Some(v.map(|b| (b, self.binary[i])))
    }
}

/// Where directory keys live, as far as the cache knows.
pub trait DirectoryLookup {
    /// `None`: not cached; `Some(None)`: cached, no entry (use the fallback scheme).
    fn lookup(&self, scheme: &str, key: &KeyValue) -> Option<Option<ShardId>>;
}

/// A lookup that knows nothing: every directory key must be fetched.
pub struct NoDirectory;

impl DirectoryLookup for NoDirectory {
    fn lookup(&self, _: &str, _: &KeyValue) -> Option<Option<ShardId>> {
        None
    }
}

/// The label a route carries in metrics and `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Single,
    Multi,
    All,
    Reference,
    Default,
}

impl RouteClass {
    pub fn label(self) -> &'static str {
        match self {
            RouteClass::Single => "single",
            RouteClass::Multi => "multi",
            RouteClass::All => "all",
            RouteClass::Reference => "reference",
            RouteClass::Default => "default",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Sorted, without duplicates, never empty.
    pub shards: Vec<ShardId>,
    pub class: RouteClass,
    pub write: bool,
    /// False for maintenance commands that cannot run inside a transaction.
    pub transactional: bool,
    /// What a fan-out of this statement would need merged, if anything.
    pub merge: Option<String>,
    /// Any one shard answers alike (no table, or a reference-table read): the session may
    /// send it to the shard its transaction already uses instead of `shards`.
    pub flexible: bool,
    /// For a multi-row INSERT: the shard of each VALUES row, in order.
    pub row_shards: Option<Vec<ShardId>>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Route(Route),
    Refuse(String),
    Lookup { scheme: String, key: KeyValue },
    Control(Kind),
}

/// The live placement: bucket maps by scheme (seeded from config, replaced from the catalog).
#[derive(Debug, Clone, Default)]
pub struct BucketMaps(pub HashMap<String, Arc<Vec<ShardId>>>);

impl BucketMaps {
    pub fn from_config(cfg: &Config) -> Self {
        BucketMaps(
            cfg.schemes
                .iter()
                .filter_map(|(name, s)| match s {
                    Scheme::Hash(h) if h.function == HashFunction::Postgres => {
                        Some((name.clone(), Arc::new(h.map.clone())))
                    }
                    _ => None,
                })
                .collect(),
        )
    }
}

pub struct Placer<'a, D: DirectoryLookup> {
    pub cfg: &'a Config,
    pub maps: &'a BucketMaps,
    pub dir: &'a D,
}

fn flexible(d: Decision) -> Decision {
    match d {
        Decision::Route(r) => Decision::Route(Route {
            flexible: true,
            ..r
        }),
        other => other,
    }
}

enum KeyShard {
    Shard(ShardId, String),
    Lookup(String, KeyValue),
    Refuse(String),
}

/// The distinct shards of a bucket map, sorted: one pass over the map (every statement that
/// cannot use its key asks, so no copy of the map and no sort of its 1024 entries).
fn distinct_shards(map: &[ShardId], shards: usize) -> Vec<ShardId> {
    let mut seen = vec![false; shards];
    let mut out_of_range = Vec::new();
    for &s in map {
        match seen.get_mut(s) {
            Some(x) => *x = true,
            None => out_of_range.push(s),
        }
    }
    let mut v: Vec<ShardId> = (0..shards).filter(|&s| seen[s]).collect();
    if !out_of_range.is_empty() {
        v.extend(out_of_range);
        v.sort_unstable();
        v.dedup();
    }
    v
}

impl<D: DirectoryLookup> Placer<'_, D> {
    /// The shard of one key of `scheme` (directory schemes consult `dir`, then the fallback).
    pub fn shard_of_key(&self, scheme: &str, key: &KeyValue) -> Result<ShardId, String> {
        match self.place_key(scheme, key, 0) {
            KeyShard::Shard(s, _) => Ok(s),
            KeyShard::Lookup(..) => Err(format!("scheme {scheme} needs a directory lookup")),
            KeyShard::Refuse(m) => Err(m),
        }
    }

    fn name(&self, s: ShardId) -> &str {
        &self.cfg.shards[s].name
    }

    /// Every shard a scheme can place a key on.
    fn scheme_shards(&self, scheme: &str) -> Vec<ShardId> {
        let mut v: Vec<ShardId> = match self.cfg.schemes.get(scheme) {
            Some(Scheme::Hash(h)) if h.function == HashFunction::Postgres => {
                let map = self
                    .maps
                    .0
                    .get(scheme)
                    .map(|m| m.as_slice())
                    .unwrap_or(&h.map);
                return distinct_shards(map, self.cfg.shards.len());
            }
            Some(Scheme::Hash(h)) => h.shards.clone(),
            Some(Scheme::Range(r)) => r.ranges.iter().map(|e| e.shard).collect(),
            // A directory entry may name any shard.
            _ => (0..self.cfg.shards.len()).collect(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }

    fn place_key(&self, scheme: &str, key: &KeyValue, depth: usize) -> KeyShard {
        match self.cfg.schemes.get(scheme) {
            Some(Scheme::Hash(h)) if h.function == HashFunction::Postgres => {
                let b = bucket_of(key, h.buckets);
                let map = self
                    .maps
                    .0
                    .get(scheme)
                    .map(|m| m.as_ref())
                    .unwrap_or(&h.map);
                match map.get(b as usize) {
                    Some(&s) => KeyShard::Shard(s, format!("bucket {b}/{}", h.buckets)),
                    None => KeyShard::Refuse(format!("bucket {b} of scheme {scheme} has no shard")),
                }
            }
            Some(Scheme::Hash(h)) => {
                let i = md5_index(key, h.shards.len());
                KeyShard::Shard(h.shards[i], format!("md5 index {i}"))
            }
            Some(Scheme::Range(r)) => {
                let bound = match key {
                    KeyValue::Int(i) => RangeBound::Int(*i),
                    KeyValue::Text(t) => RangeBound::Text(t.clone()),
                    KeyValue::Uuid(_) => {
                        return KeyShard::Refuse("uuid keys on a range scheme".into())
                    }
                };
                match r.shard_for(&bound) {
                    Some(s) => KeyShard::Shard(s, "range".into()),
                    None => KeyShard::Refuse(format!(
                        "key {} is beyond the last range of scheme {scheme}",
                        key.canonical_text()
                    )),
                }
            }
            Some(Scheme::Directory(d)) => match self.dir.lookup(scheme, key) {
                None => KeyShard::Lookup(scheme.to_owned(), key.clone()),
                Some(Some(s)) => KeyShard::Shard(s, "directory entry".into()),
                Some(None) if depth < 4 => match self.place_key(&d.fallback, key, depth + 1) {
                    KeyShard::Shard(s, why) => KeyShard::Shard(
                        s,
                        format!("no directory entry, fallback {}: {why}", d.fallback),
                    ),
                    other => other,
                },
                Some(None) => KeyShard::Refuse("directory fallbacks nest too deeply".into()),
            },
            None => KeyShard::Refuse(format!("unknown scheme {scheme}")),
        }
    }

    fn route_for(
        &self,
        shards: Vec<ShardId>,
        class: RouteClass,
        write: bool,
        merge: Option<String>,
        reason: String,
    ) -> Decision {
        let class = match (class, shards.len()) {
            (RouteClass::Multi | RouteClass::All, 1) => RouteClass::Single,
            (c, _) => c,
        };
        Decision::Route(Route {
            shards,
            class,
            write,
            transactional: true,
            merge,
            flexible: false,
            row_shards: None,
            reason,
        })
    }

    pub fn decide(&self, plan: &Plan, params: &Params) -> Decision {
        let all: Vec<ShardId> = (0..self.cfg.shards.len()).collect();
        let default = self.cfg.default_shard;
        match plan {
            Plan::Default(why) => self.route_for(
                vec![default],
                RouteClass::Default,
                false,
                None,
                why.to_string(),
            ),
            // SPEC: statements with no table go to the default shard (a function they call,
            // a sequence they advance, lives there).
            Plan::Anywhere => self.route_for(
                vec![default],
                RouteClass::Default,
                false,
                None,
                "statement names no table: default shard".into(),
            ),
            Plan::Reference {
                write: false,
                table,
            } => flexible(self.route_for(
                vec![default],
                RouteClass::Reference,
                false,
                None,
                format!("read of reference table {table}: any shard has it"),
            )),
            Plan::Reference { write: true, table } => self.route_for(
                all,
                RouteClass::Reference,
                true,
                None,
                format!("write to reference table {table}: every shard"),
            ),
            Plan::Broadcast { what } => {
                self.route_for(all, RouteClass::All, true, None, what.clone())
            }
            Plan::CopyIn(spec) => match &spec.scheme {
                Some(scheme) => self.route_for(
                    self.scheme_shards(scheme),
                    RouteClass::All,
                    true,
                    None,
                    format!(
                        "COPY into {}: rows split by key over every shard of scheme {scheme}",
                        spec.table
                    ),
                ),
                None => self.route_for(
                    all,
                    RouteClass::Reference,
                    true,
                    None,
                    format!(
                        "COPY into reference table {}: every row to every shard",
                        spec.table
                    ),
                ),
            },
            Plan::Maintenance => Decision::Route(Route {
                shards: all,
                class: RouteClass::All,
                write: false,
                transactional: false,
                merge: None,
                flexible: false,
                row_shards: None,
                reason: "maintenance command: every shard".into(),
            }),
            Plan::Control(k) => Decision::Control(*k),
            Plan::Refuse(m) => Decision::Refuse(m.clone()),
            Plan::Hinted(Hint::Shard(name)) => match self.cfg.shard_id(name) {
                Some(s) => self.route_for(
                    vec![s],
                    RouteClass::Single,
                    false,
                    None,
                    format!("hint shard={name}"),
                ),
                None => Decision::Refuse(format!("the hint names unknown shard \"{name}\"")),
            },
            Plan::Hinted(Hint::Key { key, table }) => match self.cfg.tables.get(table) {
                Some(TableConfig::Sharded {
                    scheme, key_type, ..
                }) => match parse_text(key, *key_type) {
                    Some(k) => self.keyed(
                        scheme,
                        table,
                        std::slice::from_ref(&KeySource::Literal(k)),
                        *key_type,
                        false,
                        None,
                        false,
                        params,
                    ),
                    None => Decision::Refuse(format!(
                        "the hint's key \"{key}\" is not a valid key of table \"{table}\""
                    )),
                },
                _ => Decision::Refuse(format!(
                    "the hint names \"{table}\", which is not a sharded table"
                )),
            },
            Plan::Sharded {
                scheme,
                table,
                key_type,
                keys,
                write,
                merge,
                must_be_single,
            } => match keys {
                None => self.route_for(
                    self.scheme_shards(scheme),
                    RouteClass::All,
                    *write,
                    merge.clone(),
                    format!("no usable shard key for {table}: every shard of scheme {scheme}"),
                ),
                Some(ks) => self.keyed(
                    scheme,
                    table,
                    ks,
                    *key_type,
                    *write,
                    merge.clone(),
                    *must_be_single,
                    params,
                ),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn keyed(
        &self,
        scheme: &str,
        table: &str,
        keys: &[KeySource],
        kt: KeyType,
        write: bool,
        merge: Option<String>,
        must_be_single: bool,
        params: &Params,
    ) -> Decision {
        let mut values = Vec::new();
        for k in keys {
            match k {
                KeySource::Literal(v) => values.push(v.clone()),
                KeySource::Param(i) | KeySource::AnyParam(i) if params.foreign_type(*i, kt) => {
                    return self.unknown(
                        scheme,
                        table,
                        write,
                        merge,
                        "parameter declared with another type",
                    )
                }
                KeySource::Param(i) => match params.get(*i) {
                    Some(Some((b, bin))) => match param_value(b, bin, kt) {
                        Some(v) => values.push(v),
                        None => {
                            return self.unknown(
                                scheme,
                                table,
                                write,
                                merge,
                                "parameter is not a valid key",
                            )
                        }
                    },
                    // NULL matches no row: a read may go anywhere; a write cannot be placed.
                    Some(None) if write => {
                        return Decision::Refuse(format!(
                            "a NULL value for the shard key of \"{table}\""
                        ))
                    }
                    Some(None) => {}
                    None => {
                        return self.unknown(
                            scheme,
                            table,
                            write,
                            merge,
                            "parameter value not known yet",
                        )
                    }
                },
                KeySource::AnyParam(i) => match params.get(*i) {
                    Some(Some((b, bin))) => match param_array(b, bin, kt) {
                        Some(vs) => values.extend(vs),
                        None => {
                            return self.unknown(
                                scheme,
                                table,
                                write,
                                merge,
                                "array parameter not readable",
                            )
                        }
                    },
                    Some(None) => {}
                    None => {
                        return self.unknown(
                            scheme,
                            table,
                            write,
                            merge,
                            "parameter value not known yet",
                        )
                    }
                },
            }
        }
        let mut shards = Vec::new();
        let mut reasons = Vec::new();
        for v in &values {
            match self.place_key(scheme, v, 0) {
                KeyShard::Shard(s, why) => {
                    if reasons.len() < 4 {
                        reasons.push(format!(
                            "{table} key {} -> {why} -> {}",
                            v.canonical_text(),
                            self.name(s)
                        ));
                    }
                    shards.push(s);
                }
                KeyShard::Lookup(scheme, key) => return Decision::Lookup { scheme, key },
                KeyShard::Refuse(m) => return Decision::Refuse(m),
            }
        }
        if shards.is_empty() {
            // Only NULL keys: no row can match; any single shard answers correctly.
            let s = self
                .scheme_shards(scheme)
                .first()
                .copied()
                .unwrap_or(self.cfg.default_shard);
            return self.route_for(
                vec![s],
                RouteClass::Single,
                write,
                merge,
                format!("{table}: NULL key matches no row"),
            );
        }
        let per_row = (write && values.len() > 1).then(|| shards.clone());
        shards.sort_unstable();
        shards.dedup();
        if must_be_single && shards.len() > 1 {
            return Decision::Refuse(format!(
                "a join or subquery across shards: its fixed keys of scheme {scheme} land on different shards"
            ));
        }
        let class = if shards.len() == 1 {
            RouteClass::Single
        } else {
            RouteClass::Multi
        };
        if values.len() > reasons.len() {
            reasons.push(format!("... {} keys in all", values.len()));
        }
        match self.route_for(shards, class, write, merge, reasons.join("; ")) {
            Decision::Route(r) => Decision::Route(Route {
                row_shards: per_row,
                ..r
            }),
            other => other,
        }
    }

    fn unknown(
        &self,
        scheme: &str,
        table: &str,
        write: bool,
        merge: Option<String>,
        why: &str,
    ) -> Decision {
        self.route_for(
            self.scheme_shards(scheme),
            RouteClass::All,
            write,
            merge,
            format!("{table}: {why}: every shard of scheme {scheme}"),
        )
    }
}

#[cfg(test)]
mod distinct_tests {
    use super::distinct_shards;

    #[test]
    fn distinct_shards_of_maps() {
        assert_eq!(distinct_shards(&[2, 0, 2, 0], 4), vec![0, 2]);
        assert_eq!(distinct_shards(&[1; 1024], 2), vec![1]);
        assert_eq!(distinct_shards(&[], 3), Vec::<usize>::new());
        // An id past the configured shards (never in a validated map) is still reported.
        assert_eq!(distinct_shards(&[5, 1, 5], 2), vec![1, 5]);
    }
}
