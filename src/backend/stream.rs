//! A server connection's socket, plaintext or TLS, and opening it as the shard URL's
//! `sslmode` asks.
//!
//! Owns the SSLRequest exchange (`prefer`: TLS when the server offers it, else plaintext;
//! `require`: TLS or a clear error; `disable`: never asks), delegating `AsyncRead`/`AsyncWrite`
//! to whichever stream it became, and the non-blocking liveness probe. Like the client side
//! (`frontend::stream`), the inherent [`ServerStream::write_all`] writes and flushes, since
//! over TLS the tail of a write may wait in the TLS layer until flushed. The server's
//! certificate is not verified (`tls::no_verify`); authentication stays in `conn`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::FutureExt;
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::conn::ConnError;
use crate::config::{PgTarget, SslMode};

pub enum ServerStream {
    Plain(TcpStream),
    /// Boxed: a TLS connection's state is large, and most of it is buffers. Reads are
    /// cancel-safe (used in `select!`): rustls keeps decrypted bytes until they are read.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

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

    pub fn is_tls(&self) -> bool {
        matches!(self, ServerStream::Tls(_))
    }

    /// Write all of `buf` and flush it to the socket. A dropped call may have written part of
    /// `buf` (as with `AsyncWriteExt::write_all`).
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        AsyncWriteExt::write_all(self, buf).await?;
        if self.is_tls() {
            AsyncWriteExt::flush(self).await?;
        }
        Ok(())
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

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerStream::Plain(s) => s.is_write_vectored(),
            ServerStream::Tls(s) => s.is_write_vectored(),
        }
    }
}
