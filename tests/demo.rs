//! `shardgate demo` end to end: the real binary, started the way a user starts it, its printed
//! tour run command by command, then stopped as Ctrl-C stops it, twice in a row.
//!
//! The demo prints complete `psql`, `shardgate explain` and `curl` commands; this test runs
//! exactly those lines (psql for real, `shardgate` as this build's binary, `curl` as an HTTP
//! GET of its own), so the README's tour and the demo's output cannot drift from what works.
//! Ctrl-C at a terminal signals the whole foreground process group, Postgres servers
//! included; the demo runs in a process group of its own here and the group gets SIGINT.
//! It does not use the shared test cluster: the demo starts its own shards.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::bin_path;

/// The demo's stdout, line by line, from a reader thread.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(dir: &Path, port: u16, metrics_port: u16) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(["demo", "--port", &port.to_string()])
            .args(["--metrics-port", &metrics_port.to_string()])
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("spawn shardgate demo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Read lines until one contains `needle`; panics with everything seen after `limit`.
    fn wait_for(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no line containing {needle:?} within {limit:?}; the demo printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// SIGINT to the demo's process group, as Ctrl-C at a terminal; returns its exit status.
    fn interrupt(&mut self, limit: Duration) -> std::process::ExitStatus {
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) with a negative pid signals the process group we created.
        let rc = unsafe { libc::kill(-pgid, libc::SIGINT) };
        assert_eq!(rc, 0, "kill(-{pgid}, SIGINT)");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the demo") {
                // Drain what it printed while stopping.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
                    self.seen.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the demo did not stop within {limit:?} of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Two free local ports (bound and released; the demo binds them right after).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// A scratch directory, removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch directory the `postgres` OS user can reach (the demo runs the servers as it
/// when started as root).
fn scratch_dir() -> Scratch {
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = PathBuf::from(format!("{base}/sg-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    Scratch(dir)
}

/// Split a printed command line into words: spaces separate, double quotes group.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quotes in {line:?}");
    if any {
        out.push(cur);
    }
    out
}

/// What one printed command produced.
struct Ran {
    line: String,
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run_printed(line: &str) -> Ran {
    let w = words(line);
    let program = match w[0].as_str() {
        "psql" => bin_path("psql"),
        "shardgate" => PathBuf::from(env!("CARGO_BIN_EXE_shardgate")),
        "curl" => {
            let url = w.last().unwrap();
            return Ran {
                line: line.into(),
                ok: true,
                stdout: http_get(url),
                stderr: String::new(),
            };
        }
        other => panic!("the demo printed a command this test does not know: {other}"),
    };
    // -X: no ~/.psqlrc; the rest exactly as printed.
    let mut cmd = Command::new(program);
    if w[0] == "psql" {
        cmd.arg("-X").env_remove("PGOPTIONS");
    }
    let out = cmd.args(&w[1..]).output().expect("run a printed command");
    Ran {
        line: line.into(),
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut s = TcpStream::connect(host).expect("connect to the metrics endpoint");
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"));
    body
}

/// The value of a sample line `name{labels} value` in a Prometheus page.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in the metrics page"))
}

/// The commands of the tour, in the order printed.
fn tour_commands(seen: &[String]) -> Vec<String> {
    seen.iter()
        .map(|l| l.trim())
        .filter(|l| {
            l.starts_with("psql ") && l.contains(" -c ")
                || l.starts_with("shardgate explain ")
                || l.starts_with("curl ")
        })
        .map(str::to_owned)
        .collect()
}

fn check_tour(demo: &Demo, port: u16, metrics_port: u16) {
    let connect = format!("psql postgres://demo:demo@127.0.0.1:{port}/demo");
    assert!(
        demo.seen.iter().any(|l| l.trim() == connect),
        "the demo should print how to connect: {connect}"
    );
    let commands = tour_commands(&demo.seen);
    assert!(
        commands.len() >= 9,
        "expected the full tour, got {commands:#?}"
    );
    let ran: Vec<Ran> = commands.iter().map(|c| run_printed(c)).collect();
    let find = |needle: &str| -> &Ran {
        ran.iter()
            .find(|r| r.line.contains(needle))
            .unwrap_or_else(|| panic!("the tour has no command with {needle:?}: {commands:#?}"))
    };
    for r in &ran {
        let refused = r.line.contains("DISTINCT");
        assert_eq!(
            r.ok, !refused,
            "{}\nstdout: {}\nstderr: {}",
            r.line, r.stdout, r.stderr
        );
    }

    // Single-shard lookup and the join with the reference table.
    let lookup = find("FROM users WHERE id = 42");
    assert!(lookup.stdout.contains("(1 row)"), "{}", lookup.stdout);
    let joined = find("JOIN countries");
    assert!(joined.stdout.contains("(1 row)"), "{}", joined.stdout);
    // Fan-out ORDER BY ... LIMIT 5: five rows, likes descending.
    let top = find("ORDER BY likes DESC");
    assert!(top.stdout.contains("(5 rows)"), "{}", top.stdout);
    let likes: Vec<i64> = top
        .stdout
        .lines()
        .filter_map(|l| l.split('|').nth(2)?.trim().parse().ok())
        .collect();
    assert_eq!(likes.len(), 5, "{}", top.stdout);
    assert!(likes.windows(2).all(|w| w[0] >= w[1]), "{likes:?}");
    // The aggregate: per-country counts that add up to every user.
    let agg = find("GROUP BY country");
    let total: i64 = agg
        .stdout
        .lines()
        .filter_map(|l| l.split('|').nth(1)?.trim().parse::<i64>().ok())
        .sum();
    assert_eq!(total, 2000, "{}", agg.stdout);
    // The cross-shard transaction: two UPDATEs, a COMMIT.
    let txn = find("\"BEGIN\"").stdout.clone();
    assert!(
        txn.contains("UPDATE 3") && txn.ends_with("COMMIT\n"),
        "{txn}"
    );
    // The refusal names the construct and its SQLSTATE class.
    let refused = find("count(DISTINCT");
    assert!(
        refused.stderr.contains("count(DISTINCT"),
        "{}",
        refused.stderr
    );
    // SHOW SHARDS on the admin console: four shards, all up.
    let shards = find("SHOW SHARDS");
    assert!(shards.stdout.contains("(4 rows)"), "{}", shards.stdout);
    assert_eq!(
        shards.stdout.matches("| true").count(),
        4 + 1,
        "{}",
        shards.stdout
    );
    // explain: one shard, by key.
    let explain = find("shardgate explain");
    assert!(
        explain.stdout.contains("route: single"),
        "{}",
        explain.stdout
    );
    // Metrics at the printed URL, on the requested port, counting what the tour did.
    let curl = find("curl ");
    assert!(curl
        .line
        .contains(&format!("127.0.0.1:{metrics_port}/metrics")));
    let page = &curl.stdout;
    assert_eq!(sample(page, "shardgate_shard_up{shard=\"s3\"}"), 1.0);
    assert!(sample(page, "shardgate_twopc_total{outcome=\"committed\"}") >= 1.0);
    assert!(sample(page, "shardgate_queries_total{route=\"single\"}") >= 2.0);
    assert!(sample(page, "shardgate_queries_total{route=\"all\"}") >= 2.0);
    assert!(sample(page, "shardgate_errors_total{kind=\"unsupported\"}") >= 1.0);
}

/// The sample data went in through the proxy and spread over every shard: each shard holds
/// some users, and the three tables hold the promised totals.
fn check_data(port: u16) {
    let url = format!("postgres://demo:demo@127.0.0.1:{port}/demo");
    let out = Command::new(bin_path("psql"))
        .args(["-X", "-At", &url])
        .args(["-c", "SELECT count(*) FROM users"])
        .args(["-c", "SELECT count(*) FROM posts"])
        .args(["-c", "SELECT count(*) FROM comments"])
        .args(["-c", "SELECT count(*) FROM countries"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2000\n6000\n12000\n6\n"
    );
    for s in 0..4 {
        let out = Command::new(bin_path("psql"))
            .args(["-X", "-At", &url])
            .args([
                "-c",
                &format!("/* shardgate: shard=s{s} */ SELECT count(*) FROM users"),
            ])
            .output()
            .unwrap();
        let n: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!(n > 300 && n < 700, "shard s{s} holds {n} of 2000 users");
    }
}

#[test]
fn demo_tour_runs_and_ctrl_c_cleans_up_twice() {
    let scratch = scratch_dir();
    let dir = &scratch.0;
    let demo_root = dir.join(".shardgate/demo");
    // Twice: a second run must start cleanly where the first one stopped.
    for round in 0..2 {
        let (port, metrics_port) = free_ports();
        let mut demo = Demo::start(dir, port, metrics_port);
        demo.wait_for("Press Ctrl-C", Duration::from_secs(180));
        assert!(demo_root.join("shardgate.yaml").is_file());
        if round == 0 {
            check_data(port);
        }
        check_tour(&demo, port, metrics_port);
        let status = demo.interrupt(Duration::from_secs(60));
        assert!(status.success(), "demo exit status {status:?}");
        assert!(
            demo.seen
                .iter()
                .any(|l| l.starts_with("Stopped the demo shards")),
            "{}",
            demo.seen.join("\n")
        );
        assert!(
            !demo_root.exists(),
            "Ctrl-C should remove {}",
            demo_root.display()
        );
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing listens on the demo port after Ctrl-C"
        );
    }
}
