//! Routing: statement text (+ bound parameters) -> `Route`. Pure: no IO, no sockets.
//!
//! `key` is the shard-key value type; `hash` computes PostgreSQL's own hash-partition bucket
//! (and the classic md5 placement).

pub mod hash;
pub mod key;

pub use key::KeyValue;
