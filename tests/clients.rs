//! The real `psql` and `pgbench` binaries through the proxy: psql scripts, meta-commands that
//! query pg_catalog, and pgbench initialisation plus select-only and TPC-B-like runs in the
//! simple, extended and prepared query modes with zero failed transactions.

mod common;

use common::proxy::{start_proxy, ProxyOpts};

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn psql_script_and_meta_commands() {
    let p = start_proxy("psql", ProxyOpts::default()).await;
    let out = {
        let script = b"create table notes (id serial primary key, body text not null);\n\
            insert into notes (body) values ('one'), ('two');\n\
            begin;\nupdate notes set body = 'TWO' where id = 2;\ncommit;\n\
            select string_agg(body, ',' order by id) from notes;\n\
            \\d notes\n\
            \\dt\n";
        p.psql(&["-A", "-t"], Some(script), &[]).await
    };
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("one,TWO"), "{s}");
    // \d notes: psql's catalog queries through the proxy describe the table.
    assert!(s.contains("body") && s.contains("not null"), "{s}");
    // \dt lists it.
    assert!(s.contains("notes|table|app"), "{s}");
    // An error in a script stops psql with status 3 and the server's message.
    let out = p
        .psql(&[], Some(b"select * from no_such_table;\n"), &[])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("relation \"no_such_table\" does not exist"));
}

/// Parse "number of failed transactions: N" and "number of transactions actually processed:
/// N" from pgbench's report.
fn pgbench_counts(out: &str) -> (u64, u64) {
    let grab = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().split([' ', '/']).next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let processed = grab("number of transactions actually processed:").unwrap_or(0);
    let failed = grab("number of failed transactions:").unwrap_or(u64::MAX);
    (processed, failed)
}

#[tokio::test]
async fn pgbench_all_query_modes() {
    // Six clients share four server connections, so every mode exercises rotation. The test
    // is about protocol correctness: a generous checkout timeout keeps a loaded CI machine
    // from turning slowness into 53300 failures.
    let p = start_proxy(
        "pgbench",
        ProxyOpts {
            pool_size: 4,
            checkout_timeout: "60s",
            ..Default::default()
        },
    )
    .await;
    let init = p.pgbench(&["-i", "-s", "1", "-q"]).await;
    assert!(init.status.success(), "pgbench -i failed: {}", text(&init));
    for mode in ["simple", "extended", "prepared"] {
        for script in [&["-S"][..], &[][..]] {
            let mut args: Vec<String> = vec!["-n", "-c", "6", "-j", "2", "-t", "150", "-M", mode]
                .into_iter()
                .map(String::from)
                .collect();
            args.extend(script.iter().map(|s| s.to_string()));
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = p.pgbench(&a).await;
            let s = text(&out);
            assert!(out.status.success(), "pgbench -M {mode} {script:?}: {s}");
            let (processed, failed) = pgbench_counts(&String::from_utf8_lossy(&out.stdout));
            assert_eq!(processed, 900, "pgbench -M {mode} {script:?}: {s}");
            assert_eq!(failed, 0, "pgbench -M {mode} {script:?}: {s}");
            eprintln!(
                "pgbench -M {mode} {script:?}: {}",
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| l.starts_with("latency") || l.starts_with("tps"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
    }
    // The TPC-B-like runs changed balances consistently: the sums over the three tables agree.
    let c = p.connect().await;
    let r = c
        .query_one(
            "select (select sum(abalance) from pgbench_accounts), (select sum(bbalance) from pgbench_branches), (select sum(delta) from pgbench_history)",
            &[],
        )
        .await
        .unwrap();
    let (a, b, h): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(a, h);
    assert_eq!(b, h);
    let n: i64 = c
        .query_one("select count(*) from pgbench_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3 * 900);
}
