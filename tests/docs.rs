//! The documentation cannot drift from the code it describes: every configuration key the
//! parser accepts has a row in docs/configuration.md, every metric the proxy exports is in
//! docs/operations.md and on the Grafana dashboard (and the dashboard queries nothing else),
//! and every relative link in README.md and docs/ points at a file that exists.
//!
//! The accepted keys are read from the parser itself, not from a list kept here: a mapping
//! with an unknown key is refused with serde's "expected one of `a`, `b`, ..." message,
//! which names every field of that struct.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use shardgate::telemetry::{Metrics, ShardSample};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const SHARDS: &str = "shards: [{ name: s0, url: \"postgres://a@h/d\" }]\n";
const UNKNOWN: &str = "zz_not_a_key";

/// The fields of the struct at the place where `yaml` puts the unknown key, from the error.
fn fields_at(yaml: &str) -> Vec<String> {
    let err = shardgate::config::parse(yaml, Path::new("t.yaml"))
        .map(|_| ())
        .expect_err("an unknown key must be refused");
    let reason = err.reason;
    let (_, expected) = reason
        .split_once("expected")
        .unwrap_or_else(|| panic!("no field list in {reason:?} for\n{yaml}"));
    let fields: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!fields.is_empty(), "{reason}");
    fields
}

/// Every accepted key, each spelled as docs/configuration.md spells its row.
fn accepted_keys() -> Vec<String> {
    let u = UNKNOWN;
    // (how the docs spell a key of this struct, YAML placing an unknown key in that struct)
    let places: Vec<(&str, String)> = vec![
        ("{}", format!("{u}: 1\n{SHARDS}")),
        ("admin.{}", format!("admin: {{ {u}: 1 }}\n{SHARDS}")),
        ("users[].{}", format!("users: [{{ {u}: 1 }}]\n{SHARDS}")),
        ("pool.{}", format!("pool: {{ {u}: 1 }}\n{SHARDS}")),
        ("shards[].{}", format!("shards: [{{ {u}: 1 }}]\n")),
        ("{}", format!("{SHARDS}schemes: {{ x: {{ {u}: 1 }} }}\n")),
        (
            "map[].{}",
            format!("{SHARDS}schemes: {{ x: {{ type: hash, map: [{{ {u}: 1 }}] }} }}\n"),
        ),
        (
            "ranges[].{}",
            format!("{SHARDS}schemes: {{ x: {{ type: range, ranges: [{{ {u}: 1 }}] }} }}\n"),
        ),
        ("{}", format!("{SHARDS}tables: {{ t: {{ {u}: 1 }} }}\n")),
        ("twopc.{}", format!("twopc: {{ {u}: 1 }}\n{SHARDS}")),
        ("limits.{}", format!("limits: {{ {u}: 1 }}\n{SHARDS}")),
        ("tls.{}", format!("tls: {{ {u}: 1 }}\n{SHARDS}")),
    ];
    let mut keys = Vec::new();
    for (spelling, yaml) in places {
        for field in fields_at(&yaml) {
            keys.push(spelling.replace("{}", &field));
        }
    }
    keys
}

#[test]
fn every_accepted_config_key_has_a_row_in_the_configuration_reference() {
    let doc = read("docs/configuration.md");
    let keys = accepted_keys();
    // A sanity check that the extraction saw the structs it should.
    for k in [
        "listen",
        "pool.size",
        "users[].password",
        "ranges[].below",
        "key_type",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} not found among {keys:?}");
    }
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !doc.lines().any(|l| l.starts_with(&format!("| `{k}` |"))))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md has no table row (| `key` | ...) for: {missing:?}"
    );
}

/// Metric families on a rendered page (`# TYPE name kind`), with one shard and some
/// traffic so that every family is present.
fn exported_metrics() -> BTreeSet<String> {
    let m = Metrics::new();
    let page = m.render(
        1,
        &[ShardSample {
            name: "s0",
            up: true,
            active: 1,
            idle: 1,
        }],
    );
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `shardgate_*` names in a text, with histogram series suffixes folded onto the family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("shardgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(family.to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_spec_metrics_are_exported() {
    let exported = exported_metrics();
    for name in [
        "shardgate_client_connections",
        "shardgate_queries_total",
        "shardgate_query_duration_seconds",
        "shardgate_shards_per_query",
        "shardgate_server_connections",
        "shardgate_shard_up",
        "shardgate_twopc_total",
        "shardgate_twopc_in_doubt",
        "shardgate_errors_total",
        "shardgate_limit_rejections_total",
    ] {
        assert!(exported.contains(name), "{name} not on {exported:?}");
    }
}

#[test]
fn dashboard_queries_only_exported_metrics_and_shows_all_of_them() {
    let exported = exported_metrics();
    let dash: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("deploy/grafana-dashboard.json")).expect("valid JSON");
    let panels = dash["panels"].as_sequence().expect("panels");
    let mut queried = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().expect("a panel id")),
            "duplicate id"
        );
        let targets = panel["targets"].as_sequence().expect("targets");
        assert!(
            !targets.is_empty(),
            "panel {:?} queries nothing",
            panel["title"]
        );
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr} queries no shardgate metric");
            queried.extend(names);
        }
    }
    let unknown: Vec<_> = queried.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the proxy does not export: {unknown:?}"
    );
    let unshown: Vec<_> = exported.difference(&queried).collect();
    assert!(
        unshown.is_empty(),
        "exported but not on the dashboard: {unshown:?}"
    );
}

#[test]
fn operations_doc_lists_exactly_the_exported_metrics() {
    let doc = read("docs/operations.md");
    let rows: BTreeSet<String> = doc
        .lines()
        .filter(|l| l.starts_with("| `shardgate_"))
        .flat_map(metric_names)
        .collect();
    assert_eq!(
        rows,
        exported_metrics(),
        "the metrics table of docs/operations.md"
    );
}

#[test]
fn relative_links_in_readme_and_docs_resolve() {
    let mut files = vec![repo("README.md"), repo("ARCHITECTURE.md")];
    for entry in std::fs::read_dir(repo("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            let tail = &rest[at + 2..];
            let end = tail.find(')').unwrap_or(tail.len());
            let target = &tail[..end];
            rest = &tail[end..];
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap();
            if !file.parent().unwrap().join(path).exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}
