//! The opening of a client connection: SSL and GSSAPI negotiation, cancel requests, and the
//! startup packet, up to the point where authentication starts.
//!
//! TLS is not offered yet (SSLRequest is answered `N`); GSSAPI encryption never is. Every
//! packet is length-checked by `protocol::frame` before it is decoded.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::decode::{self, StartupRequest};
use crate::protocol::{frame, sqlstate, Frame, PgError};

/// What a new connection turned out to be.
pub enum Opening {
    Startup { params: Vec<(String, String)> },
    Cancel { pid: i32, secret: Vec<u8> },
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

/// Read packets until a startup packet or a cancel request arrives.
pub async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
) -> Result<Opening, PgError> {
    loop {
        let packet = loop {
            match frame::next_startup(rbuf) {
                Ok(Some(p)) => break p,
                Ok(None) => fill(stream, rbuf).await?,
                Err(e) => return Err(violation(e.to_string())),
            }
        };
        match decode::startup(&packet).map_err(|e| violation(e.to_string()))? {
            StartupRequest::Ssl | StartupRequest::GssEnc => {
                // Anything the client pipelined after the request would be encrypted data it
                // sent before our answer: refuse it, as Postgres does (CVE-2021-23214).
                if !rbuf.is_empty() {
                    return Err(violation("received unencrypted data after SSL request"));
                }
                stream
                    .write_all(b"N")
                    .await
                    .map_err(|e| violation(format!("client write failed: {e}")))?;
            }
            StartupRequest::Cancel { pid, secret } => return Ok(Opening::Cancel { pid, secret }),
            StartupRequest::Startup { params } => return Ok(Opening::Startup { params }),
            StartupRequest::UnsupportedVersion(v) => {
                return Err(violation(format!(
                    "unsupported frontend protocol {}.{}: server supports 3.0",
                    v >> 16,
                    v & 0xffff
                )))
            }
        }
    }
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
