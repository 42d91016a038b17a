//! The configuration file as written: serde types that mirror the YAML key for key.
//!
//! Owns the shape of the file: which keys exist, which are maps or lists, and which scalars
//! are strings or integers. Every struct denies unknown fields, and deserialization goes
//! through `serde_path_to_error` so a typo is reported at its key path (`pool.sizee`).
//! It deliberately does not judge values (durations, URLs, shard names, bucket maps): almost
//! every field is an `Option` or a loosely typed [`Scalar`] so that `validate` can give each
//! problem a reason in words and apply the defaults in one place.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawConfig {
    pub listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub database: Option<String>,
    pub admin: Option<RawAdmin>,
    pub auth_method: Option<RawAuthMethod>,
    pub users: Option<Vec<RawUser>>,
    pub pool: Option<RawPool>,
    pub shards: Option<Vec<RawShard>>,
    pub catalog: Option<String>,
    pub default_shard: Option<String>,
    pub schemes: Option<NamedMap<RawScheme>>,
    pub tables: Option<NamedMap<RawTable>>,
    pub twopc: Option<RawTwoPc>,
    pub limits: Option<RawLimits>,
    pub tls: Option<RawTls>,
    pub log_level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawAdmin {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub enum RawAuthMethod {
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "trust")]
    Trust,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawUser {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawPool {
    pub mode: Option<RawPoolMode>,
    pub size: Option<u64>,
    pub checkout_timeout: Option<Scalar>,
    pub connect_timeout: Option<Scalar>,
    pub idle_timeout: Option<Scalar>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawPoolMode {
    Transaction,
    Session,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawShard {
    pub name: String,
    pub url: String,
}

/// One entry of `schemes:`. The keys of all three types live in one struct so that a key that
/// belongs to another type gets a precise message from `validate` ("`ranges` is only for
/// range schemes") instead of serde's generic one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawScheme {
    #[serde(rename = "type")]
    pub kind: RawSchemeType,
    // hash
    pub function: Option<RawHashFunction>,
    pub buckets: Option<u64>,
    pub shards: Option<Vec<String>>,
    pub map: Option<Vec<RawMapEntry>>,
    // range
    pub ranges: Option<Vec<RawRange>>,
    // directory
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawSchemeType {
    Hash,
    Range,
    Directory,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawHashFunction {
    Postgres,
    Md5,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawMapEntry {
    /// `"0-511"`, `"7"` or `7`.
    pub buckets: Scalar,
    pub shard: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawRange {
    pub below: Option<Scalar>,
    pub shard: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawTable {
    pub scheme: Option<String>,
    pub key: Option<String>,
    /// A type name; aliases (`int`, `varchar`, ...) are resolved by `validate`.
    pub key_type: Option<String>,
    pub reference: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawTwoPc {
    pub enabled: Option<bool>,
    pub orphan_timeout: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawLimits {
    pub max_shards_per_query: Option<u64>,
    pub fanout_budget_per_minute: Option<u64>,
    pub max_merge_rows: Option<u64>,
    pub max_message_size: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub struct RawTls {
    pub cert: String,
    pub key: String,
    pub require: Option<bool>,
}

/// A scalar that may be written as an integer or a string (`below: 1000` or `below: "m"`,
/// `idle_timeout: 0` or `idle_timeout: 10m`). Floats, booleans and nulls are refused here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    Int(i128),
    Text(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A YAML mapping kept in file order, with duplicate keys rejected (a repeated table name
/// would otherwise silently replace the first one).
#[derive(Debug)]
pub struct NamedMap<T>(pub Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = NamedMap<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, T)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if entries.iter().any(|(n, _)| *n == name) {
                        // Fail while reading the value, so the error carries this entry's key
                        // path (`tables.users`) rather than the mapping's (`tables`).
                        return map.next_value_seed(Duplicate(std::marker::PhantomData));
                    }
                    let value = map.next_value::<T>()?;
                    entries.push((name, value));
                }
                Ok(NamedMap(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

const DEFINED_TWICE: &str = "defined twice (a key may appear only once)";

/// A value that refuses to be read: the second occurrence of a name in a [`NamedMap`].
struct Duplicate<T>(std::marker::PhantomData<T>);

impl<'de, T> de::DeserializeSeed<'de> for Duplicate<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<T, D::Error> {
        Err(de::Error::custom(DEFINED_TWICE))
    }
}

/// Parse YAML text into the raw shape, reporting the key path of the first problem.
pub fn from_yaml(text: &str) -> Result<RawConfig, Problem> {
    let blank_or_comment = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    if text.lines().all(blank_or_comment) {
        return Err(Problem {
            key_path: String::new(),
            reason: "the file is empty (at least `shards:` is required)".into(),
        });
    }
    // Malformed YAML is reported as such before any shape error it may cause further on; its
    // own message says where (line and column), and a key path would be a guess. Duplicate
    // keys also fail this first pass, but the typed pass below names their key path.
    if let Err(yaml) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        if !yaml.to_string().contains("duplicate entry with key") {
            return Err(Problem {
                key_path: String::new(),
                reason: format!("invalid YAML: {yaml}"),
            });
        }
    }
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let mut key_path = render_path(e.path());
        let mut reason = bare_message(e.inner(), e.path());
        // serde reports a repeated struct key at the struct; point at the key itself, and
        // drop the line, which is the struct's first line.
        if let Some(field) = reason
            .strip_prefix("duplicate field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| field.to_owned())
        {
            key_path = if key_path.is_empty() {
                field
            } else {
                format!("{key_path}.{field}")
            };
            reason = DEFINED_TWICE.to_owned();
        }
        Problem { key_path, reason }
    })
}

/// `shards[1].url` style; empty for the document root.
fn render_path(path: &serde_path_to_error::Path) -> String {
    render_segments(&path.iter().collect::<Vec<_>>())
}

fn render_segments(segments: &[&serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// serde_yaml_ng's message without its own path prefix and `at line L column C` suffix (the
/// key path already says where; the line is appended in our own words).
fn bare_message(err: &serde_yaml_ng::Error, path: &serde_path_to_error::Path) -> String {
    let mut msg = err.to_string();
    let location = err.location();
    if let Some(loc) = &location {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(stripped) = msg.strip_suffix(&suffix) {
            msg = stripped.to_owned();
        }
    }
    // serde_yaml_ng prefixes the path of the node it was reading, which is the full path or
    // one of its ancestors; try the longest first.
    let segments: Vec<_> = path.iter().collect();
    for len in (1..=segments.len()).rev() {
        let prefix = format!("{}: ", render_segments(&segments[..len]));
        if let Some(stripped) = msg.strip_prefix(&prefix) {
            msg = stripped.to_owned();
            break;
        }
    }
    // Serde names Rust types in its messages; say it in the file's terms.
    msg = msg.replace("expected u64", "expected a whole number >= 0");
    match location {
        // serde_yaml_ng marks a map entry's problems at the start of the map, which for a
        // repeated name would point at the first occurrence; the key path says enough.
        Some(_) if msg == DEFINED_TWICE => msg,
        Some(loc) => format!("{msg} (line {})", loc.line()),
        None => msg,
    }
}
