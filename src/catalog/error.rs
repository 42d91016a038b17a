//! `CatalogError`: everything that can go wrong talking to the catalog, classified where it is
//! born.
//!
//! Owns the messages (which catalog, what shardgate was doing, what Postgres said) and the
//! mapping to a SQLSTATE and a client-safe message. Catalogs are named by their redacted URL,
//! so no message carries a password. It does not log: the caller that handles an error does.

use std::time::Duration;

use crate::protocol::sqlstate;

/// A failure of a catalog operation. `catalog` is always `PgTarget::redacted_url`.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The first connection (or a new one for the pool) could not be opened.
    #[error("catalog {catalog}: cannot connect: {detail}")]
    Connect { catalog: String, detail: String },
    /// No pooled connection became available in time.
    #[error("catalog {catalog}: no connection within {waited:?}{}", last_error.as_ref().map(|e| format!(" (last connection error: {e})")).unwrap_or_default())]
    Unavailable {
        catalog: String,
        waited: Duration,
        last_error: Option<String>,
    },
    /// A statement failed; `what` says what shardgate was doing.
    #[error("catalog {catalog}: {what}: {detail}")]
    Query {
        catalog: String,
        what: String,
        detail: String,
    },
    /// The catalog was created by a newer shardgate whose tables this one does not know.
    #[error(
        "catalog {catalog}: schema shardgate is at version {found}, newer than this shardgate \
         understands ({supported}); upgrade shardgate"
    )]
    SchemaTooNew {
        catalog: String,
        found: String,
        supported: i32,
    },
    /// Stored data breaks an invariant shardgate keeps (a bucket map with holes, say).
    #[error("catalog {catalog}: {what}")]
    Corrupt { catalog: String, what: String },
    /// The caller asked for something that cannot be stored (an empty bucket map, say).
    #[error("catalog {catalog}: {what}")]
    Invalid { catalog: String, what: String },
}

impl CatalogError {
    /// The SQLSTATE a client sees when a routing decision needed the catalog and it failed.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            CatalogError::Connect { .. } | CatalogError::Unavailable { .. } => {
                sqlstate::CONNECTION_FAILURE
            }
            _ => sqlstate::INTERNAL_ERROR,
        }
    }

    /// What a client may be told: no URL, no server detail.
    pub fn client_message(&self) -> &'static str {
        match self.sqlstate() {
            sqlstate::CONNECTION_FAILURE => "the shardgate catalog is unavailable",
            _ => "the shardgate catalog failed; see the proxy's log",
        }
    }
}

/// The useful part of a tokio-postgres error: its `Display` alone says only "db error" or
/// "error connecting to server", so add the server's message and SQLSTATE, or the cause.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
