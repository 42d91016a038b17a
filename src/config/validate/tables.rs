//! `tables:` -> [`TableConfig`]: table and key names, key types, and their fit with the scheme.
//!
//! Owns the naming rule (stored lowercase, `[a-z0-9_.]`), the key type aliases, and the check
//! that a range scheme's bounds can be compared with the table's key. It does not know whether
//! the table exists on the shards; `shardgate check` does.

use std::collections::BTreeMap;

use super::Problem;
use crate::config::raw::{NamedMap, RawTable};
use crate::config::{KeyType, RangeBound, Scheme, TableConfig};

pub(super) fn tables(
    raw: Option<NamedMap<RawTable>>,
    schemes: &BTreeMap<String, Scheme>,
) -> Result<BTreeMap<String, TableConfig>, Problem> {
    let mut out = BTreeMap::new();
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    for (name, table) in raw.map(|m| m.0).unwrap_or_default() {
        let path = format!("tables.{name}");
        let lower = table_name(&name).map_err(|r| Problem::new(&path, r))?;
        if let Some(first) = written.get(&lower) {
            return Err(Problem::new(
                &path,
                format!("same table as \"{first}\" (table names are not case-sensitive)"),
            ));
        }
        let validated = table_config(&table, schemes, &path)?;
        written.insert(lower.clone(), name);
        out.insert(lower, validated);
    }
    Ok(out)
}

fn table_config(
    t: &RawTable,
    schemes: &BTreeMap<String, Scheme>,
    path: &str,
) -> Result<TableConfig, Problem> {
    match t.reference {
        Some(true) => {
            for (key, present) in [
                ("scheme", t.scheme.is_some()),
                ("key", t.key.is_some()),
                ("key_type", t.key_type.is_some()),
            ] {
                if present {
                    return Err(Problem::new(
                        format!("{path}.{key}"),
                        format!("a reference table has no {key} (it is copied to every shard)"),
                    ));
                }
            }
            return Ok(TableConfig::Reference);
        }
        Some(false) => {
            return Err(Problem::new(
                format!("{path}.reference"),
                "reference: false means nothing; give scheme and key for a sharded table, or \
                 leave an unsharded table out",
            ))
        }
        None => {}
    }
    let Some(scheme) = &t.scheme else {
        return Err(Problem::new(
            path,
            "a table needs scheme and key (sharded) or reference: true",
        ));
    };
    if !schemes.contains_key(scheme) {
        return Err(Problem::new(
            format!("{path}.scheme"),
            format!("unknown scheme \"{scheme}\""),
        ));
    }
    let Some(key) = &t.key else {
        return Err(Problem::new(
            path,
            "a sharded table needs a key column (key: ...)",
        ));
    };
    let key = column_name(key).map_err(|r| Problem::new(format!("{path}.key"), r))?;
    let key_type = match &t.key_type {
        None => KeyType::Bigint,
        Some(text) => key_type(text).map_err(|r| Problem::new(format!("{path}.key_type"), r))?,
    };
    check_fit(scheme, schemes, key_type)
        .map_err(|r| Problem::new(format!("{path}.key_type"), r))?;
    Ok(TableConfig::Sharded {
        scheme: scheme.clone(),
        key,
        key_type,
    })
}

/// Postgres folds unquoted names to lowercase; so does the config. `schema.table` is allowed.
fn table_name(name: &str) -> Result<String, String> {
    let lower = name.to_lowercase();
    if lower.split('.').count() > 2 {
        return Err(format!(
            "table name \"{name}\" has more than one dot (write table or schema.table)"
        ));
    }
    for part in lower.split('.') {
        identifier(part).map_err(|why| format!("table name \"{name}\" {why}"))?;
    }
    Ok(lower)
}

fn column_name(name: &str) -> Result<String, String> {
    let lower = name.to_lowercase();
    identifier(&lower).map_err(|why| format!("column name \"{name}\" {why}"))?;
    Ok(lower)
}

fn identifier(part: &str) -> Result<(), &'static str> {
    match part.bytes().next() {
        None => Err("has an empty part"),
        Some(b'0'..=b'9') => Err("starts with a digit"),
        _ if !part
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_')) =>
        {
            Err("may contain only letters, digits and _ (quoted identifiers are not supported)")
        }
        _ => Ok(()),
    }
}

/// Postgres type names and their common aliases. int4 and int2 keys hash like int8 in
/// Postgres (`hashint4extended` agrees with `hashint8extended` on their values), so they are
/// bigint here.
fn key_type(text: &str) -> Result<KeyType, String> {
    match text.to_ascii_lowercase().as_str() {
        "bigint" | "int8" | "int" | "integer" | "int4" | "smallint" | "int2" => Ok(KeyType::Bigint),
        "text" | "varchar" => Ok(KeyType::Text),
        "uuid" => Ok(KeyType::Uuid),
        _ => Err(format!(
            "unknown key type \"{text}\" (expected bigint, text or uuid, or an alias: int, \
             integer, smallint, int8, int4, int2, varchar)"
        )),
    }
}

/// A range scheme compares keys with its bounds, so their kinds must agree. A directory scheme
/// routes unknown keys by its fallback, so the fallback must fit too.
fn check_fit(name: &str, schemes: &BTreeMap<String, Scheme>, key: KeyType) -> Result<(), String> {
    let (range_name, via) = match schemes.get(name) {
        Some(Scheme::Range(_)) => (name, String::new()),
        Some(Scheme::Directory(d)) => (
            d.fallback.as_str(),
            format!(" (the fallback of \"{name}\")"),
        ),
        _ => return Ok(()),
    };
    let Some(Scheme::Range(range)) = schemes.get(range_name) else {
        return Ok(());
    };
    let bound = range.ranges.iter().find_map(|r| r.below.as_ref());
    match (key, bound) {
        (KeyType::Uuid, _) => Err(format!(
            "a uuid key cannot use range scheme \"{range_name}\"{via}: ranges compare bigint or text keys"
        )),
        (KeyType::Text, Some(RangeBound::Int(_))) => Err(format!(
            "range scheme \"{range_name}\"{via} has integer bounds, which need a bigint key (key_type is text)"
        )),
        (KeyType::Bigint, Some(RangeBound::Text(_))) => Err(format!(
            "range scheme \"{range_name}\"{via} has string bounds, which need a text key (key_type is bigint)"
        )),
        _ => Ok(()),
    }
}
