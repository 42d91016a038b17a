//! The SHOW commands of the admin console, each rendered as a text table.

use super::Table;
use crate::config::{PoolMode, Scheme};
use crate::frontend::Proxy;
use crate::protocol::{sqlstate, PgError};
use crate::router::Params;

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// Shards: name, address, database, user, whether the pool can reach it, default.
pub fn shards(proxy: &Proxy) -> Table {
    let cfg = proxy.config();
    Table {
        columns: vec!["name", "host", "port", "database", "user", "up", "default"],
        rows: cfg
            .shards
            .iter()
            .zip(proxy.pools())
            .enumerate()
            .map(|(i, (sh, pool))| {
                vec![
                    s(&sh.name),
                    s(&sh.target.host),
                    s(sh.target.port),
                    s(&sh.target.dbname),
                    s(&sh.target.user),
                    s(pool.is_up()),
                    s(i == cfg.default_shard),
                ]
            })
            .collect(),
    }
}

/// Pools, one per shard, with PgBouncer's column names: `cl_active` clients holding one of
/// the shard's connections, `cl_waiting` clients waiting for one, `maxwait` how long the
/// oldest has waited.
pub fn pools(proxy: &Proxy) -> Table {
    let cfg = proxy.config();
    let mode = match cfg.pool.mode {
        PoolMode::Transaction => "transaction",
        PoolMode::Session => "session",
    };
    Table {
        columns: vec![
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "sv_active",
            "sv_idle",
            "maxwait",
            "maxwait_us",
            "pool_mode",
            "pool_size",
        ],
        rows: cfg
            .shards
            .iter()
            .zip(proxy.pools())
            .map(|(sh, pool)| {
                let (waiting, longest) = pool.waiting();
                vec![
                    s(&sh.name),
                    s(&sh.target.user),
                    s(pool.active_count()),
                    s(waiting),
                    s(pool.active_count()),
                    s(pool.idle_count()),
                    s(longest.as_secs()),
                    s(longest.subsec_micros()),
                    s(mode),
                    s(pool.config().size),
                ]
            })
            .collect(),
    }
}

fn time_text(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Seconds from 1970-01-01 to 2000-01-01, Postgres' epoch.
    const PG_EPOCH: i64 = 946_684_800;
    crate::merge::datetime::format_timestamp((secs as i64 - PG_EPOCH) * 1_000_000, true)
}

/// Connected clients (PgBouncer's column names where they exist).
pub fn clients(proxy: &Proxy) -> Table {
    Table {
        columns: vec![
            "type",
            "user",
            "database",
            "state",
            "addr",
            "port",
            "connect_time",
            "request_time",
            "application_name",
            "pid",
        ],
        rows: proxy
            .clients()
            .all()
            .iter()
            .map(|c| {
                vec![
                    s("C"),
                    s(&c.user),
                    s(&c.database),
                    s(c.state().label()),
                    s(c.addr.ip()),
                    s(c.addr.port()),
                    s(time_text(c.connected)),
                    s(time_text(c.last_request())),
                    s(&c.application_name),
                    s(c.pid),
                ]
            })
            .collect(),
    }
}

/// Statement counts and times since start, one row per route class. Times are in
/// microseconds, as in PgBouncer; `avg_query_time` is the mean over all timed requests.
pub fn stats(proxy: &Proxy) -> Table {
    let db = proxy.config().database.clone();
    Table {
        columns: vec![
            "database",
            "route",
            "total_query_count",
            "total_query_time",
            "avg_query_time",
        ],
        rows: proxy
            .metrics()
            .totals()
            .iter()
            .map(|t| {
                vec![
                    s(&db),
                    s(t.class.label()),
                    s(t.queries),
                    s(t.time_us),
                    s(t.time_us.checked_div(t.timed).unwrap_or(0)),
                ]
            })
            .collect(),
    }
}

/// The running configuration (no secrets).
pub fn config(proxy: &Proxy) -> Table {
    let cfg = proxy.config();
    let rows = vec![
        ("listen", cfg.listen.to_string()),
        ("database", cfg.database.clone()),
        ("auth_method", format!("{:?}", cfg.auth_method)),
        ("pool.mode", format!("{:?}", cfg.pool.mode)),
        ("pool.size", cfg.pool.size.to_string()),
        (
            "pool.checkout_timeout",
            format!("{:?}", cfg.pool.checkout_timeout),
        ),
        (
            "pool.connect_timeout",
            format!("{:?}", cfg.pool.connect_timeout),
        ),
        ("shards", cfg.shards.len().to_string()),
        ("default_shard", cfg.shards[cfg.default_shard].name.clone()),
        ("twopc.enabled", cfg.twopc.enabled.to_string()),
        (
            "twopc.orphan_timeout",
            format!("{:?}", cfg.twopc.orphan_timeout),
        ),
        (
            "limits.max_merge_rows",
            cfg.limits.max_merge_rows.to_string(),
        ),
        ("tables", cfg.tables.len().to_string()),
    ];
    Table {
        columns: vec!["key", "value"],
        rows: rows.into_iter().map(|(k, v)| vec![s(k), Some(v)]).collect(),
    }
}

/// The live bucket map of each hash scheme, as runs of buckets per shard.
pub async fn buckets(proxy: &Proxy) -> Table {
    // One snapshot: its router's maps only name shards of its config.
    let snap = proxy.snapshot();
    let cfg = snap.config.clone();
    let maps = snap.router.bucket_maps();
    // Moves in progress, from the catalog: (scheme, bucket) -> (target, job state).
    let mut moving = std::collections::HashMap::new();
    if let Some(c) = proxy.catalog() {
        if let Ok(jobs) = c.recent_jobs(20).await {
            for j in jobs
                .iter()
                .filter(|j| j.state != "done" && j.state != "aborted")
            {
                for m in &j.moves {
                    moving.insert(
                        (j.scheme.clone(), m.bucket),
                        (m.target.clone(), j.state.clone()),
                    );
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (name, scheme) in &cfg.schemes {
        let Scheme::Hash(h) = scheme else { continue };
        let Some(map) = maps.0.get(name) else {
            continue;
        };
        let at = |b: usize| (map[b], moving.get(&(name.clone(), b as i32)));
        let mut start = 0;
        for b in 1..=map.len() {
            if b == map.len() || at(b) != at(start) {
                let (to, state) = match at(start).1 {
                    Some((t, st)) => (s(t), s(st)),
                    None => (None, None),
                };
                rows.push(vec![
                    s(name),
                    s(h.buckets),
                    s(start),
                    s(b - 1),
                    s(&cfg.shards[map[start]].name),
                    to,
                    state,
                ]);
                start = b;
            }
        }
    }
    Table {
        columns: vec![
            "scheme",
            "buckets",
            "first",
            "last",
            "shard",
            "moving_to",
            "move_state",
        ],
        rows,
    }
}

/// In-doubt two-phase transactions on every shard.
pub async fn transactions(proxy: &Proxy) -> Result<Table, PgError> {
    let cfg = proxy.config();
    let catalog = proxy.catalog_for_twopc().await?;
    let (list, unreachable) = crate::twopc::recovery::list(&cfg, &catalog)
        .await
        .map_err(|e| PgError::error(sqlstate::CONNECTION_FAILURE, e.to_string()))?;
    let mut rows: Vec<Vec<Option<String>>> = list
        .into_iter()
        .map(|t| {
            let decision = match t.decision {
                Some(crate::catalog::Outcome::Commit) => "commit",
                Some(crate::catalog::Outcome::Abort) => "abort",
                None => "undecided",
            };
            vec![
                s(&t.shard),
                s(&t.gid),
                s(format!("{:.1}", t.age_secs)),
                s(decision),
                s(t.participants.join(",")),
            ]
        })
        .collect();
    for u in unreachable {
        rows.push(vec![s(u), None, None, s("unreachable"), None]);
    }
    Ok(Table {
        columns: vec!["shard", "gid", "age_s", "decision", "participants"],
        rows,
    })
}

/// The route of a statement, as `shardgate explain` prints it.
pub fn route(proxy: &Proxy, sql: &str) -> Table {
    let text = proxy.router().explain(sql, &Params::default());
    Table {
        columns: vec!["field", "value"],
        rows: text
            .lines()
            .map(|l| match l.split_once(": ") {
                Some((k, v)) => vec![s(k), s(v)],
                None => vec![None, s(l)],
            })
            .collect(),
    }
}
