//! `router::hash` against PostgreSQL itself: for bigint, text and uuid keys, tables
//! `PARTITION BY HASH` with B = 8, 10 and 1024 partitions are filled with over 10,000 keys
//! each, and for every row the partition PostgreSQL chose (`tableoid`) must be the bucket
//! `bucket_of` computes, and `bucket_sql` evaluated on the server must agree too. The SQL form
//! must also be accepted as a publication row filter, which is why it exists.
//!
//! Not here: known-answer vectors and md5 placement (unit tests beside the code), and the
//! bucket map from buckets to shards (the router's tests).

mod common;

use shardgate::config::KeyType;
use shardgate::router::hash::{bucket_of, bucket_sql};
use shardgate::router::KeyValue;
use tokio_postgres::{Client, Row};

/// The partition counts checked; 10 is not a power of two, so `bucket_sql` takes its
/// numeric form there.
const BUCKET_COUNTS: [u32; 3] = [8, 10, 1024];

/// The key column. Mixed case, so `bucket_sql` is only right if it quotes the identifier.
const COLUMN: &str = "Key";

/// Pseudo-random but reproducible full-range bigints: the first 64 bits of `md5(g)`.
const MD5_BIGINT: &str = "('x' || substr(md5(g::text), 1, 16))::bit(64)::bigint";

/// One key type: its SQL type, how to generate keys, how to read one back.
struct Case {
    sql_type: &'static str,
    key_type: KeyType,
    /// A query whose single column `k` yields the keys (duplicates are fine).
    keys: String,
    /// The select-list expression, given the quoted key column, that `decode` reads back.
    fetch: fn(&str) -> String,
    decode: fn(&Row) -> KeyValue,
}

fn bigint_case() -> Case {
    Case {
        sql_type: "bigint",
        key_type: KeyType::Bigint,
        keys: format!(
            "select g::bigint from generate_series(-5000, 5000) g
             union all select {MD5_BIGINT} from generate_series(1, 5000) g
             union all select g::bigint * 4294967296 + g from generate_series(-200, 200) g
             union all select unnest(array[0, 1, -1, 2147483647, -2147483648, 2147483648,
                 -2147483649, 4294967295, 4294967296, -4294967296,
                 9223372036854775807, -9223372036854775808, -9223372036854775807]::bigint[])"
        ),
        fetch: |column| column.to_string(),
        decode: |row| KeyValue::Int(row.get(0)),
    }
}

fn text_case() -> Case {
    Case {
        sql_type: "text",
        key_type: KeyType::Text,
        keys: "select md5(g::text) from generate_series(1, 4000) g
             union all select g::text from generate_series(-1000, 1000) g
             union all select repeat('x', g) from generate_series(0, 100) g
             union all select 'café ' || g from generate_series(1, 1500) g
             union all select '🦀' || repeat('é', g % 13) || g from generate_series(1, 1500) g
             union all select '日本語' || md5(g::text) from generate_series(1, 1000) g
             union all select unnest(array['', ' ', 'café', 'naïve', '🦀', '🦀🦀', 'ÅÄÖ',
                 'a''quote', E'tab\\there', 'NULL'])"
            .to_string(),
        fetch: |column| column.to_string(),
        decode: |row| KeyValue::Text(row.get(0)),
    }
}

fn uuid_case() -> Case {
    Case {
        sql_type: "uuid",
        key_type: KeyType::Uuid,
        keys: "select gen_random_uuid() from generate_series(1, 8000) g
             union all select md5(g::text)::uuid from generate_series(1, 2000) g
             union all select unnest(array['00000000-0000-0000-0000-000000000000',
                 'ffffffff-ffff-ffff-ffff-ffffffffffff',
                 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']::uuid[])"
            .to_string(),
        fetch: |column| format!("uuid_send({column})"),
        decode: |row| {
            let bytes: Vec<u8> = row.get(0);
            KeyValue::Uuid(bytes.try_into().expect("uuid_send returns 16 bytes"))
        },
    }
}

async fn connect(server: usize, db: &str) -> Client {
    let url = common::cluster().servers[server].url("app", "app", db);
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// `t_b<B>` partitioned by hash into `t_b<B>_p<r>` for every remainder r.
fn partitioned_table_ddl(sql_type: &str, buckets: u32) -> String {
    let mut ddl = format!(
        "create table t_b{buckets} (\"{COLUMN}\" {sql_type} not null) \
         partition by hash (\"{COLUMN}\");\n"
    );
    for r in 0..buckets {
        ddl.push_str(&format!(
            "create table t_b{buckets}_p{r} partition of t_b{buckets} \
             for values with (modulus {buckets}, remainder {r});\n"
        ));
    }
    ddl
}

/// The remainder in a partition name `t_b<B>_p<r>`.
fn remainder_of(partition: &str) -> u32 {
    partition
        .rsplit_once("_p")
        .and_then(|(_, r)| r.parse().ok())
        .unwrap_or_else(|| panic!("unexpected partition name {partition}"))
}

/// Fill a `PARTITION BY HASH` table per bucket count with the case's keys, read every row
/// back with its partition and `bucket_sql`'s answer, and compare both with `bucket_of`.
async fn check_placement(server: usize, case: Case) {
    let db = common::fresh_db(&format!("hash_{}", case.sql_type));
    let client = connect(server, &db).await;
    let encoding = client
        .query_one("show server_encoding", &[])
        .await
        .expect("show server_encoding");
    assert_eq!(
        encoding.get::<_, String>(0),
        "UTF8",
        "text keys hash UTF-8 bytes"
    );

    let mut setup = format!(
        "create table keys (\"{COLUMN}\" {sql_type} not null);
         insert into keys select k from ({keys}) s(k);\n",
        sql_type = case.sql_type,
        keys = case.keys
    );
    for buckets in BUCKET_COUNTS {
        setup.push_str(&partitioned_table_ddl(case.sql_type, buckets));
        setup.push_str(&format!("insert into t_b{buckets} select * from keys;\n"));
    }
    client.batch_execute(&setup).await.expect("set up tables");

    let mut checked = Vec::new();
    for buckets in BUCKET_COUNTS {
        let expr = bucket_sql(COLUMN, case.key_type, buckets);
        let sql = format!(
            "select {fetch}, tableoid::regclass::text, ({expr})::integer \
             from t_b{buckets}",
            fetch = (case.fetch)(&format!("\"{COLUMN}\"")),
        );
        let rows = client
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(rows.len() >= 10_000, "only {} keys", rows.len());

        let mut mismatches = Vec::new();
        for row in &rows {
            let key = (case.decode)(row);
            let partition: String = row.get(1);
            let by_sql = row.get::<_, i32>(2) as u32;
            let placed = remainder_of(&partition);
            let computed = bucket_of(&key, buckets);
            if computed != placed || by_sql != placed {
                mismatches.push(format!(
                    "{key:?}: in {partition}, bucket_of {computed}, bucket_sql {by_sql}"
                ));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} of {} {} keys misplaced with B = {buckets}, e.g. {:?}",
            mismatches.len(),
            rows.len(),
            case.sql_type,
            &mismatches[..mismatches.len().min(5)]
        );

        // The reason bucket_sql exists: a publication may filter rows by bucket with it.
        client
            .batch_execute(&format!(
                "create publication pub_b{buckets} for table keys where (({expr}) = 1)"
            ))
            .await
            .unwrap_or_else(|e| panic!("bucket_sql rejected as a row filter ({expr}): {e}"));
        checked.push(rows.len());
    }
    eprintln!(
        "{}: rows checked for B = {BUCKET_COUNTS:?}: {checked:?}",
        case.sql_type
    );
}

// One key type per server, so the three tests run side by side without sharing a backend.

#[tokio::test]
async fn bigint_keys_land_where_bucket_of_says() {
    check_placement(0, bigint_case()).await;
}

#[tokio::test]
async fn text_keys_land_where_bucket_of_says() {
    check_placement(1, text_case()).await;
}

#[tokio::test]
async fn uuid_keys_land_where_bucket_of_says() {
    check_placement(2, uuid_case()).await;
}
