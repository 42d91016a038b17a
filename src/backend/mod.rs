//! Server side: raw, authenticated connections to shards and a pool per shard.
//!
//! Owns connecting, authenticating, pooling and per-connection protocol state. It does not
//! know about routing or SQL (it never imports a router) and never decodes rows: the session
//! writes client frames into a connection and reads server frames out of it.

pub mod conn;
pub mod pool;
pub mod stream;

pub use conn::{ConnError, ServerConn};
pub use pool::{PooledConn, ShardPool};
pub use stream::ServerStream;
