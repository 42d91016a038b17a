//! Prometheus metrics of one proxy (SPEC section 10).
//!
//! Each [`Metrics`] owns its own `metrics-exporter-prometheus` recorder instead of installing
//! a process-wide one, so tests can run several proxies in one process and read each one's
//! numbers. Hot-path metrics (queries by route, latency, shards per query, errors, 2PC
//! outcomes, limit rejections) are registered once as handles and updated with atomics;
//! gauges that describe state (clients, server connections by state, shard up/down) are
//! filled in from the live pools just before each scrape. `http` serves `/metrics`.

pub mod http;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::router::RouteClass;

/// Route classes in label order (the `route` label of SPEC 10).
const ROUTES: [RouteClass; 5] = [
    RouteClass::Single,
    RouteClass::Multi,
    RouteClass::All,
    RouteClass::Reference,
    RouteClass::Default,
];

/// Kinds of errors the proxy reports to clients (`shardgate_errors_total{kind}`).
pub const ERROR_KINDS: [&str; 11] = [
    "protocol",
    "auth",
    "unknown_database",
    "shard_unavailable",
    "pool_timeout",
    "limit",
    "unsupported",
    "merge_limit",
    "cancelled",
    "server",
    "other",
];

/// Outcomes of multi-shard commits (`shardgate_twopc_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoPcOutcome {
    /// Decision recorded and every participant committed.
    Committed,
    /// Rolled back before a decision was recorded (a PREPARE failed, or the catalog was
    /// unavailable).
    Aborted,
    /// The decision may or may not be recorded; recovery settles it (08007 to the client).
    Unknown,
    /// Settled by a recovery pass.
    RecoveredCommit,
    RecoveredRollback,
}

const OUTCOMES: [(TwoPcOutcome, &str); 5] = [
    (TwoPcOutcome::Committed, "committed"),
    (TwoPcOutcome::Aborted, "aborted"),
    (TwoPcOutcome::Unknown, "unknown"),
    (TwoPcOutcome::RecoveredCommit, "recovered_commit"),
    (TwoPcOutcome::RecoveredRollback, "recovered_rollback"),
];

/// The limits of SPEC 11 (`shardgate_limit_rejections_total{limit}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MaxShardsPerQuery,
    FanoutBudget,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::MaxShardsPerQuery => "max_shards_per_query",
            Limit::FanoutBudget => "fanout_budget_per_minute",
        }
    }
}

/// Resharding gauges, in `Metrics::set_reshard` order, with their help text.
const RESHARD_GAUGES: [(&str, &str); 5] = [
    (
        "shardgate_reshard_jobs_open",
        "Resharding jobs not finished or aborted",
    ),
    (
        "shardgate_reshard_rows_copied",
        "Rows copied to the targets by the most recent resharding job",
    ),
    (
        "shardgate_reshard_bytes_copied",
        "Bytes copied to the targets by the most recent resharding job",
    ),
    (
        "shardgate_reshard_replication_lag_bytes",
        "WAL bytes the targets' subscriptions had not yet confirmed, last measured",
    ),
    (
        "shardgate_reshard_cutover_pause_seconds",
        "Hold-to-switch pause of the most recent resharding cutover",
    ),
];

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];
const SHARD_BUCKETS: [f64; 9] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, 64.0];

const META: Metadata<'static> =
    Metadata::new("shardgate", metrics::Level::INFO, Some(module_path!()));

/// The state of one shard for a scrape.
pub struct ShardSample<'a> {
    pub name: &'a str,
    pub up: bool,
    pub active: usize,
    pub idle: usize,
}

/// One proxy's metrics. Cheap to share: every handle is an `Arc` inside.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    queries: [Counter; 5],
    durations: [Histogram; 5],
    shards_per_query: Histogram,
    errors: [Counter; ERROR_KINDS.len()],
    twopc: [Counter; 5],
    in_doubt: Gauge,
    limits: [Counter; 2],
    clients: Gauge,
    /// Resharding, as recorded in the catalog by `shardgate reshard` (open jobs; the most
    /// recent job's rows and bytes copied, replication lag, cutover pause).
    reshard: [Gauge; 5],
    /// Per route class: statements, timed cycles and their total time in microseconds,
    /// for the admin console's `SHOW STATS`.
    totals: [[AtomicU64; 3]; 5],
}

/// `SHOW STATS` figures for one route class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTotals {
    pub class: RouteClass,
    pub queries: u64,
    pub timed: u64,
    pub time_us: u64,
}

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.clone()))
        .collect();
    Key::from_parts(name, labels)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("shardgate_query_duration_seconds".into()),
                &LATENCY_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("shardgate_shards_per_query".into()),
                    &SHARD_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let r = builder.build_recorder();
        describe(&r);
        let counter =
            |name, labels: &[(&'static str, String)]| r.register_counter(&key(name, labels), &META);
        let route = |c: RouteClass| vec![("route", c.label().to_string())];
        let queries = ROUTES.map(|c| counter("shardgate_queries_total", &route(c)));
        let durations = ROUTES.map(|c| {
            r.register_histogram(&key("shardgate_query_duration_seconds", &route(c)), &META)
        });
        let errors =
            ERROR_KINDS.map(|k| counter("shardgate_errors_total", &[("kind", k.to_string())]));
        let twopc =
            OUTCOMES.map(|(_, o)| counter("shardgate_twopc_total", &[("outcome", o.to_string())]));
        let limits = [Limit::MaxShardsPerQuery, Limit::FanoutBudget].map(|l| {
            counter(
                "shardgate_limit_rejections_total",
                &[("limit", l.label().to_string())],
            )
        });
        let inner = Inner {
            shards_per_query: r.register_histogram(&key("shardgate_shards_per_query", &[]), &META),
            in_doubt: r.register_gauge(&key("shardgate_twopc_in_doubt", &[]), &META),
            clients: r.register_gauge(&key("shardgate_client_connections", &[]), &META),
            totals: Default::default(),
            reshard: RESHARD_GAUGES.map(|(name, _)| r.register_gauge(&key(name, &[]), &META)),
            queries,
            durations,
            errors,
            twopc,
            limits,
            recorder: r,
        };
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// One routed statement: its route class and how many shards it touches.
    pub fn query(&self, class: RouteClass, shards: usize) {
        self.inner.queries[route_index(class)].increment(1);
        self.inner.totals[route_index(class)][0].fetch_add(1, Ordering::Relaxed);
        self.inner.shards_per_query.record(shards as f64);
    }

    /// How long one request cycle took, from routing to the shard's last answer.
    pub fn duration(&self, class: RouteClass, seconds: f64) {
        let i = route_index(class);
        self.inner.durations[i].record(seconds);
        self.inner.totals[i][1].fetch_add(1, Ordering::Relaxed);
        self.inner.totals[i][2].fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Totals by route class since start.
    pub fn totals(&self) -> Vec<RouteTotals> {
        ROUTES
            .iter()
            .zip(&self.inner.totals)
            .map(|(&class, t)| RouteTotals {
                class,
                queries: t[0].load(Ordering::Relaxed),
                timed: t[1].load(Ordering::Relaxed),
                time_us: t[2].load(Ordering::Relaxed),
            })
            .collect()
    }

    /// An error reported to a client, classified by its SQLSTATE.
    pub fn error(&self, sqlstate: &str) {
        self.error_kind(error_kind(sqlstate));
    }

    /// An error a shard raised (forwarded to the client unchanged).
    pub fn server_error(&self) {
        self.error_kind("server");
    }

    fn error_kind(&self, kind: &str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.inner.errors[i].increment(1);
        }
    }

    pub fn twopc(&self, outcome: TwoPcOutcome, n: u64) {
        if let Some(i) = OUTCOMES.iter().position(|(o, _)| *o == outcome) {
            self.inner.twopc[i].increment(n);
        }
    }

    pub fn set_in_doubt(&self, n: usize) {
        self.inner.in_doubt.set(n as f64);
    }

    /// Resharding progress read from the catalog: open jobs, rows and bytes copied,
    /// replication lag in bytes, cutover pause in seconds (of the most recent job).
    pub fn set_reshard(&self, open: i64, rows: i64, bytes: i64, lag: i64, pause_secs: f64) {
        for (g, v) in self.inner.reshard.iter().zip([
            open as f64,
            rows as f64,
            bytes as f64,
            lag as f64,
            pause_secs,
        ]) {
            g.set(v);
        }
    }

    pub fn limit_rejected(&self, limit: Limit) {
        let i = match limit {
            Limit::MaxShardsPerQuery => 0,
            Limit::FanoutBudget => 1,
        };
        self.inner.limits[i].increment(1);
    }

    /// Register an extra gauge (resharding progress and the like) by name and labels.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, String)]) -> Gauge {
        self.inner
            .recorder
            .register_gauge(&key(name, labels), &META)
    }

    /// Register an extra counter by name and labels.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, String)]) -> Counter {
        self.inner
            .recorder
            .register_counter(&key(name, labels), &META)
    }

    /// Fold the histogram samples recorded since the last call into their buckets. The
    /// recorder keeps every raw sample (8 bytes per statement) until a scrape or this upkeep
    /// folds them: without a scraper that grew the proxy by 160 MB over a 30-minute
    /// benchmark. The health loop calls it every 2 s.
    pub fn upkeep(&self) {
        self.inner.recorder.handle().run_upkeep();
    }

    /// The Prometheus text exposition, with the state gauges refreshed from `shards`.
    pub fn render(&self, clients: usize, shards: &[ShardSample<'_>]) -> String {
        let r = &self.inner.recorder;
        self.inner.clients.set(clients as f64);
        for s in shards {
            let shard = ("shard", s.name.to_string());
            r.register_gauge(
                &key("shardgate_shard_up", std::slice::from_ref(&shard)),
                &META,
            )
            .set(if s.up { 1.0 } else { 0.0 });
            for (state, n) in [("active", s.active), ("idle", s.idle)] {
                let labels = [shard.clone(), ("state", state.to_string())];
                r.register_gauge(&key("shardgate_server_connections", &labels), &META)
                    .set(n as f64);
            }
        }
        self.inner.recorder.handle().render()
    }
}

fn route_index(c: RouteClass) -> usize {
    ROUTES.iter().position(|r| *r == c).unwrap_or(0)
}

/// The `kind` label of an error by its SQLSTATE.
pub fn error_kind(sqlstate: &str) -> &'static str {
    match sqlstate {
        "08P01" => "protocol",
        "3D000" => "unknown_database",
        "08006" | "08001" | "08007" => "shard_unavailable",
        "53300" => "pool_timeout",
        "53400" => "limit",
        "0A000" => "unsupported",
        "54000" => "merge_limit",
        "57014" => "cancelled",
        s if s.starts_with("28") => "auth",
        _ => "other",
    }
}

fn describe(r: &PrometheusRecorder) {
    let text = |s: &'static str| SharedString::const_str(s);
    let counters = [
        (
            "shardgate_queries_total",
            "Statements routed, by route class",
        ),
        (
            "shardgate_errors_total",
            "Errors reported to clients, by kind (server = raised by a shard)",
        ),
        (
            "shardgate_twopc_total",
            "Multi-shard commits by outcome, including those settled by recovery",
        ),
        (
            "shardgate_limit_rejections_total",
            "Statements rejected by a limit of the limits: section",
        ),
    ];
    for (name, help) in counters {
        r.describe_counter(name.into(), None, text(help));
    }
    let gauges = [
        ("shardgate_client_connections", "Client connections open"),
        (
            "shardgate_server_connections",
            "Server connections per shard, by state (active = checked out by a client)",
        ),
        (
            "shardgate_shard_up",
            "1 when the shard is reachable, 0 when it is down",
        ),
        (
            "shardgate_twopc_in_doubt",
            "Prepared shardgate transactions left unsettled by the last recovery pass",
        ),
    ];
    for (name, help) in gauges.into_iter().chain(RESHARD_GAUGES) {
        r.describe_gauge(name.into(), None, text(help));
    }
    r.describe_histogram(
        "shardgate_query_duration_seconds".into(),
        Some(Unit::Seconds),
        text("Request cycle latency through the proxy, by route class"),
    );
    r.describe_histogram(
        "shardgate_shards_per_query".into(),
        None,
        text("Shards each routed statement touched"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upkeep_keeps_histogram_counts() {
        let m = Metrics::new();
        for _ in 0..1000 {
            m.duration(RouteClass::Single, 0.0003);
        }
        m.upkeep();
        m.duration(RouteClass::Single, 0.0003);
        let text = m.render(0, &[]);
        let want = "shardgate_query_duration_seconds_count{route=\"single\"} 1001";
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    #[test]
    fn renders_every_family_with_counts() {
        let m = Metrics::new();
        m.query(RouteClass::Single, 1);
        m.query(RouteClass::All, 4);
        m.duration(RouteClass::Single, 0.0003);
        m.error("0A000");
        m.server_error();
        m.twopc(TwoPcOutcome::Committed, 2);
        m.limit_rejected(Limit::FanoutBudget);
        let text = m.render(
            3,
            &[ShardSample {
                name: "s0",
                up: false,
                active: 2,
                idle: 5,
            }],
        );
        for want in [
            "shardgate_queries_total{route=\"single\"} 1",
            "shardgate_queries_total{route=\"all\"} 1",
            "shardgate_errors_total{kind=\"unsupported\"} 1",
            "shardgate_errors_total{kind=\"server\"} 1",
            "shardgate_twopc_total{outcome=\"committed\"} 2",
            "shardgate_limit_rejections_total{limit=\"fanout_budget_per_minute\"} 1",
            "shardgate_client_connections 3",
            "shardgate_shard_up{shard=\"s0\"} 0",
            "shardgate_server_connections{shard=\"s0\",state=\"idle\"} 5",
            "shardgate_query_duration_seconds_bucket{route=\"single\",le=\"0.0005\"} 1",
            "shardgate_shards_per_query_count 2",
            "# TYPE shardgate_query_duration_seconds histogram",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn error_kinds_by_sqlstate() {
        assert_eq!(error_kind("28P01"), "auth");
        assert_eq!(error_kind("08006"), "shard_unavailable");
        assert_eq!(error_kind("53400"), "limit");
        assert_eq!(error_kind("42601"), "other");
    }
}
