//! A server connection's socket, plaintext or TLS, and opening it as the shard URL's
//! `sslmode` asks.
//!
//! Owns the SSLRequest exchange (`prefer`: TLS when the server offers it, else plaintext;
//! `require`: TLS or a clear error; `disable`: never asks) and the non-blocking liveness
//! probe. Delegating `AsyncRead`/`AsyncWrite` and `write_all` that also flushes are
//! `tls::stream::MaybeTls`'s, shared with the client side. The server's
//! certificate is not verified (`tls::no_verify`); authentication stays in `conn`.

use std::io;

use bytes::BytesMut;
use futures_util::FutureExt;
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::conn::ConnError;
use crate::config::{PgTarget, SslMode};
use crate::tls::stream::MaybeTls;

/// A server connection's socket (see `tls::stream` for the delegation and the write rule).
pub type ServerStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

impl ServerStream {
    /// Ask for TLS on a fresh connection as `target.sslmode` says, before the startup packet.
    /// Not cancel-safe (the connection is consumed); the caller bounds it with its connect
    /// timeout and drops the connection on expiry.
    pub async fn open(mut tcp: TcpStream, target: &PgTarget) -> Result<ServerStream, ConnError> {
        if target.sslmode == SslMode::Disable {
            return Ok(ServerStream::Plain(tcp));
        }
        let mut request = BytesMut::new();
        frontend::ssl_request(&mut request);
        tcp.write_all(&request).await?;
        // Exactly one byte: anything after an `S` must be the server's TLS handshake, read by
        // rustls (reading more here would accept injected plaintext, CVE-2021-23222).
        let answer = tcp.read_u8().await?;
        match (answer, target.sslmode) {
            (b'S', _) => {
                let name = ServerName::try_from(target.host.clone()).map_err(|e| {
                    ConnError::Tls(format!(
                        "host {:?} is not a valid TLS name: {e}",
                        target.host
                    ))
                })?;
                let tls = crate::tls::shard_connector()
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ConnError::Tls(format!("TLS handshake failed: {e}")))?;
                Ok(ServerStream::Tls(Box::new(tls)))
            }
            (b'N', SslMode::Prefer) => Ok(ServerStream::Plain(tcp)),
            (b'N', _) => Err(ConnError::Tls(
                "the server does not support TLS (SSL), but the shard URL says sslmode=require"
                    .into(),
            )),
            // Servers before 9.x answered an ErrorResponse; none of them is supported anyway.
            (other, _) => Err(ConnError::Protocol(format!(
                "unexpected answer {other:#04x} to SSLRequest"
            ))),
        }
    }

    /// Without waiting: is the connection still open and silent? A server sends nothing to an
    /// idle connection unless it is going away, so data, end of file or an error all mean it
    /// is not fit for reuse (whatever was read is lost with it).
    pub fn looks_alive(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            ServerStream::Plain(s) => {
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            // TLS records (a session ticket, say) may arrive without any plaintext, so the
            // probe must go through rustls: poll one read once; pending means silent.
            ServerStream::Tls(s) => s.read(&mut probe).now_or_never().is_none(),
        }
    }
}
