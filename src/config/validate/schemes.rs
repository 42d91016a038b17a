//! `schemes:` -> [`Scheme`]: hash bucket maps, range bounds, directory fallbacks.
//!
//! Owns the rules of SPEC section 4 that can be checked without data: bucket counts, a bucket
//! map that covers every bucket exactly once, strictly increasing range bounds of one kind, a
//! directory's fallback. It does not compute any hash (that is the router's) and does not
//! check key types, which belong to tables (`tables.rs`).

use std::collections::BTreeMap;

use super::targets::lookup;
use super::{valid_name, Problem};
use crate::config::raw::{
    NamedMap, RawHashFunction, RawMapEntry, RawScheme, RawSchemeType, Scalar,
};
use crate::config::{
    DirectoryScheme, HashFunction, HashScheme, RangeBound, RangeEntry, RangeScheme, Scheme,
    ShardConfig, ShardId,
};

pub(super) const DEFAULT_BUCKETS: u64 = 1024;
/// 2^20: the seed map is one entry per bucket, and so is the catalog's live map.
pub(super) const MAX_BUCKETS: u64 = 1 << 20;

pub(super) fn schemes(
    raw: Option<NamedMap<RawScheme>>,
    shards: &[ShardConfig],
) -> Result<BTreeMap<String, Scheme>, Problem> {
    let raw = raw.map(|m| m.0).unwrap_or_default();
    let kinds: Vec<(&str, RawSchemeType)> = raw.iter().map(|(n, s)| (n.as_str(), s.kind)).collect();
    let mut out = BTreeMap::new();
    for (name, scheme) in &raw {
        let path = format!("schemes.{name}");
        valid_name(name, "scheme").map_err(|r| Problem::new(&path, r))?;
        reject_foreign_keys(scheme, &path)?;
        let validated = match scheme.kind {
            RawSchemeType::Hash => Scheme::Hash(hash(scheme, shards, &path)?),
            RawSchemeType::Range => Scheme::Range(range(scheme, shards, &path)?),
            RawSchemeType::Directory => Scheme::Directory(directory(scheme, &kinds, &path)?),
        };
        out.insert(name.clone(), validated);
    }
    Ok(out)
}

/// Each scheme type has its own keys; one written on the wrong type is a mistake worth naming.
fn reject_foreign_keys(s: &RawScheme, path: &str) -> Result<(), Problem> {
    let owners: [(&str, bool, RawSchemeType); 6] = [
        ("function", s.function.is_some(), RawSchemeType::Hash),
        ("buckets", s.buckets.is_some(), RawSchemeType::Hash),
        ("shards", s.shards.is_some(), RawSchemeType::Hash),
        ("map", s.map.is_some(), RawSchemeType::Hash),
        ("ranges", s.ranges.is_some(), RawSchemeType::Range),
        ("fallback", s.fallback.is_some(), RawSchemeType::Directory),
    ];
    for (key, present, owner) in owners {
        if present && owner != s.kind {
            return Err(Problem::new(
                format!("{path}.{key}"),
                format!("only {} schemes take {key}", type_name(owner)),
            ));
        }
    }
    Ok(())
}

fn type_name(kind: RawSchemeType) -> &'static str {
    match kind {
        RawSchemeType::Hash => "hash",
        RawSchemeType::Range => "range",
        RawSchemeType::Directory => "directory",
    }
}

fn hash(s: &RawScheme, shards: &[ShardConfig], path: &str) -> Result<HashScheme, Problem> {
    let members = scheme_shards(s.shards.as_deref(), shards, path)?;
    if matches!(s.function, Some(RawHashFunction::Md5)) {
        // The classic application-side router: shard = md5(key) mod N. No buckets exist.
        if s.buckets.is_some() {
            return Err(Problem::new(
                format!("{path}.buckets"),
                "function md5 has no buckets (the shard is md5(key) mod the number of shards)",
            ));
        }
        if s.map.is_some() {
            return Err(Problem::new(
                format!("{path}.map"),
                "function md5 has no bucket map",
            ));
        }
        let buckets = u32::try_from(members.len())
            .map_err(|_| Problem::new(format!("{path}.shards"), "too many shards"))?;
        return Ok(HashScheme {
            function: HashFunction::Md5,
            buckets,
            shards: members,
            map: Vec::new(),
        });
    }
    let b = s.buckets.unwrap_or(DEFAULT_BUCKETS);
    if !b.is_power_of_two() || b > MAX_BUCKETS {
        return Err(Problem::new(
            format!("{path}.buckets"),
            format!("{b} is not a power of two between 1 and {MAX_BUCKETS} (for example 1024)"),
        ));
    }
    // Checked just above: b <= 2^20 fits in u32 and usize.
    let buckets = b as u32;
    let map = match &s.map {
        Some(entries) => explicit_map(entries, b as usize, &members, shards, path)?,
        None => {
            if b < members.len() as u64 {
                return Err(Problem::new(
                    format!("{path}.buckets"),
                    format!("{b} buckets cannot spread over {} shards", members.len()),
                ));
            }
            let n = members.len();
            (0..b as usize)
                .map(|bucket| members[bucket * n / b as usize])
                .collect()
        }
    };
    Ok(HashScheme {
        function: HashFunction::Postgres,
        buckets,
        shards: members,
        map,
    })
}

/// `shards: [..]` of a hash scheme; absent means every shard, in `shards:` order.
fn scheme_shards(
    names: Option<&[String]>,
    shards: &[ShardConfig],
    path: &str,
) -> Result<Vec<ShardId>, Problem> {
    let Some(names) = names else {
        return Ok((0..shards.len()).collect());
    };
    if names.is_empty() {
        return Err(Problem::new(
            format!("{path}.shards"),
            "must name at least one shard",
        ));
    }
    let mut out: Vec<ShardId> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let id = lookup(shards, name, &format!("{path}.shards[{i}]"))?;
        if out.contains(&id) {
            return Err(Problem::new(
                format!("{path}.shards[{i}]"),
                format!("shard \"{name}\" is listed twice"),
            ));
        }
        out.push(id);
    }
    Ok(out)
}

/// Build `map[bucket] = shard` from `map: [{buckets: "0-511", shard: s0}, ...]`, requiring
/// every bucket exactly once and only the scheme's own shards.
fn explicit_map(
    entries: &[RawMapEntry],
    buckets: usize,
    members: &[ShardId],
    shards: &[ShardConfig],
    path: &str,
) -> Result<Vec<ShardId>, Problem> {
    let mut owner: Vec<Option<(ShardId, usize)>> = vec![None; buckets];
    for (i, entry) in entries.iter().enumerate() {
        let span_path = format!("{path}.map[{i}].buckets");
        let (first, last) =
            bucket_span(&entry.buckets, buckets).map_err(|r| Problem::new(&span_path, r))?;
        let shard_path = format!("{path}.map[{i}].shard");
        let shard = lookup(shards, &entry.shard, &shard_path)?;
        if !members.contains(&shard) {
            let names: Vec<&str> = members.iter().map(|&m| shards[m].name.as_str()).collect();
            return Err(Problem::new(
                shard_path,
                format!(
                    "shard \"{}\" is not one of this scheme's shards ({})",
                    entry.shard,
                    names.join(", ")
                ),
            ));
        }
        for (bucket, slot) in owner.iter_mut().enumerate().take(last + 1).skip(first) {
            if let Some((_, other)) = slot {
                return Err(Problem::new(
                    span_path,
                    format!("bucket {bucket} is already mapped by map[{other}]"),
                ));
            }
            *slot = Some((shard, i));
        }
    }
    if let Some(gap_start) = owner.iter().position(Option::is_none) {
        let gap_end = owner[gap_start..]
            .iter()
            .position(Option::is_some)
            .map_or(buckets - 1, |len| gap_start + len - 1);
        let which = if gap_start == gap_end {
            format!("bucket {gap_start} is")
        } else {
            format!("buckets {gap_start}-{gap_end} are")
        };
        return Err(Problem::new(
            format!("{path}.map"),
            format!("{which} not mapped to any shard"),
        ));
    }
    Ok(owner
        .into_iter()
        .flatten()
        .map(|(shard, _)| shard)
        .collect())
}

/// `"0-511"`, `"7"` or `7` -> inclusive bounds, checked against the bucket count.
fn bucket_span(value: &Scalar, buckets: usize) -> Result<(usize, usize), String> {
    let shape = "expected \"FIRST-LAST\" such as \"0-511\", or one bucket number";
    let number = |s: &str| s.trim().parse::<usize>().ok();
    let (first, last) = match value {
        Scalar::Int(n) => {
            let n = usize::try_from(*n).map_err(|_| format!("invalid bucket {n}: {shape}"))?;
            (n, n)
        }
        Scalar::Text(text) => {
            let parsed = match text.split_once('-') {
                Some((a, b)) => number(a).zip(number(b)),
                None => number(text).map(|n| (n, n)),
            };
            parsed.ok_or_else(|| format!("invalid bucket range \"{text}\": {shape}"))?
        }
    };
    if first > last {
        return Err(format!("bucket range {first}-{last} runs backwards"));
    }
    if last >= buckets {
        return Err(format!(
            "bucket {last} is out of range (this scheme has buckets 0-{})",
            buckets - 1
        ));
    }
    Ok((first, last))
}

fn range(s: &RawScheme, shards: &[ShardConfig], path: &str) -> Result<RangeScheme, Problem> {
    let raw = s.ranges.as_deref().unwrap_or_default();
    if raw.is_empty() {
        return Err(Problem::new(
            format!("{path}.ranges"),
            "a range scheme needs at least one range",
        ));
    }
    let mut ranges: Vec<RangeEntry> = Vec::with_capacity(raw.len());
    for (i, entry) in raw.iter().enumerate() {
        let below_path = format!("{path}.ranges[{i}].below");
        let shard = lookup(shards, &entry.shard, &format!("{path}.ranges[{i}].shard"))?;
        let below = match &entry.below {
            None if i + 1 < raw.len() => {
                return Err(Problem::new(
                    below_path,
                    "only the last range may omit below",
                ))
            }
            None => None,
            Some(Scalar::Int(n)) => Some(RangeBound::Int(i64::try_from(*n).map_err(|_| {
                Problem::new(&below_path, format!("{n} is out of range for a bigint"))
            })?)),
            Some(Scalar::Text(t)) => Some(RangeBound::Text(t.clone())),
        };
        if let (Some(cur), Some(prev)) = (&below, ranges.last().and_then(|r| r.below.as_ref())) {
            check_order(prev, cur).map_err(|r| Problem::new(&below_path, r))?;
        }
        ranges.push(RangeEntry { below, shard });
    }
    Ok(RangeScheme { ranges })
}

fn check_order(prev: &RangeBound, cur: &RangeBound) -> Result<(), String> {
    match (prev, cur) {
        (RangeBound::Int(_), RangeBound::Text(_)) => Err(
            "a string bound after integer bounds (all bounds must be integers, or all strings)"
                .into(),
        ),
        (RangeBound::Text(_), RangeBound::Int(_)) => Err(
            "an integer bound after string bounds (all bounds must be integers, or all strings)"
                .into(),
        ),
        _ if cur <= prev => Err(format!(
            "overlapping ranges: {} is not greater than the previous bound {}",
            show(cur),
            show(prev)
        )),
        _ => Ok(()),
    }
}

pub(super) fn show(bound: &RangeBound) -> String {
    match bound {
        RangeBound::Int(n) => n.to_string(),
        RangeBound::Text(t) => format!("\"{t}\""),
    }
}

fn directory(
    s: &RawScheme,
    kinds: &[(&str, RawSchemeType)],
    path: &str,
) -> Result<DirectoryScheme, Problem> {
    let fallback_path = format!("{path}.fallback");
    let Some(fallback) = &s.fallback else {
        return Err(Problem::new(
            fallback_path,
            "a directory scheme needs a fallback scheme for keys without an entry",
        ));
    };
    match kinds.iter().find(|(n, _)| n == fallback) {
        None => Err(Problem::new(
            fallback_path,
            format!("unknown scheme \"{fallback}\""),
        )),
        Some((_, RawSchemeType::Directory)) => Err(Problem::new(
            fallback_path,
            format!(
                "\"{fallback}\" is a directory scheme; a fallback must be a hash or range scheme"
            ),
        )),
        Some(_) => Ok(DirectoryScheme {
            fallback: fallback.clone(),
        }),
    }
}
