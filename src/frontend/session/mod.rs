//! One client's session: login, then a loop that moves frames between the client and the
//! server connections it holds.
//!
//! This is the one place that wires statements to backends. The session holds at most one
//! server connection per shard (`backends[shard]`), checked out when a statement first needs
//! that shard and, in transaction pooling, returned when the server reports the transaction
//! over and every request has been answered. Client frames are forwarded as their original
//! bytes except the few that name a prepared statement, which are renamed to the server-side
//! name (`client.rs`); server frames are forwarded as bytes and only their tags are looked at
//! (`relay.rs`).
//!
//! Routing (`route.rs`): each request cycle (a simple Query, or an extended-protocol batch up
//! to Sync) is routed as a unit; a read over several shards is concatenated (`fanout.rs`).

mod client;
mod copy;
mod effects;
mod fanout;
mod local;
mod merging;
mod per_statement;
mod query;
mod relay;
mod route;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::auth;
use super::cancel::{CancelHandle, CancelTarget};
use super::clients::ClientState;
use super::settings::{ClientSettings, Effect};
use super::startup::{self, Opening};
use super::stream::ClientStream;
use super::Proxy;
use crate::backend::PooledConn;
use crate::config::{Config, PoolMode, ShardId};
use crate::protocol::{build, sqlstate, PgError};
use crate::telemetry::TwoPcOutcome;

/// How long a client may take to open and authenticate (Postgres' authentication_timeout).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the proxy tries to roll back a connection whose client vanished.
const ABANDON_TIMEOUT: Duration = Duration::from_secs(2);

/// A client statement known to the proxy: its text and parameter types, and their hash,
/// which names it on servers (`sg_<hash>`).
#[derive(Debug)]
pub(super) struct Stmt {
    pub sql: Bytes,
    pub param_types: Bytes,
    pub hash: u64,
}

impl Stmt {
    fn new(sql: &[u8], param_types: &[u8]) -> Arc<Stmt> {
        Arc::new(Stmt {
            sql: Bytes::copy_from_slice(sql),
            param_types: Bytes::copy_from_slice(param_types),
            hash: Stmt::hash_of(sql, param_types),
        })
    }

    /// The hash that names a statement on servers, without building a `Stmt`.
    fn hash_of(sql: &[u8], param_types: &[u8]) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        sql.hash(&mut h);
        param_types.hash(&mut h);
        h.finish()
    }
}

/// How the loop should go on after handling some input.
enum Flow {
    Continue,
    Close,
}

pub(super) struct Session {
    proxy: Proxy,
    /// The config, router and pools this session routes with; `cfg` is its config. Moved to
    /// the proxy's newest snapshot whenever client input arrives (`refresh`).
    snap: Arc<super::Snapshot>,
    cfg: Arc<Config>,
    client: ClientStream,
    crbuf: BytesMut,
    /// Output to the client that the proxy made itself (errors, ReadyForQuery).
    cwbuf: BytesMut,
    /// Output to each shard, written after each batch of client frames.
    swbufs: Vec<BytesMut>,
    backends: Vec<Option<PooledConn>>,
    cancel: CancelHandle,
    statements: HashMap<Bytes, Arc<Stmt>>,
    unnamed: Option<Arc<Stmt>>,
    settings: ClientSettings,
    /// Why the client may not leave its server connection(s), if it may not.
    pinned: Option<&'static str>,
    /// The transaction status the client last saw: `I`, `T` or `E`.
    status: u8,
    /// After the proxy itself failed an extended-protocol message: drop input until Sync.
    skip_until_sync: bool,
    /// Statement effects awaiting the end of their request cycle: (cycle, effect, ids of the
    /// savepoints open when it was made).
    effects: Vec<(u64, Effect, Vec<u64>)>,
    /// Effects of finished cycles inside a transaction, applied if it commits (with the ids
    /// of the savepoints open when each was made: a ROLLBACK TO one of them drops it).
    txn_effects: Vec<(Effect, Vec<u64>)>,
    /// One id per entry of `savepoints`, and the last id handed out.
    savepoint_ids: Vec<u64>,
    next_savepoint_id: u64,
    sent_cycles: u64,
    done_cycles: u64,
    cycle_error: bool,
    saw_rollback: bool,
    /// Extended-protocol messages held until Sync or Flush, then routed together.
    batch: Vec<crate::protocol::Frame>,
    /// After a Flush: where the rest of the batch goes.
    batch_target: Option<Vec<ShardId>>,
    /// The shard of the last cycle sent (COPY data follows it).
    last_target: Option<ShardId>,
    /// The shards taking part in the client's open transaction, in joining order.
    participants: Vec<ShardId>,
    /// A BEGIN answered by the proxy, sent ahead of the first statement that picks a shard.
    deferred_begin: Option<String>,
    /// The BEGIN text of the open transaction, replayed on each shard that joins it.
    begin_text: String,
    /// Savepoints of the open transaction, oldest first, recreated on each shard that joins.
    savepoints: Vec<String>,
    /// The cycle being routed is a simple Query (its text can be rewritten per shard).
    simple_cycle: bool,
    /// Cycles that contain a top-level COMMIT/ROLLBACK (their "ROLLBACK" tag discards SETs),
    /// with how many ROLLBACK TO SAVEPOINTs they hold (same tag, transaction goes on).
    rollback_cycles: Vec<(u64, usize)>,
    /// A multi-shard write outside a transaction is running as an implicit transaction.
    implicit: bool,
    /// The proxy refused a statement inside the transaction: it is failed, as Postgres does.
    proxy_aborted: bool,
    /// `SET shardgate.shard`: every statement goes to this shard.
    hint_shard: Option<ShardId>,
    /// Whether the client's encoding is UTF-8 (text keys are hashed as UTF-8).
    utf8_client: bool,
    /// A read being concatenated from several shards.
    fan: Option<fanout::FanOut>,
    /// COPY FROM STDIN data being split by shard.
    copy_in: Option<copy::CopySplit>,
    /// The shard of each cycle sent, oldest first, to learn where a transaction opened.
    cycle_shards: std::collections::VecDeque<Option<ShardId>>,
    /// The login user (limits are per user).
    user: String,
    /// This client's entry in `SHOW CLIENTS`.
    listed: super::clients::Listed,
    /// The widest route of the cycle being routed: its class and shard count.
    routed: Option<(crate::router::RouteClass, usize)>,
    /// The cycle (by `sent_cycles` before it is sent) last charged and counted.
    counted_cycle: Option<u64>,
    /// Cycles being timed: (cycle number, when routed, route class).
    timings: std::collections::VecDeque<(u64, std::time::Instant, crate::router::RouteClass)>,
}

pub(super) async fn run(proxy: Proxy, tcp: TcpStream, peer: SocketAddr) {
    let mut rbuf = BytesMut::with_capacity(8 * 1024);
    let tls = proxy.inner.tls.load_full();
    let opened = tokio::time::timeout(
        LOGIN_TIMEOUT,
        startup::negotiate(tcp, &mut rbuf, tls.as_deref()),
    );
    let (stream, params) = match opened.await {
        Ok((stream, Ok(Opening::Startup { params }))) => (stream, params),
        Ok((_, Ok(Opening::Cancel { pid, secret }))) => {
            proxy.inner.cancel.cancel(pid, &secret);
            return;
        }
        Ok((_, Ok(Opening::HandshakeFailed(e)))) => {
            tracing::info!(%peer, error = %e, "TLS handshake with client failed");
            return;
        }
        Ok((mut stream, Err(e))) => {
            tracing::info!(%peer, error = %e, "connection refused during startup");
            return refuse(&proxy, &mut stream, &e).await;
        }
        Err(_) => return,
    };
    if params
        .iter()
        .any(|(k, v)| k == "database" && v == "shardgate")
    {
        return admin_login(proxy, stream, rbuf, params, peer).await;
    }
    let mut session = match tokio::time::timeout(
        LOGIN_TIMEOUT,
        Session::login(proxy.clone(), stream, rbuf, params, peer),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err((mut stream, e))) => {
            tracing::info!(%peer, error = %e, "login refused");
            return refuse(&proxy, &mut stream, &e).await;
        }
        Err(_) => return,
    };
    tracing::debug!(%peer, "client logged in");
    session.serve().await;
    session.leave().await;
    session.client.close().await;
}

/// The admin console: only the `admin:` credentials open it.
async fn admin_login(
    proxy: Proxy,
    mut client: ClientStream,
    mut rbuf: BytesMut,
    params: Vec<(String, String)>,
    peer: SocketAddr,
) {
    let user = params
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let creds = proxy.inner.creds.load_full();
    let authed = tokio::time::timeout(
        LOGIN_TIMEOUT,
        auth::authenticate(&mut client, &mut rbuf, &creds, &user, true),
    )
    .await;
    match authed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "admin login refused");
            return refuse(&proxy, &mut client, &e).await;
        }
        Err(_) => return,
    }
    let mut out = BytesMut::new();
    for (k, v) in [
        ("server_version", "15.0 (shardgate admin)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        build::parameter_status(&mut out, k, v);
    }
    build::backend_key_data(&mut out, 0, 0);
    build::ready_for_query(&mut out, b'I');
    if client.write_all(&out).await.is_ok() {
        crate::admin::serve(proxy, &mut client, rbuf).await;
        client.close().await;
    }
}

async fn refuse(proxy: &Proxy, stream: &mut ClientStream, e: &PgError) {
    let mut out = BytesMut::new();
    proxy.error_out(&mut out, e);
    let _ = stream.write_all(&out).await;
    stream.close().await;
}

type LoginError = (ClientStream, PgError);

impl Session {
    async fn login(
        proxy: Proxy,
        mut client: ClientStream,
        mut crbuf: BytesMut,
        params: Vec<(String, String)>,
        peer: SocketAddr,
    ) -> Result<Session, LoginError> {
        let snap = proxy.snapshot();
        let cfg = snap.config.clone();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let Some(user) = get("user") else {
            let e = PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            );
            return Err((client, e));
        };
        let database = get("database").unwrap_or_else(|| user.clone());
        if get("replication").is_some_and(|v| v != "false" && v != "0") {
            let e = PgError::fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "replication connections are not supported through shardgate",
            );
            return Err((client, e));
        }
        if database == "shardgate" {
            let e = PgError::fatal(
                sqlstate::INTERNAL_ERROR,
                "admin logins are handled before sessions",
            );
            return Err((client, e));
        }
        if database != cfg.database {
            let e = PgError::fatal(
                sqlstate::INVALID_CATALOG_NAME,
                format!("database \"{database}\" does not exist"),
            )
            .with_hint(format!(
                "This shardgate serves database \"{}\".",
                cfg.database
            ));
            return Err((client, e));
        }
        let creds = proxy.inner.creds.load_full();
        if let Err(e) = auth::authenticate(&mut client, &mut crbuf, &creds, &user, false).await {
            return Err((client, e));
        }
        let shards = cfg.shards.len();
        let cancel = proxy.inner.cancel.register();
        let mut s = Session {
            listed: proxy.clients().add(
                cancel.pid,
                &user,
                &database,
                peer,
                &get("application_name").unwrap_or_default(),
            ),
            settings: ClientSettings::from_startup(&params),
            proxy,
            client,
            crbuf,
            cwbuf: BytesMut::with_capacity(1024),
            swbufs: (0..shards).map(|_| BytesMut::with_capacity(4096)).collect(),
            backends: (0..shards).map(|_| None).collect(),
            cancel,
            statements: HashMap::new(),
            unnamed: None,
            pinned: None,
            status: b'I',
            skip_until_sync: false,
            effects: Vec::new(),
            txn_effects: Vec::new(),
            savepoint_ids: Vec::new(),
            next_savepoint_id: 0,
            sent_cycles: 0,
            done_cycles: 0,
            cycle_error: false,
            saw_rollback: false,
            batch: Vec::new(),
            batch_target: None,
            last_target: None,
            participants: Vec::new(),
            deferred_begin: None,
            begin_text: String::from("BEGIN"),
            savepoints: Vec::new(),
            simple_cycle: false,
            rollback_cycles: Vec::new(),
            implicit: false,
            proxy_aborted: false,
            hint_shard: None,
            utf8_client: params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("client_encoding"))
                .is_none_or(|(_, v)| is_utf8(v)),
            fan: None,
            copy_in: None,
            cycle_shards: std::collections::VecDeque::new(),
            user: user.clone(),
            routed: None,
            counted_cycle: None,
            timings: std::collections::VecDeque::new(),
            snap,
            cfg,
        };
        // The client learns the server's parameters from the default shard, with its own
        // startup settings applied: exactly what it would see connecting there directly.
        // The set is cached by settings fingerprint, so later logins need no server.
        let shard = s.cfg.default_shard;
        let key = s.settings.key();
        let cached = s
            .proxy
            .inner
            .login_params
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        let params = match cached {
            Some(p) => p,
            None => {
                if let Err(e) = s.ensure_backend(shard).await {
                    let e = PgError::fatal(e.code, e.message);
                    return Err((s.take_client(), e));
                }
                let mut list: Vec<(String, String)> = s.backends[shard]
                    .as_ref()
                    .map(|c| {
                        c.params
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                list.sort();
                let list = Arc::new(list);
                if let Ok(mut m) = s.proxy.inner.login_params.lock() {
                    m.insert(key, list.clone());
                }
                list
            }
        };
        let mut out = BytesMut::new();
        for (k, v) in params.iter() {
            build::parameter_status(&mut out, k, v);
        }
        build::backend_key_data(&mut out, s.cancel.pid, s.cancel.secret);
        build::ready_for_query(&mut out, b'I');
        if let Err(e) = s.client.write_all(&out).await {
            let e = PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string());
            return Err((s.take_client(), e));
        }
        s.maybe_release(shard);
        Ok(s)
    }

    fn take_client(self) -> ClientStream {
        self.client
    }

    fn pool_mode(&self) -> PoolMode {
        self.cfg.pool.mode
    }

    /// The main loop: until the client leaves, an error closes it, or shutdown finds it idle.
    async fn serve(&mut self) {
        let mut shutdown = self.proxy.shutdown_signal();
        let max = self.cfg.limits.max_message_size;
        loop {
            if *shutdown.borrow() && self.is_idle() {
                let e = PgError::fatal(sqlstate::ADMIN_SHUTDOWN, "shardgate is shutting down");
                self.send_error(&e).await;
                return;
            }
            if self.crbuf.capacity() - self.crbuf.len() < 1024 {
                self.crbuf.reserve(8 * 1024);
            }
            let flow = tokio::select! {
                r = self.client.read_buf(&mut self.crbuf) => match r {
                    Ok(0) | Err(_) => Flow::Close,
                    Ok(_) => {
                        self.listed.info.touch();
                        // After a PAUSE the config may have been reloaded: refresh after it.
                        self.wait_while_paused().await;
                        self.refresh();
                        self.on_client_input(max).await
                    }
                },
                (shard, r) = relay::read_any(&mut self.backends, self.fan.as_ref().map(|f| std::slice::from_ref(&f.shards[f.at]))) => match r {
                    Ok(0) | Err(_) => self.on_server_lost(shard).await,
                    Ok(_) => self.on_server_input(shard).await,
                },
                _ = shutdown.changed() => Flow::Continue,
            };
            if let Flow::Close = flow {
                return;
            }
            let state = if self.backends.iter().any(Option::is_some) {
                ClientState::Active
            } else {
                ClientState::Idle
            };
            self.listed.info.set_state(state);
        }
    }

    /// While the proxy is paused, a client holding no server connection waits before its
    /// next request takes one (PgBouncer's PAUSE); a client inside a transaction goes on.
    async fn wait_while_paused(&mut self) {
        if !self.proxy.is_paused() || self.backends.iter().any(Option::is_some) {
            return;
        }
        self.listed.info.set_state(ClientState::Waiting);
        let mut paused = self.proxy.paused_signal();
        let _ = paused.wait_for(|p| !*p).await;
        self.listed.info.set_state(ClientState::Idle);
    }

    /// Move to the proxy's newest config snapshot after a reload. Shards are only appended,
    /// so every shard index this session holds stays valid; new shards get empty slots.
    pub(super) fn refresh(&mut self) {
        if self.copy_in.is_some() {
            // COPY rows are split by the router the COPY started with, onto the backends
            // bound for it: keep both until the COPY ends.
            return;
        }
        let cur = self.proxy.inner.state.load();
        if Arc::ptr_eq(&cur, &self.snap) {
            return;
        }
        self.snap = arc_swap::Guard::into_inner(cur);
        self.cfg = self.snap.config.clone();
        let n = self.cfg.shards.len();
        while self.backends.len() < n {
            self.backends.push(None);
            self.swbufs.push(BytesMut::with_capacity(4096));
        }
    }

    /// No statement in flight and no transaction open: safe to close for shutdown.
    fn is_idle(&self) -> bool {
        self.status == b'I'
            && self
                .backends
                .iter()
                .flatten()
                .all(|c| c.tracker.is_idle() && c.tx_status == b'I')
    }

    async fn send_error(&mut self, e: &PgError) {
        self.proxy.error_out(&mut self.cwbuf, e);
        let _ = self.client.write_all(&self.cwbuf).await;
        self.cwbuf.clear();
    }

    /// Get a server connection for `shard`, bound to this session, with the client's settings.
    async fn ensure_backend(&mut self, shard: ShardId) -> Result<(), PgError> {
        if self.backends[shard].is_none() {
            let pool = &self.snap.pools[shard];
            self.listed.info.set_state(ClientState::Waiting);
            let conn = pool.checkout().await;
            self.listed.info.set_state(ClientState::Active);
            let conn = conn?;
            self.cancel.add(target_of(&conn));
            self.backends[shard] = Some(conn);
        }
        let key = self.settings.key();
        let Some(conn) = self.backends[shard].as_mut() else {
            return Ok(());
        };
        if conn.settings_key != key && conn.tracker.is_idle() {
            let sql = self.settings.replay_sql();
            if let Err(e) = conn.run_hidden(&sql).await {
                tracing::warn!(error = %e, "could not apply client settings on a server connection");
                conn.broken = true;
                self.release(shard);
                return Err(PgError::error(
                    sqlstate::CONNECTION_FAILURE,
                    format!(
                        "could not apply the session's settings on shard \"{}\": {e}",
                        self.cfg.shards[shard].name
                    ),
                ));
            }
            conn.settings_key = key;
        }
        Ok(())
    }

    /// Hand back every bound connection that is clean and not holding a transaction (after
    /// a cycle was refused half-way through binding its shards).
    fn release_unused(&mut self) {
        for shard in 0..self.backends.len() {
            if !self.participants.contains(&shard) {
                self.maybe_release(shard);
            }
        }
    }

    /// Start combining a cycle's answers from `shards`.
    fn start_fanout(&mut self, shards: Vec<ShardId>) {
        self.fan = Some(fanout::FanOut::new(shards));
    }

    /// The connections of `shards`, with their names, for the coordinator.
    fn participant_conns(
        &mut self,
        shards: &[ShardId],
    ) -> Vec<(&str, &mut crate::backend::ServerConn)> {
        let names: Vec<&str> = self.cfg.shards.iter().map(|s| s.name.as_str()).collect();
        self.backends
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| shards.contains(i))
            .filter_map(|(i, c)| c.as_mut().map(|c| (names[i], &mut **c)))
            .collect()
    }

    /// End a transaction with several participants: two-phase commit, or rollback on all.
    /// Returns the command tag, or the error to report. A failpoint "crash" closes the
    /// session without cleanup (`Err(None)`), as a killed process would.
    async fn end_multi(&mut self, commit: bool) -> Result<&'static str, Option<PgError>> {
        let shards = std::mem::take(&mut self.participants);
        let failed = self.proxy_aborted
            || shards.iter().any(|&s| {
                self.backends[s]
                    .as_ref()
                    .is_none_or(|c| c.tx_status != b'T')
            });
        self.proxy_aborted = false;
        self.deferred_begin = None;
        self.status = b'I';
        let result = if !commit || failed {
            for (_, conn) in self.participant_conns(&shards) {
                if conn.run_hidden("ROLLBACK").await.is_err() || conn.tx_status != b'I' {
                    conn.broken = true;
                }
            }
            Ok("ROLLBACK")
        } else {
            match self.proxy.catalog_for_twopc().await {
                Err(e) => {
                    for (_, conn) in self.participant_conns(&shards) {
                        if conn.run_hidden("ROLLBACK").await.is_err() {
                            conn.broken = true;
                        }
                    }
                    self.proxy.metrics().twopc(TwoPcOutcome::Aborted, 1);
                    Err(Some(e))
                }
                Ok(catalog) => {
                    let gid = self.proxy.gids().next();
                    let failpoints = self.proxy.failpoints().clone();
                    let metrics = self.proxy.metrics().clone();
                    let mut parts = self.participant_conns(&shards);
                    match crate::twopc::commit(&mut parts, &catalog, &gid, &failpoints).await {
                        Ok(()) => {
                            metrics.twopc(TwoPcOutcome::Committed, 1);
                            Ok("COMMIT")
                        }
                        Err(crate::twopc::CommitError::Aborted(e)) => {
                            metrics.twopc(TwoPcOutcome::Aborted, 1);
                            Err(Some(e))
                        }
                        Err(crate::twopc::CommitError::Unknown(e)) => {
                            metrics.twopc(TwoPcOutcome::Unknown, 1);
                            Err(Some(e))
                        }
                        Err(crate::twopc::CommitError::Crashed) => {
                            for (_, conn) in parts {
                                conn.broken = true;
                            }
                            Err(None)
                        }
                    }
                }
            }
        };
        for s in shards {
            self.maybe_release(s);
        }
        if result != Ok("COMMIT") {
            // The SETs of a transaction that did not commit are undone with it.
            self.saw_rollback = true;
        }
        result
    }

    /// Record the latency of every timed cycle that has now been answered.
    fn cycles_done(&mut self) {
        while let Some(&(n, at, class)) = self.timings.front() {
            if n > self.done_cycles {
                break;
            }
            self.timings.pop_front();
            self.proxy
                .metrics()
                .duration(class, at.elapsed().as_secs_f64());
        }
    }

    /// Whether `shard` is the last one a frame is emitted for in this cycle.
    fn fanout_last(&self, shard: ShardId) -> bool {
        self.fan
            .as_ref()
            .is_none_or(|f| f.shards.last() == Some(&shard))
    }

    fn release(&mut self, shard: ShardId) {
        if let Some(conn) = self.backends[shard].take() {
            self.cancel.remove(target_of(&conn));
        }
    }

    /// In transaction pooling, hand the connection back once the transaction is over and
    /// every request has been answered.
    fn maybe_release(&mut self, shard: ShardId) {
        if self.pool_mode() != PoolMode::Transaction || self.pinned.is_some() {
            return;
        }
        if self.fan.as_ref().is_some_and(|f| f.shards.contains(&shard)) {
            return;
        }
        match self.backends[shard].as_ref() {
            Some(c) if c.is_clean() => self.release(shard),
            Some(c) if c.tx_status == b'I' => tracing::debug!(
                shard,
                outstanding = ?c.tracker.head(),
                buffered = c.rbuf.len(),
                broken = c.broken,
                "transaction over but the connection is not clean yet"
            ),
            _ => {}
        }
    }

    /// The client is gone: leave every server connection clean or have it closed.
    async fn leave(&mut self) {
        for shard in 0..self.backends.len() {
            if let Some(conn) = self.backends[shard].as_mut() {
                conn.reset_after_abandon(ABANDON_TIMEOUT).await;
                if self.pinned.is_some() {
                    // Session state (temp tables, LISTEN, advisory locks) must not leak to the
                    // next client: close the connection rather than reuse it.
                    conn.broken = true;
                }
            }
            self.release(shard);
        }
    }
}

/// Whether an encoding name means UTF-8 (Postgres accepts several spellings).
pub(super) fn is_utf8(enc: &str) -> bool {
    let e: String = enc.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("unicode")
}

fn target_of(conn: &PooledConn) -> CancelTarget {
    CancelTarget {
        addr: conn.addr,
        pid: conn.pid,
        secret: conn.secret,
    }
}
