//! One raw, authenticated connection to a shard, and the protocol state that lives with it.
//!
//! Owns: connecting (plaintext or TLS per the URL's `sslmode`, see `stream`) and
//! authenticating as the shard URL's user (trust, cleartext, md5,
//! SCRAM-SHA-256 via `postgres-protocol`'s client mechanisms), the server's ParameterStatus
//! values and cancel key, which client statements are prepared on it (under server-side
//! names), the settings fingerprint last applied, and the response tracker. It does not
//! decide what to send: the session drives it. Rows are never decoded here.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::stream::ServerStream;

use crate::config::{PgTarget, ShardId};
use crate::protocol::track::{Expect, Tracker};
use crate::protocol::{build, decode, frame};

/// Server messages can be large (a DataRow holding a big value); Postgres caps them at 1 GB.
pub const MAX_SERVER_MESSAGE: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{message}")]
    Server { code: String, message: String },
    #[error("{0}")]
    Protocol(String),
    /// TLS could not be set up as the URL's `sslmode` asks.
    #[error("{0}")]
    Tls(String),
}

pub struct ServerConn {
    pub shard: ShardId,
    pub stream: ServerStream,
    pub rbuf: BytesMut,
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
    /// Current values of the parameters the server reports.
    pub params: HashMap<String, String>,
    pub tracker: Tracker,
    /// Transaction status from the last ReadyForQuery: `I`, `T` or `E`.
    pub tx_status: u8,
    /// Content hashes of client statements prepared here as `sg_<hash>`.
    pub statements: HashSet<u64>,
    /// Content hash of the statement in this connection's unnamed slot, if known.
    pub unnamed: Option<u64>,
    /// Fingerprint of the client settings applied on top of the startup defaults (0: none).
    pub settings_key: u64,
    /// Set when the connection may not be reused (IO error, protocol confusion).
    pub broken: bool,
    pub last_used: Instant,
}

/// The server-side name of a client statement with content hash `hash`.
pub fn statement_name(hash: u64) -> [u8; 19] {
    let mut out = *b"sg_0000000000000000";
    let hex = b"0123456789abcdef";
    for i in 0..16 {
        out[3 + i] = hex[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

impl ServerConn {
    /// Connect and authenticate; returns once the server is ready for queries.
    pub async fn connect(
        shard: ShardId,
        target: &PgTarget,
        timeout: Duration,
    ) -> Result<ServerConn, ConnError> {
        tokio::time::timeout(timeout, Self::connect_inner(shard, target))
            .await
            .map_err(|_| ConnError::Timeout(timeout))?
    }

    async fn connect_inner(shard: ShardId, target: &PgTarget) -> Result<ServerConn, ConnError> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
        tcp.set_nodelay(true)?;
        let addr = tcp.peer_addr()?;
        let stream = ServerStream::open(tcp, target).await?;
        let mut conn = ServerConn {
            shard,
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            addr,
            pid: 0,
            secret: 0,
            params: HashMap::new(),
            tracker: Tracker::default(),
            tx_status: b'I',
            statements: HashSet::new(),
            unnamed: None,
            settings_key: 0,
            broken: false,
            last_used: Instant::now(),
        };
        let mut out = BytesMut::new();
        let params = [
            ("user", target.user.as_str()),
            ("database", target.dbname.as_str()),
            ("client_encoding", "UTF8"),
        ];
        frontend::startup_message(params.iter().copied(), &mut out)?;
        conn.stream.write_all(&out).await?;
        conn.authenticate(target).await?;
        Ok(conn)
    }

    async fn read_message(&mut self) -> Result<Message, ConnError> {
        loop {
            if let Some(m) = Message::parse(&mut self.rbuf)? {
                return Ok(m);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ConnError::Protocol("server closed the connection".into()));
            }
        }
    }

    async fn authenticate(&mut self, target: &PgTarget) -> Result<(), ConnError> {
        let password = target.password.clone().unwrap_or_default();
        let mut scram: Option<ScramSha256> = None;
        let mut out = BytesMut::new();
        loop {
            out.clear();
            match self.read_message().await? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password.as_bytes(), &mut out)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = postgres_protocol::authentication::md5_hash(
                        target.user.as_bytes(),
                        password.as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut out)?;
                }
                Message::AuthenticationSasl(_) => {
                    let s = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut out)?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| ConnError::Protocol("unexpected SASL continue".into()))?;
                    s.update(body.data())?;
                    frontend::sasl_response(s.message(), &mut out)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| ConnError::Protocol("unexpected SASL final".into()))?;
                    s.finish(body.data())?;
                }
                Message::ParameterStatus(body) => {
                    if let (Ok(k), Ok(v)) = (body.name(), body.value()) {
                        self.params.insert(k.to_owned(), v.to_owned());
                    }
                }
                Message::BackendKeyData(body) => {
                    self.pid = body.process_id();
                    self.secret = body.secret_key();
                }
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ErrorResponse(body) => {
                    let (mut code, mut message) = (String::new(), String::new());
                    let mut fields = body.fields();
                    while let Ok(Some(f)) = fields.next() {
                        let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
                        match f.type_() {
                            b'C' => code = v,
                            b'M' => message = v,
                            _ => {}
                        }
                    }
                    return Err(ConnError::Server { code, message });
                }
                Message::NoticeResponse(_) => {}
                _ => {
                    return Err(ConnError::Protocol(
                        "unexpected message during authentication".into(),
                    ))
                }
            }
            if !out.is_empty() {
                self.stream.write_all(&out).await?;
            }
        }
    }

    /// Run the proxy's own statement(s) and wait for ReadyForQuery. Output is discarded except
    /// ParameterStatus (recorded) and the first error (returned). Only call when idle.
    pub async fn run_hidden(&mut self, sql: &str) -> Result<(), ConnError> {
        let mut out = BytesMut::new();
        build::query(&mut out, sql);
        self.stream.write_all(&out).await?;
        // A simple query drops the unnamed prepared statement.
        self.unnamed = None;
        let mut first_error = None;
        loop {
            let f = loop {
                if let Some(f) = frame::next_tagged(&mut self.rbuf, MAX_SERVER_MESSAGE)
                    .map_err(|e| ConnError::Protocol(e.to_string()))?
                {
                    break f;
                }
                if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                    return Err(ConnError::Protocol("server closed the connection".into()));
                }
            };
            match f.tag {
                b'E' if first_error.is_none() => {
                    let fields = decode::error_fields(f.body());
                    let get = |c: u8| {
                        fields
                            .iter()
                            .find(|(k, _)| *k == c)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    first_error = Some(ConnError::Server {
                        code: get(b'C'),
                        message: get(b'M'),
                    });
                }
                b'S' => self.note_parameter(f.body()),
                b'Z' => {
                    self.tx_status = f.body().first().copied().unwrap_or(b'I');
                    return first_error.map_or(Ok(()), Err);
                }
                _ => {}
            }
        }
    }

    pub fn note_parameter(&mut self, body: &[u8]) {
        if let Some((k, v)) = decode::parameter_status(body) {
            self.params.insert(k, v);
        }
    }

    /// Whether this connection can go back to the pool as it is.
    pub fn is_clean(&self) -> bool {
        !self.broken
            && self.tx_status == b'I'
            && self.tracker.is_idle()
            && !self.tracker.in_batch()
            && self.rbuf.is_empty()
    }

    /// A cheap check, without a round trip, that an idle connection is still open: the server
    /// sends nothing to an idle connection unless it is going away.
    pub fn looks_alive(&mut self) -> bool {
        self.stream.looks_alive()
    }

    /// Bring an abandoned connection back to idle (its client left mid-transaction), or mark
    /// it broken so the pool drops it. Bounded by `timeout`.
    pub async fn reset_after_abandon(&mut self, timeout: Duration) {
        if self.is_clean() {
            return;
        }
        // Only a connection that has answered everything can be reset with a ROLLBACK;
        // anything mid-request (COPY, an unfinished pipeline) is closed instead, which makes
        // the server roll back on its own.
        if self.broken
            || !self.tracker.is_idle()
            || self.tracker.in_batch()
            || !self.rbuf.is_empty()
        {
            self.broken = true;
            return;
        }
        match tokio::time::timeout(timeout, self.run_hidden("ROLLBACK")).await {
            Ok(Ok(())) if self.tx_status == b'I' => {}
            _ => self.broken = true,
        }
    }

    pub fn expect(&mut self, e: Expect) {
        self.tracker.push(e);
    }
}
