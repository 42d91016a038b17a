//! SQLSTATE codes that shardgate raises itself (SPEC section 13), plus the few Postgres codes
//! the proxy reuses. Errors from shards are forwarded with their own codes untouched.

/// A statement shardgate cannot run correctly across shards.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// A shard is unavailable.
pub const CONNECTION_FAILURE: &str = "08006";
/// Protocol violation by the client.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// Wrong password.
pub const INVALID_PASSWORD: &str = "28P01";
/// Unknown user / authorization refused.
pub const INVALID_AUTHORIZATION: &str = "28000";
/// Unknown database.
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// No server connection within `pool.checkout_timeout`.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// A limit of SPEC section 11.
pub const CONFIGURATION_LIMIT_EXCEEDED: &str = "53400";
/// `max_merge_rows` exceeded.
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
/// Statement cancelled.
pub const QUERY_CANCELED: &str = "57014";
/// The proxy is shutting down.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// Something inside the proxy went wrong (a bug, reported rather than panicking).
pub const INTERNAL_ERROR: &str = "XX000";
