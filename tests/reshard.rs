//! Online resharding 2 -> 3 shards against real servers, with two proxies on one catalog, a
//! writer and a reader running through them during the whole move; and a run stopped before
//! catch-up (resumed) and before cutover (aborted, then run again).
//!
//! Afterwards: every acknowledged write is on the shard that owns its bucket under the new
//! map, no row is on two shards, the sources hold none of the moved buckets, reads never
//! failed, and no publication, subscription or slot is left behind.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::proxy::code;
use shardgate::config::{self, Config};
use shardgate::frontend::{Proxy, RunningProxy};
use shardgate::reshard;
use shardgate::router::{hash::bucket_of, KeyValue};

const BUCKETS: u32 = 64;

fn yaml(db: &str) -> String {
    let servers = &common::cluster().servers;
    let mut shards = String::new();
    for (i, s) in servers.iter().take(3).enumerate() {
        shards.push_str(&format!(
            "  - {{ name: s{i}, url: \"{}\" }}\n",
            s.url("app", "app", db)
        ));
    }
    format!(
        "listen: 127.0.0.1:0\ndatabase: {db}\nadmin: {{ user: admin, password: adminpw }}\nusers:\n  - {{ name: app, password: app }}\n\
         pool: {{ size: 8 }}\nshards:\n{shards}default_shard: s0\n\
         schemes:\n  by_acct: {{ type: hash, buckets: {BUCKETS}, shards: [s0, s1] }}\n  by_org_home: {{ type: hash, buckets: 8, shards: [s0, s1] }}\n  by_org: {{ type: directory, fallback: by_org_home }}\n\
         tables:\n  accounts: {{ scheme: by_acct, key: id }}\n  ledger: {{ scheme: by_acct, key: acct }}\n  org_rows: {{ scheme: by_org, key: org_id, key_type: text }}\n"
    )
}

async fn direct(i: usize, db: &str) -> tokio_postgres::Client {
    let url = common::cluster().servers[i].url("app", "app", db);
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

async fn setup(prefix: &str, rows: i64) -> (String, Config, Vec<RunningProxy>) {
    let db = common::fresh_db(prefix);
    let cfg = config::parse(&yaml(&db), std::path::Path::new("reshard.yaml")).unwrap();
    // The scheme's tables exist on s0 and s1 only; s2 gets them from the tool.
    for i in 0..2 {
        direct(i, &db)
            .await
            .batch_execute(
                "create table accounts (id bigint primary key, v bigint not null default 0, note text);
                 create index accounts_note on accounts (note);
                 create table ledger (acct bigint not null, seq bigint not null, amount bigint, primary key (acct, seq));
                 create table org_rows (org_id text not null, n bigint not null, primary key (org_id, n));",
            )
            .await
            .unwrap();
    }
    let mut proxies = Vec::new();
    for _ in 0..2 {
        proxies.push(
            Proxy::new(cfg.clone())
                .unwrap()
                .start("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap(),
        );
    }
    let c = connect(&proxies[0], &db).await;
    let mut sql = String::from("insert into accounts (id, v, note) values ");
    for id in 0..rows {
        if id > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("({id}, 0, 'n{id}')"));
    }
    c.simple_query(&sql).await.unwrap();
    for a in 0..100i64 {
        c.execute(
            "insert into ledger (acct, seq, amount) values ($1, 1, $1)",
            &[&a],
        )
        .await
        .unwrap();
    }
    (db, cfg, proxies)
}

async fn connect(p: &RunningProxy, db: &str) -> tokio_postgres::Client {
    let url = format!("postgres://app:app@127.0.0.1:{}/{db}", p.addr.port());
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

fn opts(stop_at: Option<&str>) -> reshard::Options {
    reshard::Options {
        admin_user: Some("postgres".into()),
        progress: false,
        stop_at: stop_at.map(str::to_owned),
    }
}

fn targets() -> Vec<String> {
    vec!["s0".into(), "s1".into(), "s2".into()]
}

/// The live map (shard index per bucket) from the catalog.
async fn live_map(cfg: &Config) -> (i64, Vec<usize>) {
    let catalog = reshard::open_catalog(cfg).await.unwrap();
    let m = catalog.bucket_map("by_acct").await.unwrap().unwrap();
    let ids = m.shards.iter().map(|s| cfg.shard_id(s).unwrap()).collect();
    (m.version, ids)
}

/// Every row of `table` (key column `key`) on every shard: key -> shards holding it.
async fn placement(db: &str, table: &str, key: &str) -> HashMap<i64, Vec<usize>> {
    let mut out: HashMap<i64, Vec<usize>> = HashMap::new();
    for i in 0..3 {
        let c = direct(i, db).await;
        let exists: bool = c
            .query_one("select to_regclass($1) is not null", &[&table])
            .await
            .unwrap()
            .get(0);
        if !exists {
            continue;
        }
        for r in c
            .query(&format!("select {key} from {table}"), &[])
            .await
            .unwrap()
        {
            out.entry(r.get(0)).or_default().push(i);
        }
    }
    out
}

/// Every key on exactly one shard, the one its bucket maps to now.
fn assert_placed(rows: &HashMap<i64, Vec<usize>>, map: &[usize], what: &str) {
    for (k, shards) in rows {
        assert_eq!(shards.len(), 1, "{what} {k} is on shards {shards:?}");
        let owner = map[bucket_of(&KeyValue::Int(*k), BUCKETS) as usize];
        assert_eq!(
            shards[0], owner,
            "{what} {k} is on s{} but bucket owner is s{owner}",
            shards[0]
        );
    }
}

async fn assert_no_replication_leftovers(db: &str) {
    for i in 0..3 {
        let c = direct(i, db).await;
        let pubs: i64 = c
            .query_one(
                "select count(*) from pg_publication where pubname like 'sg_reshard%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let subs: i64 = c
            .query_one(
                "select count(*) from pg_subscription s join pg_database d on d.oid = s.subdbid where d.datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!((pubs, subs), (0, 0), "replication objects left on s{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reshard_two_to_three_under_load_with_two_proxies() {
    let (db, cfg, proxies) = setup("reshard_live", 3000).await;
    let (v1, before) = live_map(&cfg).await;
    assert_eq!(v1, 1);
    assert!(!before.contains(&2));
    let stop = Arc::new(AtomicBool::new(false));
    // Writer through proxy 0: new accounts, and +1 on existing ones (each acknowledged one
    // is remembered).
    let writer = {
        let c = connect(&proxies[0], &db).await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut inserted = Vec::new();
            let mut bumps: HashMap<i64, i64> = HashMap::new();
            let mut errors = Vec::new();
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = 100_000 + n;
                match c
                    .execute(
                        "insert into accounts (id, v, note) values ($1, 0, 'w')",
                        &[&id],
                    )
                    .await
                {
                    Ok(_) => inserted.push(id),
                    Err(e) => errors.push(code(&e)),
                }
                let target = (n * 7919) % 3000;
                match c
                    .execute("update accounts set v = v + 1 where id = $1", &[&target])
                    .await
                {
                    Ok(1) => *bumps.entry(target).or_default() += 1,
                    Ok(other) => panic!("update of {target} touched {other} rows"),
                    Err(e) => errors.push(code(&e)),
                }
                n += 1;
            }
            (inserted, bumps, errors)
        })
    };
    // Reader through proxy 1: point reads of the first rows; none may fail.
    let reader = {
        let c = connect(&proxies[1], &db).await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = (n * 104_729) % 3000;
                match c
                    .query("select note from accounts where id = $1", &[&id])
                    .await
                {
                    Ok(rows) if rows.len() == 1 => ok += 1,
                    Ok(rows) => failed.push(format!("{id}: {} rows", rows.len())),
                    Err(e) => failed.push(format!("{id}: {e}")),
                }
                n += 1;
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = reshard::run(&cfg, "by_acct", &targets(), &opts(None))
        .await
        .unwrap_or_else(|e| panic!("reshard failed: {e}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (inserted, bumps, errors) = writer.await.unwrap();
    let (reads, read_failures) = reader.await.unwrap();
    eprintln!(
        "moved {} buckets, {} rows copied in {:.2}s, pause {:.0} ms; writer {} inserts, {} errors {:?}; reader {} reads",
        out.buckets_moved, out.rows_copied, out.copy_secs, out.pause_ms, inserted.len(), errors.len(), errors, reads
    );
    assert!(out.done);
    assert!(out.buckets_moved > 0 && out.pause_ms > 0.0 && out.pause_ms < 10_000.0);
    assert!(read_failures.is_empty(), "reads failed: {read_failures:?}");
    assert!(reads > 0 && inserted.len() > 10);
    // A statement routed just as the hold began is refused with a retryable 40001; nothing else.
    assert!(
        errors.iter().all(|c| c == "40001"),
        "writer errors: {errors:?}"
    );

    let (v2, after) = live_map(&cfg).await;
    assert_eq!(v2, 2);
    for s in 0..3 {
        let n = after.iter().filter(|&&x| x == s).count();
        assert!(n == 21 || n == 22, "shard s{s} owns {n} buckets");
    }
    let rows = placement(&db, "accounts", "id").await;
    assert_placed(&rows, &after, "account");
    for id in 0..3000 {
        assert!(rows.contains_key(&id), "account {id} lost");
    }
    for id in &inserted {
        assert!(rows.contains_key(id), "acknowledged insert {id} lost");
    }
    assert_placed(
        &placement(&db, "ledger", "acct").await,
        &after,
        "ledger row",
    );
    // Every acknowledged +1 is in the row, no more, no less.
    let c = connect(&proxies[1], &db).await;
    for (id, n) in &bumps {
        let v: i64 = c
            .query_one("select v from accounts where id = $1", &[id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, *n, "account {id}");
    }
    // Both proxies route by the new map: a key that moved to s2 is read through each.
    let moved = (0..3000i64)
        .find(|&k| after[bucket_of(&KeyValue::Int(k), BUCKETS) as usize] == 2)
        .unwrap();
    for p in &proxies {
        let c = connect(p, &db).await;
        let port: String = c
            .query_one(
                "select current_setting('port') from accounts where id = $1",
                &[&moved],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(port, common::cluster().servers[2].port.to_string());
    }
    assert_no_replication_leftovers(&db).await;
    // Every proxy exports the move's figures, read from the catalog.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let page = proxies[1].proxy().render_metrics();
        let get = |name: &str| -> f64 {
            page.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(-1.0)
        };
        if get("shardgate_reshard_rows_copied") > 0.0 {
            assert!(
                get("shardgate_reshard_cutover_pause_seconds") > 0.0,
                "{page}"
            );
            assert!(get("shardgate_reshard_bytes_copied") > 0.0, "{page}");
            assert_eq!(get("shardgate_reshard_jobs_open"), 0.0, "{page}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The index came along with the table.
    let idx: i64 = direct(2, &db)
        .await
        .query_one("select count(*) from pg_indexes where tablename = 'accounts' and indexname = 'accounts_note'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(idx, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_runs_resume_or_abort() {
    let (db, cfg, _proxies) = setup("reshard_resume", 500).await;
    // The plan, as the CLI prints it for machines, with exact row estimates.
    let dir = std::env::temp_dir().join(format!("sg-reshard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shardgate.yaml");
    std::fs::write(&path, yaml(&db)).unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(args)
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = cli(&[
        "reshard",
        "plan",
        "--scheme",
        "by_acct",
        "--shards",
        "s0,s1,s2",
        "--json",
        "--admin-user",
        "postgres",
    ]);
    let json = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{json}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(json.contains("\"buckets_moving\":21"), "{json}");
    let estimated: i64 = json
        .split("\"rows\":")
        .skip(1)
        .map(|x| {
            x.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    let names: Vec<String> = live_map(&cfg)
        .await
        .1
        .iter()
        .map(|&i| format!("s{i}"))
        .collect();
    let after = reshard::plan::apply(&names, &reshard::plan::plan(&names, &targets()).unwrap());
    let to_s2 = |n: i64| {
        (0..n)
            .filter(|&k| after[bucket_of(&KeyValue::Int(k), BUCKETS) as usize] == "s2")
            .count() as i64
    };
    // 500 accounts and 100 ledger rows (keys 0..99).
    assert_eq!(estimated, to_s2(500) + to_s2(100), "{json}");
    // Stopped after the plan and schema, before replication: resume finishes the move.
    let e = reshard::run(&cfg, "by_acct", &targets(), &opts(Some("catch-up")))
        .await
        .unwrap_err();
    assert!(e.contains("catch-up"), "{e}");
    let catalog = reshard::open_catalog(&cfg).await.unwrap();
    let job = catalog.open_job(Some("by_acct")).await.unwrap().unwrap();
    assert_eq!(job.state, "copying");
    // Stopped again before cutover (replication running): SHOW BUCKETS shows the move.
    let e = reshard::run(&cfg, "by_acct", &targets(), &opts(Some("cutover")))
        .await
        .unwrap_err();
    assert!(e.contains("cutover"), "{e}");
    let port = _proxies[0].addr.port();
    let out = common::proxy::admin_psql(port, "SHOW BUCKETS", "adminpw").await;
    let buckets = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        buckets.starts_with("scheme|buckets|first|last|shard|moving_to|move_state"),
        "{buckets}"
    );
    assert!(buckets.contains("|s2|synced"), "{buckets}");
    assert!(buckets.contains("by_acct|64|0|"), "{buckets}");
    // No writes meanwhile: `verify` finds source and target equal.
    let out = cli(&["reshard", "verify", "--admin-user", "postgres"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && said.contains("agree"), "{said}");
    assert_eq!(
        said.lines().filter(|l| l.starts_with("equal")).count(),
        4,
        "{said}"
    );
    // ... and then aborted: nothing changed.
    let id = reshard::abort(&cfg, None, &opts(None)).await.unwrap();
    assert_eq!(id, job.id);
    let (v, map) = live_map(&cfg).await;
    assert_eq!(v, 1);
    assert_placed(&placement(&db, "accounts", "id").await, &map, "account");
    assert_no_replication_leftovers(&db).await;
    // A new run plans again and completes.
    let done = reshard::run(&cfg, "by_acct", &targets(), &opts(None))
        .await
        .unwrap();
    assert!(done.done && done.job != job.id);
    let (v, map) = live_map(&cfg).await;
    assert_eq!(v, 2);
    let rows = placement(&db, "accounts", "id").await;
    assert_eq!(rows.len(), 500);
    assert_placed(&rows, &map, "account");
    assert_no_replication_leftovers(&db).await;
    // Nothing left to do.
    let again = reshard::run(&cfg, "by_acct", &targets(), &opts(None))
        .await
        .unwrap();
    assert_eq!(again.job, 0);
    let out = cli(&["reshard", "status"]);
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        status.contains(&format!("job {} scheme by_acct: done", done.job))
            && status.contains(&format!("job {} scheme by_acct: aborted", job.id)),
        "{status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_key_moves_under_write_load() {
    let (db, cfg, proxies) = setup("reshard_dir", 10).await;
    let c = connect(&proxies[0], &db).await;
    for n in 0..200i64 {
        c.execute(
            "insert into org_rows (org_id, n) values ('acme', $1)",
            &[&n],
        )
        .await
        .unwrap();
    }
    for n in 0..50i64 {
        c.execute(
            "insert into org_rows (org_id, n) values ('other', $1)",
            &[&n],
        )
        .await
        .unwrap();
    }
    let rows_of = |org: &'static str| {
        let db = db.clone();
        async move {
            let mut on = Vec::new();
            for i in 0..3 {
                let d = direct(i, &db).await;
                let exists: bool = d
                    .query_one("select to_regclass('org_rows') is not null", &[])
                    .await
                    .unwrap()
                    .get(0);
                let n: i64 = if exists {
                    d.query_one("select count(*) from org_rows where org_id = $1", &[&org])
                        .await
                        .unwrap()
                        .get(0)
                } else {
                    0
                };
                on.push(n);
            }
            on
        }
    };
    let before = rows_of("acme").await;
    let from = before
        .iter()
        .position(|&n| n == 200)
        .expect("acme on one shard");
    let other_before = rows_of("other").await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let c = connect(&proxies[1], &db).await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut acked, mut errors) = (Vec::new(), Vec::new());
            let mut n = 1000i64;
            while !stop.load(Ordering::Relaxed) {
                match c
                    .execute(
                        "insert into org_rows (org_id, n) values ('acme', $1)",
                        &[&n],
                    )
                    .await
                {
                    Ok(_) => acked.push(n),
                    Err(e) => errors.push(code(&e)),
                }
                n += 1;
            }
            (acked, errors)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = reshard::move_key(&cfg, "by_org", "acme", "s2", &opts(None))
        .await
        .unwrap_or_else(|e| panic!("directory move failed: {e}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, errors) = writer.await.unwrap();
    eprintln!(
        "moved acme from s{from}: {} rows, pause {:.0} ms; writer {} acked, errors {errors:?}",
        out.rows_copied,
        out.pause_ms,
        acked.len()
    );
    assert!(out.done && acked.len() > 10);
    assert!(errors.iter().all(|c| c == "40001"), "{errors:?}");
    let after = rows_of("acme").await;
    let total = 200 + acked.len() as i64;
    let mut want = vec![0, 0, 0];
    want[2] = total;
    assert_eq!(after, want, "acme rows per shard (from s{from})");
    // Each acknowledged row is there exactly once, and the other tenant did not move.
    let d = direct(2, &db).await;
    let distinct: i64 = d
        .query_one(
            "select count(distinct n) from org_rows where org_id = 'acme'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, total);
    assert_eq!(rows_of("other").await, other_before);
    // Both proxies now read acme from s2.
    for p in &proxies {
        let c = connect(p, &db).await;
        let port: String = c
            .query_one(
                "select current_setting('port') from org_rows where org_id = 'acme' limit 1",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(port, common::cluster().servers[2].port.to_string());
    }
    assert_no_replication_leftovers(&db).await;
}
