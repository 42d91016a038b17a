//! The catalog: shardgate's durable state in a Postgres database, schema `shardgate` (SPEC 1,
//! 4.3, 7, 12), plus the in-memory directory cache kept fresh by LISTEN/NOTIFY.
//!
//! Owns the `Catalog` handle (a small bb8 pool of tokio-postgres clients), the schema and its
//! version (`schema`), the versioned bucket maps (`bucket_map`), directory entries
//! (`directory`), the bounded `DirectoryCache` (`cache`) and the task that invalidates it
//! (`listener`). This is control-plane code: it never runs on the client hot path except for a
//! directory cache miss, and it never touches the proxy's own server connections (`backend`).
//! It does not decide routes (`router`) nor run two-phase commit (`twopc`, which will use the
//! `twopc_decisions` table created here).

mod bucket_map;
mod cache;
mod decisions;
mod directory;
mod error;
mod listener;
mod reshard;
mod schema;

pub use bucket_map::BucketMap;
pub use cache::{CacheTicket, DirectoryCache};
pub use decisions::{Decision, Outcome};
pub use directory::{DirectoryEntry, DIRECTORY_CHANNEL};
pub use error::CatalogError;
pub use listener::spawn_directory_listener;
pub use reshard::{BucketMove, Hold, Job, Progress, HOLD_LEASE_SECS, RESHARD_CHANNEL};
pub use schema::SCHEMA_VERSION;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bb8::{ErrorSink, PooledConnection, RunError};
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PgTarget, SslMode};
use error::describe;

type Manager = PostgresConnectionManager<MakeRustlsConnect>;

/// Most pooled connections per proxy: catalog traffic is a trickle (directory cache misses,
/// decisions, the occasional CLI call), and every proxy instance holds its own pool.
const POOL_SIZE: u32 = 4;

/// A handle on one catalog database; clones share the pool.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    pool: bb8::Pool<Manager>,
    /// `PgTarget::redacted_url`, for every message.
    name: String,
    connect_timeout: Duration,
    /// The last error the pool met while opening connections in the background. bb8 reports
    /// such a failure to a checkout only as "timed out", so keep the cause for the message.
    last_error: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("catalog", &self.inner.name)
            .finish()
    }
}

impl Catalog {
    /// Open the pool and one connection now, so a wrong URL or password fails here with the
    /// server's reason rather than later as a timeout. `connect_timeout` bounds both opening a
    /// connection and waiting for a pooled one.
    pub async fn connect(
        target: &PgTarget,
        connect_timeout: Duration,
    ) -> Result<Self, CatalogError> {
        let name = target.redacted_url();
        let config = pg_config(target, connect_timeout, "shardgate-catalog");
        let last_error = Arc::new(Mutex::new(None));
        let pool = bb8::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(connect_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            .error_sink(Box::new(RememberError(last_error.clone())))
            .build_unchecked(PostgresConnectionManager::new(
                config,
                crate::tls::make_tls_connect(),
            ));
        let first = pool
            .dedicated_connection()
            .await
            .map_err(|e| CatalogError::Connect {
                catalog: name.clone(),
                detail: describe(&e),
            })?;
        // A full pool cannot happen on a fresh one; if it did, the connection is just dropped.
        let _ = pool.add(first);
        Ok(Catalog {
            inner: Arc::new(Inner {
                pool,
                name,
                connect_timeout,
                last_error,
            }),
        })
    }

    /// The catalog's redacted URL (for messages and logs).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A pooled client. Cancel-safe (dropping the future returns nothing to the pool twice).
    async fn client(&self) -> Result<PooledConnection<'_, Manager>, CatalogError> {
        self.inner.pool.get().await.map_err(|e| match e {
            RunError::User(e) => CatalogError::Connect {
                catalog: self.inner.name.clone(),
                detail: describe(&e),
            },
            RunError::TimedOut => CatalogError::Unavailable {
                catalog: self.inner.name.clone(),
                waited: self.inner.connect_timeout,
                last_error: self
                    .inner
                    .last_error
                    .lock()
                    .ok()
                    .and_then(|last| last.clone()),
            },
        })
    }

    /// A mapper from a tokio-postgres error to `CatalogError::Query` saying what we were doing.
    fn failed(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> CatalogError {
        let catalog = self.inner.name.clone();
        let what = what.into();
        move |e| CatalogError::Query {
            catalog,
            what,
            detail: describe(&e),
        }
    }
}

/// tokio-postgres's name for `mode`. With the connector from `tls::make_tls_connect`,
/// `prefer` uses TLS when the server offers it and falls back to plaintext otherwise, and
/// `require` fails when the server does not offer it; certificates are not verified.
pub(crate) fn ssl_mode(mode: SslMode) -> tokio_postgres::config::SslMode {
    match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require => tokio_postgres::config::SslMode::Require,
    }
}

/// tokio-postgres settings for `target`. Keepalives are tightened so a silently dead catalog
/// connection (the LISTEN one above all) is noticed in about a minute, not two hours.
pub(crate) fn pg_config(
    target: &PgTarget,
    connect_timeout: Duration,
    application_name: &str,
) -> tokio_postgres::Config {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&target.host)
        .port(target.port)
        .dbname(&target.dbname)
        .user(&target.user)
        .application_name(application_name)
        .ssl_mode(ssl_mode(target.sslmode))
        .connect_timeout(connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3)
        // Decision records are the two-phase commit point: they must be durable when the
        // insert returns, whatever the server's default.
        .options("-c synchronous_commit=on");
    if let Some(password) = &target.password {
        pg.password(password);
    }
    pg
}

/// bb8 error sink keeping the last background connection error.
#[derive(Debug, Clone)]
struct RememberError(Arc<Mutex<Option<String>>>);

impl ErrorSink<tokio_postgres::Error> for RememberError {
    fn sink(&self, error: tokio_postgres::Error) {
        let text = describe(&error);
        tracing::debug!(error = %text, "catalog pool: connection attempt failed");
        if let Ok(mut last) = self.0.lock() {
            *last = Some(text);
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(self.clone())
    }
}
