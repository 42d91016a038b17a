//! The opening of a client connection: SSL and GSSAPI negotiation, cancel requests, and the
//! startup packet, up to the point where authentication starts.
//!
//! An SSLRequest is answered `S` and the connection upgraded to TLS when the proxy has a
//! certificate (`tls:`), else `N`; GSSAPI encryption is never offered. With `tls.require`, a
//! startup packet on a plaintext connection is refused (28000); a cancel request is still
//! accepted in plaintext, as Postgres does (it carries only the cancel key). Every packet is
//! length-checked by `protocol::frame` before it is decoded.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::stream::ClientStream;
use crate::protocol::decode::{self, StartupRequest};
use crate::protocol::{frame, sqlstate, Frame, PgError};

/// What a new connection turned out to be.
pub enum Opening {
    Startup {
        params: Vec<(String, String)>,
    },
    Cancel {
        pid: i32,
        secret: Vec<u8>,
    },
    /// The client asked for TLS and the handshake failed (not TLS at all, no common cipher,
    /// a closed socket): nothing can be said to it any more; the caller closes it.
    HandshakeFailed(std::io::Error),
}

/// TLS towards clients, when `tls:` is configured: built from the config by `tls::acceptor`.
pub struct ClientTls {
    pub acceptor: TlsAcceptor,
    /// Refuse startup packets that do not come over TLS.
    pub require: bool,
}

fn violation(msg: impl Into<String>) -> PgError {
    PgError::fatal(sqlstate::PROTOCOL_VIOLATION, msg)
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, rbuf: &mut BytesMut) -> Result<(), PgError> {
    match stream.read_buf(rbuf).await {
        Ok(0) => Err(violation("client closed the connection during startup")),
        Ok(_) => Ok(()),
        Err(e) => Err(violation(format!("client read failed: {e}"))),
    }
}

/// Read the next startup-phase packet (startup, SSL/GSSENC request, cancel).
async fn next_request(
    stream: &mut ClientStream,
    rbuf: &mut BytesMut,
) -> Result<StartupRequest, PgError> {
    let packet = loop {
        match frame::next_startup(rbuf) {
            Ok(Some(p)) => break p,
            Ok(None) => fill(stream, rbuf).await?,
            Err(e) => return Err(violation(e.to_string())),
        }
    };
    decode::startup(&packet).map_err(|e| violation(e.to_string()))
}

/// Read packets until a startup packet or a cancel request arrives, upgrading the connection
/// to TLS on the way when the client asks and `tls` allows. Returns the connection as it
/// ended up (plaintext or TLS) with the outcome, so that an error can still be sent to it.
/// Not cancel-safe (a dropped call loses the connection), which is fine: callers drop it only
/// on the login timeout, and then close the connection anyway.
pub async fn negotiate(
    tcp: TcpStream,
    rbuf: &mut BytesMut,
    tls: Option<&ClientTls>,
) -> (ClientStream, Result<Opening, PgError>) {
    let mut stream = ClientStream::Plain(tcp);
    loop {
        let request = match next_request(&mut stream, rbuf).await {
            Ok(r) => r,
            Err(e) => return (stream, Err(e)),
        };
        match request {
            StartupRequest::Ssl | StartupRequest::GssEnc if !rbuf.is_empty() => {
                // Anything the client pipelined after the request would be encrypted data it
                // sent before our answer: refuse it, as Postgres does (CVE-2021-23214).
                let e = violation("received unencrypted data after SSL request");
                return (stream, Err(e));
            }
            StartupRequest::Ssl => match (stream, tls) {
                (ClientStream::Plain(mut tcp), Some(tls)) => {
                    if let Err(e) = tcp.write_all(b"S").await {
                        let e = violation(format!("client write failed: {e}"));
                        return (ClientStream::Plain(tcp), Err(e));
                    }
                    match tls.acceptor.accept(tcp).into_fallible().await {
                        Ok(t) => stream = ClientStream::Tls(Box::new(t)),
                        Err((e, tcp)) => {
                            return (ClientStream::Plain(tcp), Ok(Opening::HandshakeFailed(e)))
                        }
                    }
                }
                (s @ ClientStream::Tls(_), _) => {
                    // Postgres treats a second SSLRequest as an unknown protocol version.
                    let e = violation("SSL request received on an encrypted connection");
                    return (s, Err(e));
                }
                (s, None) => {
                    stream = s;
                    if let Err(e) = refuse_encryption(&mut stream).await {
                        return (stream, Err(e));
                    }
                }
            },
            StartupRequest::GssEnc => {
                if let Err(e) = refuse_encryption(&mut stream).await {
                    return (stream, Err(e));
                }
            }
            StartupRequest::Cancel { pid, secret } => {
                return (stream, Ok(Opening::Cancel { pid, secret }))
            }
            StartupRequest::Startup { .. }
                if !stream.is_tls() && tls.is_some_and(|t| t.require) =>
            {
                let e = PgError::fatal(
                    sqlstate::INVALID_AUTHORIZATION,
                    "this server requires TLS (SSL); connect with sslmode=require",
                );
                return (stream, Err(e));
            }
            StartupRequest::Startup { params } => return (stream, Ok(Opening::Startup { params })),
            StartupRequest::UnsupportedVersion(v) => {
                let e = violation(format!(
                    "unsupported frontend protocol {}.{}: server supports 3.0",
                    v >> 16,
                    v & 0xffff
                ));
                return (stream, Err(e));
            }
        }
    }
}

/// Answer an encryption request with `N`: the client goes on in plaintext (or gives up).
async fn refuse_encryption(stream: &mut ClientStream) -> Result<(), PgError> {
    stream
        .write_all(b"N")
        .await
        .map_err(|e| violation(format!("client write failed: {e}")))
}

/// Read one tagged frame during authentication; it must have tag `want`.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    want: u8,
) -> Result<Frame, PgError> {
    // Authentication messages are small; 64 KiB is generous.
    const LIMIT: usize = 64 * 1024;
    loop {
        match frame::next_tagged(rbuf, LIMIT) {
            Ok(Some(f)) if f.tag == want => return Ok(f),
            Ok(Some(f)) => {
                return Err(violation(format!(
                    "expected message type \"{}\" during authentication, got \"{}\"",
                    want as char, f.tag as char
                )))
            }
            Ok(None) => fill(stream, rbuf).await?,
            Err(e) => return Err(violation(e.to_string())),
        }
    }
}
