//! The directory listener: one dedicated catalog connection that `LISTEN`s on
//! `shardgate_directory` and invalidates the `DirectoryCache` entry each notification names.
//!
//! Owns the connection's lifecycle and the cache's safety net: the cache is cleared whenever
//! notifications may have been missed (before the first `LISTEN` is confirmed, after the
//! connection is lost, and every `backstop` interval, SPEC 4.3). It does not read directory
//! entries: a cleared entry is reloaded on the next lookup (`Catalog::directory_lookup`).

use std::future::Future;
use std::time::Duration;

use futures_util::{stream, Stream, StreamExt};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::directory::DIRECTORY_CHANNEL;
use super::error::describe;
use super::{pg_config, DirectoryCache};
use crate::config::PgTarget;

/// Reconnect delays: from the first to the last, doubling.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Bounds opening the connection and the liveness probe run at each backstop tick.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Start the listener task. It runs until aborted (drop of the runtime or
/// `JoinHandle::abort`); it never gives up on the catalog, it retries with backoff and logs.
/// A `backstop` of zero disables the periodic clear (notifications and reconnects only).
pub fn spawn_directory_listener(
    target: PgTarget,
    cache: DirectoryCache,
    backstop: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let catalog = target.redacted_url();
        let mut backoff = BACKOFF_FIRST;
        loop {
            match listen(&target, &cache, backstop, &mut backoff).await {
                Ok(never) => match never {},
                Err(why) => {
                    tracing::warn!(
                        %catalog, error = %why, retry_in = ?backoff,
                        "directory listener lost the catalog; cache cleared"
                    );
                }
            }
            // Whatever was cached may have changed unheard while we were not listening.
            cache.clear();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    })
}

/// Connect, listen and apply notifications until the connection fails. Resets `backoff` once
/// listening, so a connection that worked for a while is retried promptly.
async fn listen(
    target: &PgTarget,
    cache: &DirectoryCache,
    backstop: Duration,
    backoff: &mut Duration,
) -> Result<std::convert::Infallible, String> {
    let config = pg_config(target, IO_TIMEOUT, "shardgate-directory-listener");
    let (client, mut connection) = config
        .connect(crate::tls::make_tls_connect())
        .await
        .map_err(|e| format!("cannot connect: {}", describe(&e)))?;
    // The connection is driven only by polling this stream: it carries the notifications and
    // moves the client's requests along, so every request below runs under `drive`.
    let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
    drive(
        &mut messages,
        cache,
        client.batch_execute(&format!("LISTEN {DIRECTORY_CHANNEL}")),
    )
    .await?
    .map_err(|e| format!("LISTEN failed: {}", describe(&e)))?;
    // Entries cached before this point were not covered by any LISTEN.
    cache.clear();
    *backoff = BACKOFF_FIRST;
    tracing::debug!(catalog = %target.redacted_url(), "directory listener listening");

    let mut ticks = (!backstop.is_zero()).then(|| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + backstop, backstop);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        tokio::select! {
            message = messages.next() => apply(message, cache)?,
            _ = tick(&mut ticks) => {
                cache.clear();
                tracing::trace!("directory cache cleared by the backstop");
                // A connection that died silently delivers nothing; find out now.
                drive(&mut messages, cache, tokio::time::timeout(IO_TIMEOUT, client.simple_query("")))
                    .await?
                    .map_err(|_| format!("no answer to a liveness probe within {IO_TIMEOUT:?}"))?
                    .map_err(|e| format!("liveness probe failed: {}", describe(&e)))?;
            }
        }
    }
}

/// The next backstop tick, or never when the backstop is disabled. Cancel-safe.
async fn tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

type Message = Option<Result<AsyncMessage, tokio_postgres::Error>>;

/// Run `request` to completion while applying whatever the connection delivers meanwhile.
async fn drive<S, F>(
    messages: &mut S,
    cache: &DirectoryCache,
    request: F,
) -> Result<F::Output, String>
where
    S: Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Unpin,
    F: Future,
{
    tokio::pin!(request);
    loop {
        tokio::select! {
            out = &mut request => return Ok(out),
            message = messages.next() => apply(message, cache)?,
        }
    }
}

/// Act on one message from the connection; an error or the end of the stream ends listening.
fn apply(message: Message, cache: &DirectoryCache) -> Result<(), String> {
    match message {
        Some(Ok(AsyncMessage::Notification(n))) if n.channel() == DIRECTORY_CHANNEL => {
            match n.payload().split_once('\n') {
                Some((scheme, key)) => cache.invalidate(scheme, key),
                // The pair did not fit in a payload: the whole scheme is suspect.
                None => cache.invalidate_scheme(n.payload()),
            }
            tracing::debug!(payload = %n.payload(), "directory entry changed; cache entry dropped");
            Ok(())
        }
        Some(Ok(AsyncMessage::Notice(notice))) => {
            tracing::debug!(notice = %notice.message(), "catalog notice on the listener connection");
            Ok(())
        }
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(describe(&e)),
        None => Err("connection closed".to_owned()),
    }
}
