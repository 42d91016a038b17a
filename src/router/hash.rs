//! Shard functions: PostgreSQL's own hash-partition placement, bit for bit, and the classic
//! application-side md5 placement (SPEC 4.1).
//!
//! Owns the mapping key value -> bucket (`bucket_of`), key value -> shard index for `md5`
//! schemes (`md5_index`), and the SQL expression that recomputes a bucket on a shard
//! (`bucket_sql`). Does not own the bucket map (bucket -> shard) nor any IO: everything here
//! is a pure function, so the router can call it per row.
//!
//! The hash is the one `PARTITION BY HASH` uses: per key type PostgreSQL's extended hash
//! function seeded with `HASH_PARTITION_SEED`, folded into a row hash with `hash_combine64`,
//! then reduced modulo the number of partitions as an unsigned 64-bit integer. Results are
//! those of a little-endian server on every host; see `lookup3` for why and what a
//! big-endian server would do differently.
//!
//! Text keys are hashed as their UTF-8 bytes, which is what PostgreSQL does for a text column
//! with a deterministic collation in a UTF8 database. A key column with a nondeterministic
//! (ICU) collation hashes a sort key instead and is not supported.

mod lookup3;

#[cfg(test)]
mod tests;

pub use lookup3::{hash_bytes_extended, hash_uint32_extended};

use super::KeyValue;
use crate::config::KeyType;

/// The seed PostgreSQL passes to every extended hash function when placing a row in a hash
/// partition (`HASH_PARTITION_SEED` in `partition.h`).
pub const HASH_PARTITION_SEED: u64 = 0x7A5B_2236_7996_DCFD;

/// The constant `hash_combine64` adds; also appears in the SQL of [`bucket_sql`].
const COMBINE64_CONSTANT: u64 = 0x49a0_f4dd_15e5_a8e3;

/// PostgreSQL's extended hash of one key, as its hash opclass for the key's type computes it:
/// `hashint8extended`, `hashtextextended` or `uuid_hash_extended`.
///
/// `hashint8extended` folds the high half of the value into the low half (inverted for
/// negative values) before hashing 32 bits, so every value that fits in an `int4` (or an
/// `int2`) hashes exactly as `hashint4extended` would: one `Int` variant serves bigint, int and
/// smallint columns.
pub fn hash_key_extended(key: &KeyValue, seed: u64) -> u64 {
    match key {
        KeyValue::Int(value) => {
            let low = *value as u32;
            let high = (*value >> 32) as u32;
            let folded = if *value >= 0 { low ^ high } else { low ^ !high };
            hash_uint32_extended(folded, seed)
        }
        KeyValue::Text(text) => hash_bytes_extended(text.as_bytes(), seed),
        KeyValue::Uuid(bytes) => hash_bytes_extended(bytes, seed),
    }
}

/// PostgreSQL's `hash_combine64(a, b)`: how per-column hashes build a row hash (the first
/// column is combined into 0).
pub fn hash_combine64(a: u64, b: u64) -> u64 {
    a ^ b
        .wrapping_add(COMBINE64_CONSTANT)
        .wrapping_add(a << 54)
        .wrapping_add(a >> 7)
}

/// The remainder `r` such that a row with this key lands in the partition
/// `FOR VALUES WITH (MODULUS buckets, REMAINDER r)` of a table `PARTITION BY HASH (key)`.
///
/// # Panics
/// If `buckets` is 0. A validated config never has that (B is a power of two).
pub fn bucket_of(key: &KeyValue, buckets: u32) -> u32 {
    let row_hash = hash_combine64(0, hash_key_extended(key, HASH_PARTITION_SEED));
    // The remainder is below `buckets`, so it fits in u32.
    (row_hash % u64::from(buckets)) as u32
}

/// The shard index of the classic application-side router: the 128-bit big-endian integer of
/// `md5(canonical text of key)`, modulo the number of shards.
///
/// # Panics
/// If `shards` is 0. A validated config always has at least one shard.
pub fn md5_index(key: &KeyValue, shards: usize) -> usize {
    let digest = md5::compute(key.canonical_text().as_bytes());
    let value = u128::from_be_bytes(digest.0);
    // The remainder is below `shards`, so it fits in usize.
    (value % shards as u128) as usize
}

/// An SQL expression, over the key column `column`, that evaluates on a shard to the same
/// bucket as [`bucket_of`] (an `int`/`bigint` in `0..buckets`).
///
/// For `buckets` a power of two (what a validated config has) it uses only bigint arithmetic
/// on the built-in immutable hash function, so it is accepted in a publication's row filter:
/// with `h` the hash and `C` the `hash_combine64` constant, `(h + C) mod B` for
/// `B = 2^n` is `((h & (B-1)) + (C & (B-1))) & (B-1)`; masking first keeps the sum far from
/// bigint overflow, which SQL would report as an error rather than wrap.
///
/// For any other `buckets` (not used by configs, given for completeness) it computes the
/// unsigned 64-bit sum in `numeric`; that too avoids I/O casts and so stays row-filter safe.
///
/// # Panics
/// If `buckets` is 0.
pub fn bucket_sql(column: &str, key_type: KeyType, buckets: u32) -> String {
    assert!(buckets > 0, "bucket_sql: buckets must be positive");
    let function = match key_type {
        KeyType::Bigint => "hashint8extended",
        KeyType::Text => "hashtextextended",
        KeyType::Uuid => "uuid_hash_extended",
    };
    // The seed is below 2^63, so it is a plain bigint literal.
    let hash = format!(
        "{function}({}, {HASH_PARTITION_SEED})",
        quote_identifier(column)
    );
    if buckets.is_power_of_two() {
        let mask = buckets - 1;
        format!("((({hash} & {mask}) + (x'{COMBINE64_CONSTANT:016x}'::bigint & {mask})) & {mask})")
    } else {
        // `h` as signed bigint; its unsigned value is h + 2^64 when negative. Adding 2^64
        // unconditionally and reducing mod 2^64 covers both signs, and the combine constant
        // rides along in the same sum.
        let two_64 = 1u128 << 64;
        format!(
            "((({hash}::numeric + {}) % {two_64}) % {buckets})::integer",
            two_64 + u128::from(COMBINE64_CONSTANT)
        )
    }
}

/// `name` as a double-quoted SQL identifier (embedded quotes doubled), so it means exactly
/// the column of that name whatever its case or characters.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
