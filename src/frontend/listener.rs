//! Accepting client connections: one task per client, started here, until shutdown.

use tokio::net::TcpListener;

use super::{session, Proxy};

pub(super) async fn accept_loop(proxy: Proxy, listener: TcpListener) {
    let mut shutdown = proxy.shutdown_signal();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let p = proxy.clone();
                    tokio::spawn(async move {
                        let _guard = p.client_guard();
                        session::run(p, stream, peer).await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}
