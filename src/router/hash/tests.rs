//! Known-answer tests for the shard functions.
//!
//! Every expected value below was read from a real server, PostgreSQL 15.18 on x86_64
//! (Debian build, `server_encoding` UTF8), with psql: the hash functions called directly
//! (`select hashint8extended(42, 0)`, `hashtextextended(s, seed)`, `uuid_hash_extended(u,
//! seed)`), partition remainders found with `satisfies_hash_partition(parent, B, r, key)` on
//! an empty `PARTITION BY HASH` table for every `r` in `0..B`, and md5 remainders computed in
//! SQL from `md5(text)` (four `('x' || substr(..))::bit(64)::bigint` pieces summed as
//! numeric, then `mod(v, n)`) and cross-checked with Python's `hashlib`. Server hashes are
//! signed bigints; they are stored as printed and compared as `i64`.
//! Whole-table placement against live partitions is `tests/hash_placement.rs`.

use super::*;

/// The seed as the signed bigint psql was given.
const S: u64 = HASH_PARTITION_SEED;

fn h(value: u64) -> i64 {
    value as i64
}

#[test]
fn seed_is_the_decimal_in_facts() {
    assert_eq!(HASH_PARTITION_SEED, 8_816_678_312_871_386_365);
}

/// `select k, hashint8extended(k, 0), hashint8extended(k, <S>), hashint8extended(k, 1),
/// hashint8extended(k, 4294967296)`: the last two seeds exercise only the low, only the
/// high half of the seed.
#[test]
fn hashint8extended_matches_server() {
    #[rustfmt::skip]
    let cases: &[(i64, [i64; 4])] = &[
        (0, [4154612158245552303, -4403592609991167795, 434346878670890809, 4567318049319083637]),
        (1, [-3670598878359251130, 5968994663651403477, -7620678293940249823, -4406712548492291368]),
        (-1, [-1888257769727981238, -5017072347659237694, 3987656643895367148, -8935529606657374257]),
        (42, [8010225493015854792, 7363975540656877951, 3812564155960986560, 4852417260654628415]),
        (-42, [8809670066178192187, 6660635123915733087, -6366388251206941686, -256374129576241813]),
        (2147483647, [-9109110466470504941, -6050265599104649060, 2560836655869490746, -5750278940672701286]),
        (-2147483648, [1977219185673256887, 4938542303000433043, 3044001184559810835, -893720521979811119]),
        (4294967296, [-3670598878359251130, 5968994663651403477, -7620678293940249823, -4406712548492291368]),
        (-4294967297, [495194309054116481, 2147707635919668551, -1813712187832781703, -2861603276969129938]),
        (i64::MAX, [1977219185673256887, 4938542303000433043, 3044001184559810835, -893720521979811119]),
        (i64::MIN, [-9109110466470504941, -6050265599104649060, 2560836655869490746, -5750278940672701286]),
    ];
    for (k, expected) in cases {
        let key = KeyValue::Int(*k);
        for (seed, want) in [0, S, 1, 1 << 32].into_iter().zip(expected) {
            assert_eq!(
                h(hash_key_extended(&key, seed)),
                *want,
                "key {k} seed {seed}"
            );
        }
    }
}

/// `select hashint4extended(42, <S>), hashint4extended(-42, <S>), hashint2extended(42, <S>)`:
/// int and smallint keys hash like the same value as bigint.
#[test]
fn small_integers_hash_like_int4() {
    assert_eq!(h(hash_uint32_extended(42, S)), 7363975540656877951);
    assert_eq!(
        h(hash_uint32_extended(-42i32 as u32, S)),
        6660635123915733087
    );
    assert_eq!(
        h(hash_key_extended(&KeyValue::Int(42), S)),
        7363975540656877951
    );
}

/// `select n, hashtextextended(s, 0), hashtextextended(s, <S>), hashtextextended(s, -1)
/// from (select substr('abc...z', 1, n) s from generate_series(0, 26) n) x`: every tail
/// length 0..=11, one and two full 12-byte blocks, and an all-ones seed.
#[test]
fn hash_bytes_extended_every_length_matches_server() {
    #[rustfmt::skip]
    let expected: [[i64; 3]; 27] = [
        [-6939563903564495251, -5700645584453517373, -5142811166230430645],
        [3591986179850072241, -6705225459120232837, 8688456822845412000],
        [2833316173711343549, 596009030900183869, 3639176434904646991],
        [-6747756470228489321, 3628778498291917250, 1911237551546830967],
        [-1038429303365892052, 4029384952263848046, -8506387423880103258],
        [3076356108696143428, 4809259092934399961, 1101614911744638770],
        [290958262752763840, -658605897836517514, -8726566599983568251],
        [-6158032784613548338, -1516236981150442578, 6620770052711690062],
        [-8882191227074733005, -7754745184861941070, 3589487173844465705],
        [-3278210106038014113, -7860738947571725408, -2999851607155231060],
        [-3183301415634409076, -8306284229451770207, -5021275161817138704],
        [3112909444737856467, -2046435308545367432, 2833918571160852060],
        [-7556637188122330412, -7876791541613377658, -3669402583748189229],
        [8871624171452417744, -6785754114725280077, 6205390682044465928],
        [4973135103275945525, -5209977316171801933, -8987595384538607212],
        [9043359162837317271, 3744103518171237272, -7615068487785081078],
        [878954068520307163, -2963246452690924729, 5590415279907605704],
        [981995727863167554, -4290088002765369671, -2953348790902433648],
        [484589330715449564, -3976194482402635722, -8506089820271521831],
        [-232611774418841497, 6411573653485454739, -1422852774862433387],
        [772495730612720881, -3730286019426601237, -558738407119253020],
        [7996419909667933074, -9009476528635760866, -2291028065551762409],
        [5065299895581918398, 1804191968730614896, -2645673675841555979],
        [-1198571854151947912, -7324642668702903167, 8540048242465105909],
        [-1933194731779935345, -10959101940276370, -1203456767747787834],
        [5649064133428767341, 1383018584709609407, -5957734741082924352],
        [-6612928417832572997, -7171292135076916904, -4178256369493887523],
    ];
    let alphabet = b"abcdefghijklmnopqrstuvwxyz";
    for (n, want) in expected.iter().enumerate() {
        let input = &alphabet[..n];
        for (seed, want) in [0, S, u64::MAX].into_iter().zip(want) {
            assert_eq!(
                h(hash_bytes_extended(input, seed)),
                *want,
                "len {n} seed {seed}"
            );
        }
    }
}

/// `select s, hashtextextended(s, 0), hashtextextended(s, <S>)` for non-ASCII text.
#[test]
fn hashtextextended_non_ascii_matches_server() {
    #[rustfmt::skip]
    let cases: &[(&str, i64, i64)] = &[
        ("café", 2866814374384725210, 3229754746392018114),
        ("🦀", -5067417385635878279, 1255201537425408073),
        ("naïve café ☕ 日本語", 2146080792145557618, -6980473515379737910),
        ("abc", -6747756470228489321, 3628778498291917250),
    ];
    for (s, zero, seeded) in cases {
        let key = KeyValue::Text((*s).to_string());
        assert_eq!(h(hash_key_extended(&key, 0)), *zero, "{s}");
        assert_eq!(h(hash_key_extended(&key, S)), *seeded, "{s}");
    }
}

fn uuid(text: &str) -> KeyValue {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("test uuid is hex");
    }
    KeyValue::Uuid(bytes)
}

/// `select u, uuid_hash_extended(u, 0), uuid_hash_extended(u, <S>)`.
#[test]
fn uuid_hash_extended_matches_server() {
    #[rustfmt::skip]
    let cases: &[(&str, i64, i64)] = &[
        ("00000000-0000-0000-0000-000000000000", -6859010066814654381, -5281082146396728638),
        ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 7543054272012930821, 424513190990560493),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", 293445543803463785, -148986464341306210),
    ];
    for (u, zero, seeded) in cases {
        assert_eq!(uuid(u).canonical_text(), *u);
        assert_eq!(h(hash_key_extended(&uuid(u), 0)), *zero, "{u}");
        assert_eq!(h(hash_key_extended(&uuid(u), S)), *seeded, "{u}");
    }
}

#[test]
fn hash_combine64_of_zero_adds_the_constant() {
    assert_eq!(hash_combine64(0, 0), 0x49a0f4dd15e5a8e3);
    assert_eq!(hash_combine64(0, u64::MAX), 0x49a0f4dd15e5a8e2);
    // a ^ (b + C + (a << 54) + (a >> 7)), wrapping.
    assert_eq!(hash_combine64(1, 0), 1 ^ (0x49a0f4dd15e5a8e3 + (1 << 54)));
}

/// Remainders from `satisfies_hash_partition(parent, B, r, key)` for B = 8, 10, 1024.
#[test]
fn bucket_of_matches_satisfies_hash_partition() {
    #[rustfmt::skip]
    let cases: Vec<(KeyValue, [u32; 3])> = vec![
        (KeyValue::Int(0), [0, 8, 432]),
        (KeyValue::Int(1), [0, 0, 952]),
        (KeyValue::Int(-1), [5, 9, 933]),
        (KeyValue::Int(42), [2, 4, 610]),
        (KeyValue::Int(-42), [2, 0, 322]),
        (KeyValue::Int(4294967296), [0, 0, 952]),
        (KeyValue::Int(-4294967297), [2, 4, 554]),
        (KeyValue::Int(i64::MAX), [6, 6, 630]),
        (KeyValue::Int(i64::MIN), [7, 9, 383]),
        (KeyValue::Text(String::new()), [6, 6, 166]),
        (KeyValue::Text("abc".into()), [5, 3, 677]),
        (KeyValue::Text("café".into()), [5, 7, 421]),
        (KeyValue::Text("🦀".into()), [4, 6, 300]),
        (KeyValue::Text("abcdefghijklm".into()), [6, 2, 918]),
        (uuid("00000000-0000-0000-0000-000000000000"), [5, 5, 933]),
        (uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), [0, 6, 464]),
        (uuid("ffffffff-ffff-ffff-ffff-ffffffffffff"), [1, 3, 385]),
    ];
    for (key, want) in &cases {
        let got = [bucket_of(key, 8), bucket_of(key, 10), bucket_of(key, 1024)];
        assert_eq!(got, *want, "{key:?}");
    }
}

/// md5 of the canonical text as a 128-bit big-endian integer, mod 2, 3, 4, 7, 10.
#[test]
fn md5_index_matches_sql_and_python() {
    assert_eq!(
        format!("{:x}", md5::compute(b"42")),
        "a1d0c6e83f027327d8461063f4ac58a6"
    );
    #[rustfmt::skip]
    let cases: Vec<(KeyValue, [usize; 5])> = vec![
        (KeyValue::Int(42), [0, 1, 2, 0, 4]),
        (KeyValue::Int(0), [0, 1, 2, 0, 0]),
        (KeyValue::Int(-1), [0, 1, 0, 3, 2]),
        (KeyValue::Int(i64::MAX), [1, 0, 3, 0, 9]),
        (KeyValue::Text("abc".into()), [0, 1, 2, 0, 0]),
        (KeyValue::Text("café".into()), [0, 2, 2, 5, 8]),
        (uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), [1, 1, 3, 3, 3]),
    ];
    for (key, want) in &cases {
        let got = [2, 3, 4, 7, 10].map(|n| md5_index(key, n));
        assert_eq!(got, *want, "{key:?}");
        assert_eq!(md5_index(key, 1), 0);
    }
}

#[test]
fn bucket_sql_shapes() {
    assert_eq!(
        bucket_sql("id", KeyType::Bigint, 8),
        "(((hashint8extended(\"id\", 8816678312871386365) & 7) \
         + (x'49a0f4dd15e5a8e3'::bigint & 7)) & 7)"
    );
    assert!(bucket_sql("Org \"X\"", KeyType::Text, 1024)
        .starts_with("(((hashtextextended(\"Org \"\"X\"\"\", 8816678312871386365) & 1023)"));
    assert!(bucket_sql("u", KeyType::Uuid, 1).contains("uuid_hash_extended(\"u\""));
    assert_eq!(
        bucket_sql("id", KeyType::Bigint, 10),
        "(((hashint8extended(\"id\", 8816678312871386365)::numeric \
         + 23752253665144318179) % 18446744073709551616) % 10)::integer"
    );
}
