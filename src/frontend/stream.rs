//! A client's connection, plaintext or TLS: the one type the startup, the session and the
//! admin console hold for the client socket.
//!
//! Owns delegating `AsyncRead`/`AsyncWrite` to whichever stream the connection turned into,
//! and one rule that matters for TLS: bytes written are only on the wire after a flush (the
//! TLS layer may hold the tail of a write when the socket is full). The inherent
//! [`ClientStream::write_all`] therefore writes *and flushes*; it shadows
//! `AsyncWriteExt::write_all` so that every `client.write_all(..)` in the session does the
//! right thing. Generic code over `AsyncWrite` must flush itself. It does not decide whether
//! to use TLS (`startup::negotiate` does).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How long `close` waits for the TLS close_notify to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub enum ClientStream {
    Plain(TcpStream),
    /// Boxed: a TLS connection's state is large, and most of it is buffers. Reads are
    /// cancel-safe (used in `select!`): rustls keeps decrypted bytes until they are read.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ClientStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// Write all of `buf` and flush it to the socket. Cancel-safe only in the sense of
    /// `AsyncWriteExt::write_all`: a dropped call may have written part of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        AsyncWriteExt::write_all(self, buf).await?;
        if self.is_tls() {
            AsyncWriteExt::flush(self).await?;
        }
        Ok(())
    }

    /// End the connection cleanly: over TLS, send close_notify so the client can tell the end
    /// of the session from a truncated one. Bounded, so a client that stopped reading cannot
    /// hold the task; errors are moot at this point.
    pub async fn close(&mut self) {
        if let ClientStream::Tls(s) = self {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, s.shutdown()).await;
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }
}
