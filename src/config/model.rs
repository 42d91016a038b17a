//! The validated configuration: the immutable snapshot every other module reads.
//!
//! Owns the types only. Parsing YAML and checking it live in `raw.rs` and `validate.rs`;
//! nothing here does IO. Shards, schemes and tables are referred to by index into
//! `Config::shards` (a `ShardId`) once validated, so no downstream module looks names up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Index of a shard in `Config::shards`.
pub type ShardId = usize;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this snapshot was loaded from (for messages and reload).
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    /// The database name clients connect to.
    pub database: String,
    pub admin: Option<AdminConfig>,
    pub auth_method: AuthMethod,
    pub users: Vec<UserConfig>,
    pub pool: PoolConfig,
    pub shards: Vec<ShardConfig>,
    pub catalog: CatalogRef,
    pub default_shard: ShardId,
    pub schemes: BTreeMap<String, Scheme>,
    pub tables: BTreeMap<String, TableConfig>,
    pub twopc: TwoPcConfig,
    pub limits: LimitsConfig,
    pub tls: Option<TlsConfig>,
    /// `log_level:` from the file (an `EnvFilter` directive); `RUST_LOG` wins when set.
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ScramSha256,
    Md5,
    Trust,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    pub name: String,
    pub password: Password,
}

/// A client password as written in `users:`.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    Plain(String),
    /// A stored `SCRAM-SHA-256$<iter>:<salt>$<storedkey>:<serverkey>` verifier (the text).
    ScramVerifier(String),
    /// A stored `md5<32 hex>` hash of password + user name.
    Md5Hash(String),
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, not even in debug dumps.
        match self {
            Password::Plain(_) => f.write_str("Plain(<redacted>)"),
            Password::ScramVerifier(_) => f.write_str("ScramVerifier(<redacted>)"),
            Password::Md5Hash(_) => f.write_str("Md5Hash(<redacted>)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Transaction,
    Session,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub mode: PoolMode,
    /// Most server connections per shard.
    pub size: u32,
    /// How long a statement may wait for a server connection (then 53300).
    pub checkout_timeout: Duration,
    /// How long connecting to a shard may take (then 08006).
    pub connect_timeout: Duration,
    /// Idle server connections older than this are closed (0 = never).
    pub idle_timeout: Duration,
}

/// How to reach one Postgres database (a shard or the catalog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// The URL as written (passwords must not be printed from it: use `redacted_url`).
    pub url: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    pub sslmode: SslMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardConfig {
    pub name: String,
    pub target: PgTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogRef {
    Shard(ShardId),
    Url(PgTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Hash(HashScheme),
    Range(RangeScheme),
    Directory(DirectoryScheme),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFunction {
    Postgres,
    Md5,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashScheme {
    pub function: HashFunction,
    /// B, a power of two (for `md5`: the number of shards, buckets are not used).
    pub buckets: u32,
    /// The shards this scheme spreads over, in order.
    pub shards: Vec<ShardId>,
    /// The seed bucket map: `map[bucket] = shard` (length `buckets`; empty for `md5`).
    pub map: Vec<ShardId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeScheme {
    pub ranges: Vec<RangeEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeEntry {
    /// Exclusive upper bound; `None` only on the last entry (the rest). When the last entry
    /// has a bound too, keys at or past it belong to no shard (see [`RangeScheme::shard_for`]).
    pub below: Option<RangeBound>,
    pub shard: ShardId,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RangeBound {
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryScheme {
    /// Name of the scheme used for keys that have no directory entry.
    pub fallback: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Bigint,
    Text,
    Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableConfig {
    Sharded {
        scheme: String,
        key: String,
        key_type: KeyType,
    },
    Reference,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoPcConfig {
    pub enabled: bool,
    pub orphan_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// 0 = no limit.
    pub max_shards_per_query: u32,
    /// Shard-statements per user per minute; 0 = no limit.
    pub fanout_budget_per_minute: u32,
    pub max_merge_rows: u64,
    /// Largest client message the proxy accepts (08P01 past it).
    pub max_message_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse plaintext client connections.
    pub require: bool,
}

impl Config {
    pub fn shard_id(&self, name: &str) -> Option<ShardId> {
        self.shards.iter().position(|s| s.name == name)
    }
}

impl RangeScheme {
    /// The shard owning `key`: the first range whose `below` is greater than the key (text
    /// compares bytewise), else the last range if it has no bound. `None` when the last range
    /// is bounded and the key is at or past it, or when the key's kind differs from the
    /// bounds' (validation rules that out for configured tables).
    pub fn shard_for(&self, key: &RangeBound) -> Option<ShardId> {
        for range in &self.ranges {
            match &range.below {
                None => return Some(range.shard),
                Some(below) if std::mem::discriminant(below) != std::mem::discriminant(key) => {
                    return None
                }
                Some(below) if key < below => return Some(range.shard),
                Some(_) => {}
            }
        }
        None
    }
}

impl PgTarget {
    /// The URL with any password replaced by `***`, for logs and admin output.
    pub fn redacted_url(&self) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}
