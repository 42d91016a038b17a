//! A client's connection, plaintext or TLS: the one type the startup, the session and the
//! admin console hold for the client socket.
//!
//! The delegation to whichever stream the connection turned into, and `write_all` that also
//! flushes, are `tls::stream::MaybeTls`'s; this adds closing a session cleanly. It does not
//! decide whether to use TLS (`startup::negotiate` does).

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::tls::stream::MaybeTls;

/// How long `close` waits for the TLS close_notify to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The client's socket (see `tls::stream` for the delegation and the write rule).
pub type ClientStream = MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;

impl ClientStream {
    /// End the connection cleanly: over TLS, send close_notify so the client can tell the end
    /// of the session from a truncated one. Bounded, so a client that stopped reading cannot
    /// hold the task; errors are moot at this point.
    pub async fn close(&mut self) {
        if let ClientStream::Tls(s) = self {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, s.shutdown()).await;
        }
    }
}
