//! Bad files, one per line, each with the exact message a person would see.

use super::{parse, source, SHARDS};

/// Appended to the two shards of `SHARDS` (so their first line is line 5).
const AFTER_SHARDS: &[(&str, &str)] = &[
    // Unknown keys, at any depth, with the key path.
    ("foo: 1",
     "foo: unknown field `foo`, expected one of `listen`, `metrics_listen`, `database`, `admin`, `auth_method`, `users`, `pool`, `shards`, `catalog`, `default_shard`, `schemes`, `tables`, `twopc`, `limits`, `tls`, `log_level` (line 5)"),
    ("pool: { sizee: 3 }",
     "pool.sizee: unknown field `sizee`, expected one of `mode`, `size`, `checkout_timeout`, `connect_timeout`, `idle_timeout` (line 5)"),
    ("schemes: { h: { type: hash, bukets: 4 } }",
     "schemes.h.bukets: unknown field `bukets`, expected one of `type`, `function`, `buckets`, `shards`, `map`, `ranges`, `fallback` (line 5)"),
    ("tables: { t: { scheme: h, key: id, shard: s0 } }",
     "tables.t.shard: unknown field `shard`, expected one of `scheme`, `key`, `key_type`, `reference` (line 5)"),
    ("auth_method: scram",
     "auth_method: unknown variant `scram`, expected one of `scram-sha-256`, `md5`, `trust` (line 5)"),
    ("pool: { size: -1 }",
     "pool.size: invalid type: integer `-1`, expected a whole number >= 0 (line 5)"),
    ("tables:\n  t: { reference: true }\n  t: { reference: true }",
     "tables.t: defined twice (a key may appear only once)"),
    // Unknown shard names wherever a shard is named.
    ("default_shard: s9", "default_shard: unknown shard \"s9\""),
    ("catalog: s9", "catalog: unknown shard \"s9\""),
    ("schemes: { r: { type: range, ranges: [{ below: 10, shard: s0 }, { shard: s9 }] } }",
     "schemes.r.ranges[1].shard: unknown shard \"s9\""),
    ("schemes: { h: { type: hash, buckets: 2, map: [{ buckets: 0, shard: s0 }, { buckets: 1, shard: s9 }] } }",
     "schemes.h.map[1].shard: unknown shard \"s9\""),
    ("schemes: { h: { type: hash, shards: [s0, s7] } }", "schemes.h.shards[1]: unknown shard \"s7\""),
    ("schemes: { h: { type: hash, shards: [s0, s0] } }", "schemes.h.shards[1]: shard \"s0\" is listed twice"),
    ("schemes: { h: { type: hash, buckets: 2, shards: [s0], map: [{ buckets: \"0-1\", shard: s1 }] } }",
     "schemes.h.map[0].shard: shard \"s1\" is not one of this scheme's shards (s0)"),
    // Hash schemes and bucket maps.
    ("schemes: { h: { type: hash, buckets: 1000 } }",
     "schemes.h.buckets: 1000 is not a power of two between 1 and 1048576 (for example 1024)"),
    ("schemes: { h: { type: hash, buckets: 0 } }",
     "schemes.h.buckets: 0 is not a power of two between 1 and 1048576 (for example 1024)"),
    ("schemes: { h: { type: hash, buckets: 1 } }", "schemes.h.buckets: 1 buckets cannot spread over 2 shards"),
    ("schemes: { h: { type: hash, function: md5, buckets: 16 } }",
     "schemes.h.buckets: function md5 has no buckets (the shard is md5(key) mod the number of shards)"),
    ("schemes: { h: { type: hash, function: md5, map: [] } }", "schemes.h.map: function md5 has no bucket map"),
    ("schemes: { h: { type: hash, buckets: 4, map: [{ buckets: \"0-1\", shard: s0 }] } }",
     "schemes.h.map: buckets 2-3 are not mapped to any shard"),
    ("schemes: { h: { type: hash, buckets: 4, map: [{ buckets: \"0-1\", shard: s0 }, { buckets: 3, shard: s1 }] } }",
     "schemes.h.map: bucket 2 is not mapped to any shard"),
    ("schemes: { h: { type: hash, buckets: 4, map: [{ buckets: \"0-2\", shard: s0 }, { buckets: \"2-3\", shard: s1 }] } }",
     "schemes.h.map[1].buckets: bucket 2 is already mapped by map[0]"),
    ("schemes: { h: { type: hash, buckets: 4, map: [{ buckets: \"0-4\", shard: s0 }] } }",
     "schemes.h.map[0].buckets: bucket 4 is out of range (this scheme has buckets 0-3)"),
    ("schemes: { h: { type: hash, buckets: 4, map: [{ buckets: \"3-0\", shard: s0 }] } }",
     "schemes.h.map[0].buckets: bucket range 3-0 runs backwards"),
    ("schemes: { h: { type: hash, buckets: 4, map: [{ buckets: \"zero-3\", shard: s0 }] } }",
     "schemes.h.map[0].buckets: invalid bucket range \"zero-3\": expected \"FIRST-LAST\" such as \"0-511\", or one bucket number"),
    ("schemes: { h: { type: hash, ranges: [] } }", "schemes.h.ranges: only range schemes take ranges"),
    // Range schemes.
    ("schemes: { r: { type: range, ranges: [{ below: 100, shard: s0 }, { below: 50, shard: s1 }] } }",
     "schemes.r.ranges[1].below: overlapping ranges: 50 is not greater than the previous bound 100"),
    ("schemes: { r: { type: range, ranges: [{ below: \"m\", shard: s0 }, { below: \"m\", shard: s1 }] } }",
     "schemes.r.ranges[1].below: overlapping ranges: \"m\" is not greater than the previous bound \"m\""),
    ("schemes: { r: { type: range, ranges: [{ below: 100, shard: s0 }, { below: \"z\", shard: s1 }] } }",
     "schemes.r.ranges[1].below: a string bound after integer bounds (all bounds must be integers, or all strings)"),
    ("schemes: { r: { type: range, ranges: [{ shard: s0 }, { below: 5, shard: s1 }] } }",
     "schemes.r.ranges[0].below: only the last range may omit below"),
    ("schemes: { r: { type: range, ranges: [] } }", "schemes.r.ranges: a range scheme needs at least one range"),
    ("schemes: { r: { type: range, ranges: [{ below: 1.5, shard: s0 }] } }",
     "schemes.r.ranges[0].below: invalid type: floating point `1.5`, expected an integer or a string (line 5)"),
    ("schemes: { r: { type: range, fallback: x, ranges: [{ shard: s0 }] } }",
     "schemes.r.fallback: only directory schemes take fallback"),
    // Directory schemes.
    ("schemes: { d: { type: directory, fallback: nope } }", "schemes.d.fallback: unknown scheme \"nope\""),
    ("schemes: { d: { type: directory, fallback: d } }",
     "schemes.d.fallback: \"d\" is a directory scheme; a fallback must be a hash or range scheme"),
    ("schemes: { d: { type: directory } }",
     "schemes.d.fallback: a directory scheme needs a fallback scheme for keys without an entry"),
    ("schemes: { \"by user\": { type: hash } }",
     "schemes.by user: scheme name \"by user\" may contain only letters, digits, _ and -"),
    // Tables.
    ("schemes: { by_user: { type: hash } }\ntables: { posts: { scheme: by_usr, key: user_id } }",
     "tables.posts.scheme: unknown scheme \"by_usr\""),
    ("schemes: { h: { type: hash } }\ntables: { t: { scheme: h, key: id, key_type: float } }",
     "tables.t.key_type: unknown key type \"float\" (expected bigint, text or uuid, or an alias: int, integer, smallint, int8, int4, int2, varchar)"),
    ("schemes: { r: { type: range, ranges: [{ below: 9, shard: s0 }, { shard: s1 }] } }\ntables: { t: { scheme: r, key: id, key_type: text } }",
     "tables.t.key_type: range scheme \"r\" has integer bounds, which need a bigint key (key_type is text)"),
    ("schemes: { r: { type: range, ranges: [{ below: \"m\", shard: s0 }, { shard: s1 }] } }\ntables: { t: { scheme: r, key: id } }",
     "tables.t.key_type: range scheme \"r\" has string bounds, which need a text key (key_type is bigint)"),
    ("schemes: { r: { type: range, ranges: [{ shard: s0 }] } }\ntables: { t: { scheme: r, key: id, key_type: uuid } }",
     "tables.t.key_type: a uuid key cannot use range scheme \"r\": ranges compare bigint or text keys"),
    ("schemes:\n  r: { type: range, ranges: [{ below: 9, shard: s0 }, { shard: s1 }] }\n  d: { type: directory, fallback: r }\ntables: { t: { scheme: d, key: slug, key_type: text } }",
     "tables.t.key_type: range scheme \"r\" (the fallback of \"d\") has integer bounds, which need a bigint key (key_type is text)"),
    ("tables: { countries: { reference: true, key: code } }",
     "tables.countries.key: a reference table has no key (it is copied to every shard)"),
    ("tables: { countries: { reference: false } }",
     "tables.countries.reference: reference: false means nothing; give scheme and key for a sharded table, or leave an unsharded table out"),
    ("schemes: { h: { type: hash } }\ntables: { t: { key: id } }", "tables.t: a table needs scheme and key (sharded) or reference: true"),
    ("schemes: { h: { type: hash } }\ntables: { t: { scheme: h } }", "tables.t: a sharded table needs a key column (key: ...)"),
    ("tables: { \"my-table\": { reference: true } }",
     "tables.my-table: table name \"my-table\" may contain only letters, digits and _ (quoted identifiers are not supported)"),
    ("tables: { a.b.c: { reference: true } }",
     "tables.a.b.c: table name \"a.b.c\" has more than one dot (write table or schema.table)"),
    ("tables:\n  Users: { reference: true }\n  users: { reference: true }",
     "tables.users: same table as \"Users\" (table names are not case-sensitive)"),
    // Users and admin.
    ("users: [{ name: app, password: md5a1d0c6e83f027327d8461063f4ac58a6 }]",
     "users[0].password: an md5 hash cannot be used with auth_method scram-sha-256 (SCRAM needs the plaintext password or a SCRAM-SHA-256 verifier: `shardgate hash-password` makes one)"),
    ("auth_method: md5\nusers: [{ name: app, password: \"SCRAM-SHA-256$4096:c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\" }]",
     "users[0].password: a SCRAM-SHA-256 verifier cannot be used with auth_method md5 (md5 needs the plaintext password or its md5 hash)"),
    ("users: [{ name: app, password: \"SCRAM-SHA-256$4096:c2FsdA==\" }]",
     "users[0].password: invalid SCRAM-SHA-256 verifier: missing the `$` before the keys (expected SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>)"),
    ("users: [{ name: app, password: a }, { name: app, password: b }]",
     "users[1].name: duplicate user \"app\" (also users[0])"),
    ("users: [{ name: app, password: \"\" }]", "users[0].password: the password is empty"),
    ("users: [{ name: app }]", "users[0]: missing field `password` (line 5)"),
    ("admin: { user: app, password: x }\nusers: [{ name: app, password: a }]",
     "admin.user: \"app\" is also users[0]; the admin console needs a user name of its own"),
    ("admin: { user: admin, password: \"\" }", "admin.password: the password is empty"),
    ("admin: { user: admin, password: md5a1d0c6e83f027327d8461063f4ac58a6 }",
     "admin.password: an md5 hash cannot be used with auth_method scram-sha-256 (SCRAM needs the plaintext password or a SCRAM-SHA-256 verifier: `shardgate hash-password` makes one)"),
    // Top-level values.
    ("database: shardgate", "database: \"shardgate\" is reserved for the admin console; choose another name"),
    ("listen: localhost:6432",
     "listen: \"localhost:6432\" is not an IP address and port (for example 127.0.0.1:6432 or \"[::1]:6432\")"),
    ("metrics_listen: 127.0.0.1:6432", "metrics_listen: same address as listen"),
    ("pool: { size: 0 }", "pool.size: must be at least 1"),
    ("pool: { checkout_timeout: 5 sec }",
     "pool.checkout_timeout: invalid duration \"5 sec\": expected a whole number followed by ms, s, m or h (for example 5s)"),
    ("pool: { connect_timeout: 5 }", "pool.connect_timeout: duration 5 has no unit: write 5s, 5ms, 5m or 5h"),
    ("pool: { mode: statement }",
     "pool.mode: unknown variant `statement`, expected `transaction` or `session` (line 5)"),
    ("twopc: { orphan_timeout: 0s }", "twopc.orphan_timeout: must be longer than 0"),
    ("limits: { max_merge_rows: 0 }",
     "limits.max_merge_rows: must be at least 1 (a merge buffers rows, so it has no \"no limit\")"),
    ("limits: { max_message_size: 64 }",
     "limits.max_message_size: 64 bytes is outside 1KiB-1GiB (sizes without a unit are bytes: 64MiB)"),
    ("limits: { max_shards_per_query: 5000000000 }", "limits.max_shards_per_query: must be at most 4294967295"),
    ("tls: { cert: server.crt }", "tls: missing field `key` (line 5)"),
    ("log_level: \"info,=[\"", "log_level: invalid filter \"info,=[\": invalid filter directive"),
];

/// Whole files, for problems in `shards:` itself or in the YAML.
const WHOLE_FILE: &[(&str, &str)] = &[
    ("", "the file is empty (at least `shards:` is required)"),
    ("# nothing but a comment\n", "the file is empty (at least `shards:` is required)"),
    ("listen: 127.0.0.1:6432\n", "shards: at least one shard is required"),
    ("shards: []\n", "shards: at least one shard is required"),
    ("a: b: c\n", "invalid YAML: mapping values are not allowed in this context at line 1 column 5"),
    ("shards:\n\t- { name: s0 }\n", "invalid YAML: found character that cannot start any token at line 2 column 1, while scanning for the next token"),
    ("pool: { size: 1 }\npool: { size: 2 }\n", "pool: defined twice (a key may appear only once)"),
    ("pool: { size: 1, size: 2 }\n", "pool.size: defined twice (a key may appear only once)"),
    ("- 1\n", "invalid type: sequence, expected a mapping (line 1)"),
    ("shards:\n  - { name: s0, url: \"postgres://a@h/d\" }\n  - { name: s0, url: \"postgres://a@h2/d\" }\n",
     "shards[1].name: duplicate shard name \"s0\" (also shards[0])"),
    ("shards:\n  - { name: \"\", url: \"postgres://a@h/d\" }\n", "shards[0].name: shard name is empty"),
    ("shards:\n  - { name: s0, url: \"postgres://a@h:port/d\" }\n",
     "shards[0].url: invalid URL: invalid value for option `port`"),
    ("shards:\n  - { name: s0, url: \"postgres://a@%2Fvar%2Frun%2Fpostgresql/d\" }\n",
     "shards[0].url: unix socket paths are not supported; give a TCP host name or address"),
    ("shards:\n  - { name: s0, url: \"postgres://h/d\" }\n",
     "shards[0].url: the URL names no user (postgres://user:password@host:port/dbname)"),
    ("shards:\n  - { name: s0 }\n", "shards[0]: missing field `url` (line 2)"),
    ("shards:\n  - { name: s0, url: \"postgres://a@h/shardgate\" }\n",
     "database: not set, and its default, the first shard's dbname \"shardgate\", is reserved for the admin console; set database: to another name"),
    ("shards: [ { name: s0\n", "invalid YAML: did not find expected ',' or '}' at line 2 column 1, while parsing a flow mapping at line 1 column 11"),
];

#[test]
fn bad_files_are_rejected_with_file_key_path_and_reason() {
    let cases = AFTER_SHARDS
        .iter()
        .map(|(extra, want)| (format!("{SHARDS}{extra}\n"), *want))
        .chain(
            WHOLE_FILE
                .iter()
                .map(|(text, want)| (text.to_string(), *want)),
        );
    let mut failures = Vec::new();
    let mut count = 0;
    for (text, want) in cases {
        count += 1;
        let want = format!("config/shardgate.yaml: {want}");
        match parse(&text, source()) {
            Ok(_) => failures.push(format!("accepted:\n{text}\n  want: {want}\n")),
            Err(e) if e.to_string() != want => {
                failures.push(format!("{text}\n   got: {e}\n  want: {want}\n"))
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(count >= 25);
}
