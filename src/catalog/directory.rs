//! Directory entries (SPEC 4.3): `shardgate.directory (scheme, key, shard)`, and the
//! notification every change sends so proxies drop their cached copy.
//!
//! Owns reading and changing entries and the payload format of channel
//! [`DIRECTORY_CHANNEL`]: `<scheme>\n<key>`, or just `<scheme>` (meaning "every key of that
//! scheme") when the pair would not fit in a notification. Keys are stored as their canonical
//! text (`KeyValue::canonical_text`); turning command-line or SQL input into that text is the
//! caller's job. It does not move rows (`directory move` arrives with resharding).

use super::{Catalog, CatalogError, DirectoryCache};

/// The LISTEN/NOTIFY channel of directory changes.
pub const DIRECTORY_CHANNEL: &str = "shardgate_directory";

/// Postgres refuses a notification payload of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7999;

/// One row of `shardgate.directory`, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub key: String,
    pub shard: String,
    /// `updated_at` as Postgres prints it.
    pub updated_at: String,
}

/// The notification payload naming `key` of `scheme`.
/// Insert or replace an entry and notify, inside the caller's transaction (proxies hear of
/// it exactly when it commits).
pub(crate) async fn upsert_entry(
    tx: &tokio_postgres::Transaction<'_>,
    scheme: &str,
    key: &str,
    shard: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO shardgate.directory (scheme, key, shard) VALUES ($1, $2, $3) \
         ON CONFLICT (scheme, key) DO UPDATE SET shard = excluded.shard, updated_at = now()",
        &[&scheme, &key, &shard],
    )
    .await?;
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&DIRECTORY_CHANNEL, &payload(scheme, key)],
    )
    .await?;
    Ok(())
}

pub(crate) fn payload(scheme: &str, key: &str) -> String {
    if scheme.len() + 1 + key.len() <= MAX_PAYLOAD {
        format!("{scheme}\n{key}")
    } else {
        scheme.to_owned()
    }
}

impl Catalog {
    /// The shard `key` of `scheme` is pinned to, `None` when it has no entry (the fallback
    /// scheme decides).
    pub async fn directory_get(
        &self,
        scheme: &str,
        key: &str,
    ) -> Result<Option<String>, CatalogError> {
        let what = || format!("reading directory entry {key:?} of scheme {scheme}");
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT shard FROM shardgate.directory WHERE scheme = $1 AND key = $2",
                &[&scheme, &key],
            )
            .await
            .map_err(self.failed(what()))?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map_err(self.failed(what()))
    }

    /// Pin `key` of `scheme` to `shard` (insert or replace), and notify in the same
    /// transaction, so proxies hear of the change exactly when it is committed.
    pub async fn directory_set(
        &self,
        scheme: &str,
        key: &str,
        shard: &str,
    ) -> Result<(), CatalogError> {
        let what = || format!("setting directory entry {key:?} of scheme {scheme}");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed(what()))?;
        upsert_entry(&tx, scheme, key, shard)
            .await
            .map_err(self.failed(what()))?;
        tx.commit().await.map_err(self.failed(what()))?;
        tracing::info!(catalog = %self.name(), scheme, key, shard, "directory entry set");
        Ok(())
    }

    /// Remove the entry of `key` (its keys fall back to the fallback scheme). Returns whether
    /// there was one; only an actual removal is notified.
    pub async fn directory_delete(&self, scheme: &str, key: &str) -> Result<bool, CatalogError> {
        let what = || format!("deleting directory entry {key:?} of scheme {scheme}");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed(what()))?;
        let removed = tx
            .execute(
                "DELETE FROM shardgate.directory WHERE scheme = $1 AND key = $2",
                &[&scheme, &key],
            )
            .await
            .map_err(self.failed(what()))?;
        if removed > 0 {
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&DIRECTORY_CHANNEL, &payload(scheme, key)],
            )
            .await
            .map_err(self.failed(what()))?;
        }
        tx.commit().await.map_err(self.failed(what()))?;
        if removed > 0 {
            tracing::info!(catalog = %self.name(), scheme, key, "directory entry deleted");
        }
        Ok(removed > 0)
    }

    /// Up to `limit` entries of `scheme`, ordered by key (bytewise).
    pub async fn directory_list(
        &self,
        scheme: &str,
        limit: i64,
    ) -> Result<Vec<DirectoryEntry>, CatalogError> {
        let what = || format!("listing the directory of scheme {scheme}");
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key, shard, updated_at::text FROM shardgate.directory \
                 WHERE scheme = $1 ORDER BY key COLLATE \"C\" LIMIT $2",
                &[&scheme, &limit.max(0)],
            )
            .await
            .map_err(self.failed(what()))?;
        rows.iter()
            .map(|r| {
                Ok(DirectoryEntry {
                    key: r.try_get(0)?,
                    shard: r.try_get(1)?,
                    updated_at: r.try_get(2)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(self.failed(what()))
    }

    /// The shard of `key` through `cache`: a hit costs no IO; a miss reads the catalog and
    /// caches the answer (including "no entry") unless an invalidation happened meanwhile, so
    /// a change committed during the read is never hidden behind a stale cached value.
    pub async fn directory_lookup(
        &self,
        cache: &DirectoryCache,
        scheme: &str,
        key: &str,
    ) -> Result<Option<String>, CatalogError> {
        if let Some(hit) = cache.get(scheme, key) {
            return Ok(hit);
        }
        let ticket = cache.ticket();
        let found = self.directory_get(scheme, key).await?;
        cache.insert_if_unchanged(ticket, scheme, key, found.clone());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_names_the_key_or_only_the_scheme_when_too_long() {
        assert_eq!(payload("by_org", "acme"), "by_org\nacme");
        let long = "k".repeat(MAX_PAYLOAD);
        assert_eq!(payload("by_org", &long), "by_org");
    }
}
