//! The catalog's tables, created in one idempotent, race-safe step, and the schema version.
//!
//! Owns the DDL of schema `shardgate` and the upgrade rule (a catalog at a newer version than
//! this binary knows is refused, so an old proxy never writes to tables it does not
//! understand). It does not read or write any rows besides `meta.schema_version`.
//!
//! The bucket map is two tables: `bucket_map` keeps every version of every scheme's map, one
//! row per bucket, and `bucket_map_current` names the live version per scheme. Resharding
//! writes the next version's rows beforehand, then switches maps with a one-row update, so
//! every reader sees either the whole old map or the whole new one, and old versions remain
//! for audit and rollback until cleaned up.

use super::{Catalog, CatalogError};

/// The version this binary creates and understands (`shardgate.meta`, key `schema_version`).
pub const SCHEMA_VERSION: i32 = 2;

/// Serialises schema creation among proxies starting at once. `CREATE ... IF NOT EXISTS` alone
/// is not enough: two sessions creating the same table concurrently can both pass the
/// existence check and one then fails on a unique index of the system catalogs. The value is
/// "shardgat" in ASCII, unlikely to collide with an application's advisory locks.
const SCHEMA_LOCK: i64 = 0x7368_6172_6467_6174;

const DDL: &str = "
CREATE SCHEMA IF NOT EXISTS shardgate;
CREATE TABLE IF NOT EXISTS shardgate.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS shardgate.bucket_map (
    scheme text NOT NULL,
    version bigint NOT NULL CHECK (version >= 1),
    bucket int NOT NULL CHECK (bucket >= 0),
    shard text NOT NULL,
    PRIMARY KEY (scheme, version, bucket)
);
CREATE TABLE IF NOT EXISTS shardgate.bucket_map_current (
    scheme text PRIMARY KEY,
    version bigint NOT NULL CHECK (version >= 1)
);
CREATE TABLE IF NOT EXISTS shardgate.directory (
    scheme text NOT NULL,
    key text NOT NULL,
    shard text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scheme, key)
);
CREATE TABLE IF NOT EXISTS shardgate.twopc_decisions (
    gid text PRIMARY KEY,
    participants text[] NOT NULL,
    outcome text NOT NULL DEFAULT 'commit' CHECK (outcome IN ('commit', 'abort')),
    decided_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS shardgate.reshard_jobs (
    id bigserial PRIMARY KEY,
    scheme text NOT NULL,
    state text NOT NULL,
    detail text NOT NULL DEFAULT '',
    from_version bigint NOT NULL,
    key text,
    rows_copied bigint NOT NULL DEFAULT 0,
    bytes_copied bigint NOT NULL DEFAULT 0,
    lag_bytes bigint NOT NULL DEFAULT 0,
    pause_ms double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS reshard_jobs_one_open
    ON shardgate.reshard_jobs (scheme) WHERE state NOT IN ('done', 'aborted');
CREATE TABLE IF NOT EXISTS shardgate.reshard_moves (
    job bigint NOT NULL REFERENCES shardgate.reshard_jobs (id),
    bucket int NOT NULL,
    source text NOT NULL,
    target text NOT NULL,
    PRIMARY KEY (job, bucket)
);
CREATE TABLE IF NOT EXISTS shardgate.reshard_hold (
    job bigint PRIMARY KEY,
    scheme text NOT NULL,
    shards text[] NOT NULL,
    since timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS shardgate.reshard_acks (
    job bigint NOT NULL,
    proxy text NOT NULL,
    phase text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, proxy, phase)
);
CREATE TABLE IF NOT EXISTS shardgate.proxies (
    id text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);
";

impl Catalog {
    /// Create schema `shardgate` and its tables if they are missing; a no-op when they exist
    /// at this version. Safe to call from several proxies at once (they queue on an advisory
    /// lock held for the transaction). Fails with `SchemaTooNew` on a newer catalog.
    ///
    /// On a catalog already at this version only the lock and one read run, so a role without
    /// CREATE privilege on the database can start once someone has created the schema.
    pub async fn ensure_schema(&self) -> Result<(), CatalogError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.failed("starting the schema transaction"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(self.failed("waiting for the schema lock"))?;
        match read_version(&tx)
            .await
            .map_err(self.failed("reading the schema version"))?
        {
            None => {}
            Some(text) => match text.parse::<i32>() {
                Ok(v) if v == SCHEMA_VERSION => return Ok(()),
                Ok(v) if v > SCHEMA_VERSION => {
                    return Err(CatalogError::SchemaTooNew {
                        catalog: self.name().to_owned(),
                        found: text,
                        supported: SCHEMA_VERSION,
                    })
                }
                // Version 1 lacks the resharding tables; the DDL below only adds tables.
                Ok(_) => {}
                Err(_) => {
                    return Err(CatalogError::Corrupt {
                        catalog: self.name().to_owned(),
                        what: format!("shardgate.meta schema_version is {text:?}, not a number"),
                    })
                }
            },
        }
        tx.batch_execute(DDL)
            .await
            .map_err(self.failed("creating schema shardgate"))?;
        tx.execute(
            "INSERT INTO shardgate.meta (key, value) VALUES ('schema_version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&SCHEMA_VERSION.to_string()],
        )
        .await
        .map_err(self.failed("recording the schema version"))?;
        tx.commit()
            .await
            .map_err(self.failed("committing schema shardgate"))?;
        tracing::info!(catalog = %self.name(), version = SCHEMA_VERSION, "catalog schema created");
        Ok(())
    }

    /// The schema version recorded in the catalog, `None` before `ensure_schema`.
    pub async fn schema_version(&self) -> Result<Option<String>, CatalogError> {
        let client = self.client().await?;
        read_version(&*client)
            .await
            .map_err(self.failed("reading the schema version"))
    }
}

/// `meta.schema_version`, or `None` when the table does not exist. Two statements, because a
/// statement naming a missing table fails at parse time whatever its `CASE` says.
async fn read_version(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Option<String>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('shardgate.meta') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT value FROM shardgate.meta WHERE key = 'schema_version'",
            &[],
        )
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}
