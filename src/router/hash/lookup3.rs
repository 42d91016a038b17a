//! Bob Jenkins' lookup3 hash in the 64-bit ("extended") form PostgreSQL uses for hash
//! partitioning: `hash_bytes_extended` and `hash_uint32_extended`.
//!
//! Owns the bit-level algorithm only. It does not know about key types, seeds of particular
//! callers or partitions; that is the parent module.
//!
//! Byte order: PostgreSQL reads the input four bytes at a time as native-endian words, so the
//! same text hashes differently on a big-endian server. This port always reads little-endian
//! words (`u32::from_le_bytes`), so on any host it reproduces what an x86_64 / aarch64
//! (little-endian) server computes. That is the right answer for the proxy: placement must
//! match the *shards'* byte order, not the proxy host's, and big-endian PostgreSQL servers
//! are practically extinct. A shard on a big-endian host would place text and uuid keys
//! differently (integers are unaffected: `hash_uint32_extended` never reads bytes).

/// lookup3's `mix`: reversibly scrambles the three state words between input blocks.
#[inline]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// lookup3's `final`: the last avalanche, after which `b` and `c` are the two result halves.
#[inline]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// The starting state: the golden-ratio constant plus the input length plus PostgreSQL's own
/// extra constant, in all three words; a non-zero seed is folded in with one `mix`.
fn initial_state(len: u32, seed: u64) -> (u32, u32, u32) {
    let start = 0x9e37_79b9_u32.wrapping_add(len).wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (start, start, start);
    // A zero seed skips the mix entirely, so `seed = 0` is not the same as "mixing in zero".
    if seed != 0 {
        a = a.wrapping_add((seed >> 32) as u32);
        b = b.wrapping_add(seed as u32);
        mix(&mut a, &mut b, &mut c);
    }
    (a, b, c)
}

/// The 64-bit result: `b` is the high half, `c` the low half.
fn result(b: u32, c: u32) -> u64 {
    (u64::from(b) << 32) | u64::from(c)
}

/// Little-endian word of up to four bytes (missing high bytes are zero).
fn le_word(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .rev()
        .fold(0u32, |acc, &byte| (acc << 8) | u32::from(byte))
}

/// PostgreSQL's `hash_bytes_extended(k, len, seed)` on a little-endian server.
pub fn hash_bytes_extended(k: &[u8], seed: u64) -> u64 {
    // PostgreSQL takes the length as a C `int`; varlena values are under 1 GB, so the
    // truncation below can only matter for inputs no Postgres datum can have.
    let (mut a, mut b, mut c) = initial_state(k.len() as u32, seed);

    let mut blocks = k.chunks_exact(12);
    for block in &mut blocks {
        a = a.wrapping_add(le_word(&block[0..4]));
        b = b.wrapping_add(le_word(&block[4..8]));
        c = c.wrapping_add(le_word(&block[8..12]));
        mix(&mut a, &mut b, &mut c);
    }

    // The last 0..=11 bytes fill `a`, then `b`, then the upper three bytes of `c`: the lowest
    // byte of `c` is left alone (lookup2 reserved it for the length; PostgreSQL kept the
    // layout). The final mix runs even when nothing is left, unlike lookup3's original.
    let tail = blocks.remainder();
    a = a.wrapping_add(le_word(&tail[..tail.len().min(4)]));
    if tail.len() > 4 {
        b = b.wrapping_add(le_word(&tail[4..tail.len().min(8)]));
    }
    if tail.len() > 8 {
        c = c.wrapping_add(le_word(&tail[8..]) << 8);
    }
    final_mix(&mut a, &mut b, &mut c);
    result(b, c)
}

/// PostgreSQL's `hash_bytes_uint32_extended(k, seed)`: a single 32-bit word, hashed as a
/// value (no byte order involved).
pub fn hash_uint32_extended(k: u32, seed: u64) -> u64 {
    let (mut a, mut b, mut c) = initial_state(4, seed);
    a = a.wrapping_add(k);
    final_mix(&mut a, &mut b, &mut c);
    result(b, c)
}
