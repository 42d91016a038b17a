//! Starting shardgate in-process in front of the test cluster, and client helpers: tokio-postgres
//! connections, the real `psql` and `pgbench` binaries, and a raw protocol socket.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use shardgate::config;
use shardgate::frontend::{Proxy, RunningProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{bin_path, cluster};

/// Knobs for a test proxy; `Default` is transaction pooling with SCRAM over every server.
#[derive(Clone)]
pub struct ProxyOpts {
    pub auth_method: &'static str,
    pub pool_mode: &'static str,
    pub pool_size: u32,
    pub checkout_timeout: &'static str,
    pub connect_timeout: &'static str,
    /// Extra YAML appended at the top level.
    pub extra: String,
    /// Replace the URL of shard 0 (to point it at a dead port, say).
    pub shard0_url: Option<String>,
    /// How many of the cluster's servers to use as shards.
    pub shards: usize,
}

impl Default for ProxyOpts {
    fn default() -> Self {
        ProxyOpts {
            auth_method: "scram-sha-256",
            pool_mode: "transaction",
            pool_size: 10,
            checkout_timeout: "5s",
            connect_timeout: "2s",
            extra: String::new(),
            shard0_url: None,
            shards: 2,
        }
    }
}

pub struct TestProxy {
    pub addr: SocketAddr,
    pub db: String,
    pub running: Option<RunningProxy>,
}

/// The config text a test proxy runs with (also what the config tests can load).
pub fn config_yaml(db: &str, o: &ProxyOpts) -> String {
    let servers = &cluster().servers;
    let mut shards = String::new();
    for (i, s) in servers.iter().take(o.shards).enumerate() {
        let url = match (&o.shard0_url, i) {
            (Some(u), 0) => u.clone(),
            _ => s.url("app", "app", db),
        };
        shards.push_str(&format!("  - {{ name: s{i}, url: \"{url}\" }}\n"));
    }
    format!(
        "listen: 127.0.0.1:0\n\
         database: {db}\n\
         auth_method: {}\n\
         users:\n  - {{ name: app, password: app }}\n  - {{ name: other, password: secret }}\n\
         pool: {{ mode: {}, size: {}, checkout_timeout: {}, connect_timeout: {} }}\n\
         shards:\n{shards}\
         default_shard: s0\n{}",
        o.auth_method, o.pool_mode, o.pool_size, o.checkout_timeout, o.connect_timeout, o.extra
    )
}

/// A fresh database on every server and a proxy in front of it.
pub async fn start_proxy(prefix: &str, o: ProxyOpts) -> TestProxy {
    let db = super::fresh_db(prefix);
    start_proxy_on(&db, o).await
}

pub async fn start_proxy_on(db: &str, o: ProxyOpts) -> TestProxy {
    // Logs only when RUST_LOG asks for them.
    if std::env::var_os("RUST_LOG").is_some() {
        shardgate::cli::init_logging(None);
    }
    let yaml = config_yaml(db, &o);
    let cfg = config::parse(&yaml, std::path::Path::new("test.yaml"))
        .unwrap_or_else(|e| panic!("test config rejected: {e}\n{yaml}"));
    let running = Proxy::new(cfg)
        .expect("proxy")
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("proxy start");
    TestProxy {
        addr: running.addr,
        db: db.to_owned(),
        running: Some(running),
    }
}

impl TestProxy {
    pub fn url(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{}",
            self.addr.port(),
            self.db
        )
    }

    /// A tokio-postgres client as user app.
    pub async fn connect(&self) -> tokio_postgres::Client {
        self.try_connect("app", "app")
            .await
            .expect("connect through the proxy")
    }

    pub async fn try_connect(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.url(user, password), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Run `psql` against the proxy with `args`, off the async runtime (the proxy runs on it).
    pub async fn psql(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(bin_path("psql"));
        cmd.arg("-X")
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.addr.port().to_string())
            .arg("-U")
            .arg("app")
            .arg("-d")
            .arg(&self.db)
            .args(args)
            .env("PGPASSWORD", "app")
            .env("PGCONNECT_TIMEOUT", "10");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let stdin = stdin.map(<[u8]>::to_vec);
        blocking(move || run_with_stdin(cmd, stdin.as_deref())).await
    }

    /// Run `pgbench` against the proxy with `args`, off the async runtime.
    pub async fn pgbench(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin_path("pgbench"));
        cmd.arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.addr.port().to_string())
            .arg("-U")
            .arg("app")
            .args(args)
            .arg(&self.db)
            .env("PGPASSWORD", "app");
        blocking(move || run_with_stdin(cmd, None)).await
    }

    pub async fn shutdown(mut self, grace: Duration) -> usize {
        match self.running.take() {
            Some(r) => r.shutdown(grace).await,
            None => 0,
        }
    }
}

fn run_with_stdin(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn client binary");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("client binary output")
}

/// Run a blocking client binary off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// Run one admin-console command through the real `psql` (unaligned, `|`-separated).
pub async fn admin_psql(port: u16, sql: &str, password: &str) -> Output {
    let url = format!("postgres://admin:{password}@127.0.0.1:{port}/shardgate");
    let sql = sql.to_owned();
    blocking(move || {
        Command::new(bin_path("psql"))
            .args(["-X", "-A", "-F", "|", "-c", &sql, &url])
            .output()
            .expect("psql")
    })
    .await
}

/// The SQLSTATE of a tokio-postgres error, or "" when it has none.
pub fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

/// A raw protocol connection, logged in with trust auth (the proxy must use `trust`).
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    pub async fn login(addr: SocketAddr, user: &str, db: &str) -> RawClient {
        let mut stream = TcpStream::connect(addr).await.expect("raw connect");
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        for (k, v) in [("user", user), ("database", db)] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut pkt = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        pkt.extend(body);
        stream.write_all(&pkt).await.expect("startup");
        let mut c = RawClient { stream };
        // Read up to ReadyForQuery.
        loop {
            let (tag, _) = c.read_msg().await.expect("login reply");
            assert_ne!(tag, b'E', "login failed");
            if tag == b'Z' {
                return c;
            }
        }
    }

    /// Read one message: (tag, body). `None` when the connection closed.
    pub async fn read_msg(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(&mut head))
            .await
            .ok()?
            .ok()?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        self.stream.read_exact(&mut body).await.ok()?;
        Some((head[0], body))
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The SQLSTATE in an ErrorResponse body.
    pub fn sqlstate(body: &[u8]) -> String {
        body.split(|b| *b == 0)
            .find(|f| f.first() == Some(&b'C'))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
            .unwrap_or_default()
    }
}

/// A frame with `tag` and `body`.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}
