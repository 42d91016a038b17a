//! Versioned bucket maps (SPEC 4.1, 12): which shard owns each bucket of a hash scheme.
//!
//! Owns reading the live map of a scheme and seeding version 1 from the config at first
//! start. Shards are stored by name, not index, because indices change when `shards:` is
//! reordered while names do not. It does not switch versions (resharding's cutover will) and
//! does not compute buckets (`router::hash`).

use super::{Catalog, CatalogError};

/// The live bucket map of one scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketMap {
    /// Starts at 1; each cutover makes the next.
    pub version: i64,
    /// Shard name per bucket: `shards[bucket]`.
    pub shards: Vec<String>,
}

/// One statement, so the version and its rows come from one snapshot even while a cutover
/// commits. `holes` counts buckets missing between 0 and the highest one.
const READ_LIVE: &str = "
SELECT c.version,
       array_agg(m.shard ORDER BY m.bucket) FILTER (WHERE m.bucket IS NOT NULL),
       coalesce(max(m.bucket) + 1 - count(m.bucket), 0) + coalesce(min(m.bucket), 0)
FROM shardgate.bucket_map_current c
LEFT JOIN shardgate.bucket_map m ON m.scheme = c.scheme AND m.version = c.version
WHERE c.scheme = $1
GROUP BY c.version";

impl Catalog {
    /// The live map of `scheme`, `None` when it has never been seeded.
    pub async fn bucket_map(&self, scheme: &str) -> Result<Option<BucketMap>, CatalogError> {
        let client = self.client().await?;
        let row = client
            .query_opt(READ_LIVE, &[&scheme])
            .await
            .map_err(self.failed(format!("reading the bucket map of scheme {scheme}")))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let parsed: Result<(i64, Option<Vec<String>>, i64), _> =
            (|| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))();
        let (version, shards, holes) =
            parsed.map_err(self.failed(format!("reading the bucket map of scheme {scheme}")))?;
        let shards = shards.unwrap_or_default();
        if shards.is_empty() || holes != 0 {
            return Err(CatalogError::Corrupt {
                catalog: self.name().to_owned(),
                what: format!(
                    "bucket map of scheme {scheme} version {version} has missing buckets \
                     ({} rows; buckets must be 0..N without holes)",
                    shards.len()
                ),
            });
        }
        Ok(Some(BucketMap { version, shards }))
    }

    /// Store `shards` (shard name per bucket) as version 1 of `scheme`'s map unless the scheme
    /// already has a live map; either way return the live map. The config seeds the map only
    /// at first start: afterwards the catalog is the truth, and a config edit does not move
    /// buckets (resharding does).
    ///
    /// Race-safe without a lock: claiming the `bucket_map_current` row is the decision. A
    /// second proxy seeding at the same moment blocks on that row's key until the first
    /// commits, then finds it taken and reads the winner's map.
    pub async fn seed_bucket_map(
        &self,
        scheme: &str,
        shards: &[String],
    ) -> Result<BucketMap, CatalogError> {
        if shards.is_empty() {
            return Err(CatalogError::Invalid {
                catalog: self.name().to_owned(),
                what: format!("cannot seed an empty bucket map for scheme {scheme}"),
            });
        }
        if i32::try_from(shards.len()).is_err() {
            return Err(CatalogError::Invalid {
                catalog: self.name().to_owned(),
                what: format!("bucket map of scheme {scheme} has too many buckets"),
            });
        }
        let what = || format!("seeding the bucket map of scheme {scheme}");
        {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(self.failed(what()))?;
            let claimed = tx
                .query_opt(
                    "INSERT INTO shardgate.bucket_map_current (scheme, version) VALUES ($1, 1) \
                     ON CONFLICT (scheme) DO NOTHING RETURNING version",
                    &[&scheme],
                )
                .await
                .map_err(self.failed(what()))?;
            if claimed.is_some() {
                tx.execute(
                    "INSERT INTO shardgate.bucket_map (scheme, version, bucket, shard) \
                     SELECT $1, 1, (u.n - 1)::int, u.shard \
                     FROM unnest($2::text[]) WITH ORDINALITY AS u(shard, n)",
                    &[&scheme, &shards],
                )
                .await
                .map_err(self.failed(what()))?;
                tx.commit().await.map_err(self.failed(what()))?;
                tracing::info!(
                    catalog = %self.name(), scheme, buckets = shards.len(),
                    "bucket map seeded from the config (version 1)"
                );
                return Ok(BucketMap {
                    version: 1,
                    shards: shards.to_vec(),
                });
            }
            // Dropping `tx` rolls back the no-op insert; the pooled connection goes back.
        }
        self.bucket_map(scheme)
            .await?
            .ok_or_else(|| CatalogError::Corrupt {
                catalog: self.name().to_owned(),
                what: format!(
                    "scheme {scheme} has a live bucket map version but it vanished while seeding"
                ),
            })
    }
}
