//! The files a new user copies from the repository still work: every example config loads,
//! and the container files (Dockerfile, docker-compose.yml, the Prometheus and Grafana
//! provisioning) agree with each other and with the config format.
//!
//! No container engine runs here, so the container files are checked statically: parsed,
//! cross-checked (ports, mounted paths, the mounted config loads, scrape target), and the
//! Prometheus config is validated by `promtool` (Debian package `prometheus`, installed by
//! `.ci/run`). What this cannot prove is that the images build and start; see docs/docker.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use shardgate::config::{self, Config, KeyType, Scheme, TableConfig};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn load(path: &str) -> Config {
    config::load(&repo(path)).unwrap_or_else(|e| panic!("{path} does not load: {e}"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn names(cfg: &Config) -> Vec<&str> {
    cfg.shards.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn every_config_in_config_dir_loads() {
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(repo("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            config::load(&path).unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
            loaded.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    loaded.sort();
    assert_eq!(
        loaded,
        [
            "compose.yaml",
            "directory.yaml",
            "minimal.yaml",
            "range.yaml",
            "shardgate.yaml"
        ],
        "a new example config? add it here and to the list in docs/configuration.md"
    );
}

#[test]
fn the_spec_example_is_the_shipped_default() {
    let cfg = load("config/shardgate.yaml");
    assert_eq!(names(&cfg), ["s0", "s1"]);
    assert_eq!(cfg.metrics_listen.map(|a| a.port()), Some(9930));
    for scheme in ["by_user", "by_event", "by_org"] {
        assert!(cfg.schemes.contains_key(scheme), "{scheme}");
    }
}

#[test]
fn minimal_config_is_one_shard_and_nothing_sharded() {
    let cfg = load("config/minimal.yaml");
    assert_eq!(names(&cfg), ["s0"]);
    assert!(cfg.schemes.is_empty() && cfg.tables.is_empty());
}

#[test]
fn range_example_has_integer_and_text_ranges() {
    let cfg = load("config/range.yaml");
    let ranges = cfg
        .schemes
        .values()
        .filter(|s| matches!(s, Scheme::Range(_)))
        .count();
    assert_eq!(ranges, 2);
    // events and event_tags share a scheme, so joins on the key are co-located.
    let scheme = |t: &str| match &cfg.tables[t] {
        TableConfig::Sharded { scheme, .. } => scheme.clone(),
        TableConfig::Reference => panic!("{t} should be sharded"),
    };
    assert_eq!(scheme("events"), "by_event_id");
    assert_eq!(scheme("event_tags"), "by_event_id");
    assert!(matches!(
        &cfg.tables["logs"],
        TableConfig::Sharded {
            key_type: KeyType::Text,
            ..
        }
    ));
}

#[test]
fn directory_example_has_a_directory_scheme_with_a_fallback() {
    let cfg = load("config/directory.yaml");
    match &cfg.schemes["by_tenant"] {
        Scheme::Directory(d) => assert_eq!(d.fallback, "tenant_hash"),
        _ => panic!("by_tenant should be a directory scheme"),
    }
}

/// The services of docker-compose.yml by name.
fn services() -> serde_yaml_ng::Mapping {
    yaml("docker-compose.yml")["services"]
        .as_mapping()
        .expect("services: is a mapping")
        .clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Bind mounts of a service as (source in the repo, target in the container).
fn mounts(service: &Value) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().expect("a target"));
            (src.trim_start_matches("./").to_owned(), dst.to_owned())
        })
        .collect()
}

#[test]
fn compose_shards_are_postgres_15_ready_for_2pc_and_logical_replication() {
    let services = services();
    for i in 0..4 {
        let name = format!("shard{i}");
        let s = &services[name.as_str()];
        assert_eq!(s["image"].as_str(), Some("postgres:15"), "{name}");
        let command = strings(&s["command"]).join(" ");
        let prepared: u32 = command
            .split_whitespace()
            .find_map(|w| w.strip_prefix("max_prepared_transactions="))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no max_prepared_transactions in {command}"));
        // At least pool.size, so that every pooled connection can hold a prepared transaction.
        assert!(prepared >= load("config/compose.yaml").pool.size);
        assert!(command.contains("wal_level=logical"), "{name}: {command}");
        assert!(s["healthcheck"]["test"].as_sequence().is_some(), "{name}");
    }
}

#[test]
fn compose_shardgate_mounts_a_config_that_loads_and_matches_the_services() {
    let services = services();
    let sg = &services["shardgate"];
    assert_eq!(sg["build"].as_str(), Some("."));
    let ports = strings(&sg["ports"]);
    assert!(ports.contains(&"6432:6432".to_string()), "{ports:?}");
    assert!(ports.contains(&"9930:9930".to_string()), "{ports:?}");
    let mounted: Vec<_> = mounts(sg)
        .into_iter()
        .filter(|(_, dst)| dst == "/etc/shardgate/shardgate.yaml")
        .collect();
    assert_eq!(mounted.len(), 1, "the config mount: {:?}", mounts(sg));
    let cfg = load(&mounted[0].0);
    // Reachable from outside the container on the published ports.
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:6432");
    assert_eq!(
        cfg.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:9930")
    );
    // Every shard URL names a compose service that the proxy waits for.
    let depends = sg["depends_on"].as_mapping().expect("depends_on");
    for shard in &cfg.shards {
        let host = shard.target.host.as_str();
        assert!(
            services.contains_key(host),
            "{host} is not a compose service"
        );
        assert_eq!(
            depends[host]["condition"].as_str(),
            Some("service_healthy"),
            "shardgate should wait for {host}"
        );
    }
}

#[test]
fn compose_bind_mounts_exist_in_the_repository() {
    for (name, service) in services() {
        for (src, _) in mounts(&service) {
            assert!(
                repo(&src).is_file(),
                "service {:?} mounts ./{src}, which is not in the repository",
                name.as_str()
            );
        }
    }
}

#[test]
fn prometheus_scrapes_the_proxy_and_its_config_is_valid() {
    let services = services();
    let prom = &services["prometheus"];
    let (src, _) = mounts(prom)
        .into_iter()
        .find(|(_, dst)| dst == "/etc/prometheus/prometheus.yml")
        .expect("prometheus.yml is mounted");
    let doc = yaml(&src);
    let targets: Vec<String> = doc["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|sc| strings(&sc["targets"]))
        .collect();
    assert_eq!(targets, ["shardgate:9930"]);
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(repo(&src))
        .output()
        .expect("promtool (Debian package prometheus) must be installed; .ci/run installs it");
    assert!(out.status.success(), "promtool check config: {out:?}");
}

#[test]
fn grafana_provisioning_points_at_the_dashboard_and_datasource() {
    let services = services();
    let mounts = mounts(&services["grafana"]);
    let dashboard = mounts
        .iter()
        .find(|(src, _)| src == "deploy/grafana-dashboard.json")
        .expect("the dashboard is mounted");
    let provider = mounts
        .iter()
        .find(|(_, dst)| dst.contains("provisioning/dashboards"))
        .expect("a dashboard provider");
    let dir = yaml(&provider.0)["providers"][0]["options"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        dashboard.1.starts_with(&format!("{dir}/")),
        "{dashboard:?} not in {dir}"
    );
    let source = mounts
        .iter()
        .find(|(_, dst)| dst.contains("provisioning/datasources"))
        .expect("a datasource");
    let uid = yaml(&source.0)["datasources"][0]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    // JSON is YAML: the dashboard's panels use that datasource uid.
    let dash = yaml("deploy/grafana-dashboard.json");
    for panel in dash["panels"].as_sequence().unwrap() {
        assert_eq!(panel["datasource"]["uid"].as_str(), Some(uid.as_str()));
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_serves_the_mounted_config() {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let from: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "{from:?}");
    assert!(from[0].starts_with("FROM rust:") && from[0].ends_with(" AS build"));
    assert!(from[1].starts_with("FROM debian:bookworm-slim"));
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER instruction");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "USER {user}"
    );
    assert!(instructions.contains(&"EXPOSE 6432 9930"));
    assert_eq!(
        instructions.last(),
        Some(&r#"ENTRYPOINT ["shardgate", "serve", "-c", "/etc/shardgate/shardgate.yaml"]"#)
    );
    // The build copies only what exists; the manifest and lock file pin the dependencies.
    for copied in ["Cargo.toml", "Cargo.lock", "src"] {
        assert!(repo(copied).exists(), "{copied}");
    }
    assert!(text.contains("--locked"));
}
