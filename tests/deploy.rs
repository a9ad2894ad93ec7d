//! The deploy files agree with the code: every `BLUETICK_*` variable they set is one bluetick
//! reads and parses, every port and probe path is one the processes serve, every command is a
//! real subcommand, every metric the alerts and dashboards use is exported, and every
//! ClickHouse query of the dashboards runs, with the same answers, on ClickHouse 18.16 and on
//! the current release. No Docker engine runs here, so this is how the files are validated.

mod common;

use bluetick::config::Config;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every document of a YAML file, as JSON values.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v: serde_yaml::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"));
            // Compose's `<<: *anchor` merge keys, as Docker applies them.
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{rel}: bad merge key: {e}"));
            serde_json::to_value(v).unwrap_or_else(|e| panic!("{rel}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn files(dir: &str, ext: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("deploy dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if ext.iter().any(|x| p.extension().is_some_and(|e| e == *x)) {
                let rel = p.strip_prefix(root()).expect("under root");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Compose's `${VAR:?msg}` / `${VAR:-default}` with a stand-in value.
fn compose_value(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.starts_with("${") {
        "compose-substituted-0123456789abcdef".into()
    } else {
        s
    }
}

fn port_of(listen: &str) -> u16 {
    listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listen}"))
}

/// Loads bluetick's config from exactly these variables, as a container would.
fn config_from(vars: &BTreeMap<String, String>, what: &str) -> Config {
    let known: BTreeSet<String> = bluetick::config::env_vars().into_iter().collect();
    for var in vars.keys().filter(|v| v.starts_with("BLUETICK_")) {
        assert!(known.contains(var), "{what}: bluetick does not read {var}");
    }
    let vars = vars.clone();
    Config::load_with(None, move |k| vars.get(k).cloned())
        .unwrap_or_else(|e| panic!("{what}: config rejected: {e}"))
}

fn subcommand_exists(sub: &str) {
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
        .args([sub, "--help"])
        .output()
        .expect("run bluetick")
        .status
        .success();
    assert!(ok, "`bluetick {sub}` is not a subcommand");
}

#[test]
fn every_deploy_file_parses() {
    let yaml = files("deploy", &["yaml", "yml"]);
    assert!(yaml.len() >= 10, "{yaml:?}");
    for f in &yaml {
        assert!(!yaml_docs(f).is_empty(), "{f} is empty");
    }
    for f in files("deploy", &["json"]) {
        serde_json::from_str::<Value>(&read(&f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

#[test]
fn compose_matches_the_code() {
    let doc = yaml_docs("deploy/compose/compose.yaml").remove(0);
    let services = doc["services"].as_object().expect("services");
    for need in [
        "kafka",
        "clickhouse",
        "migrate",
        "ingest",
        "sink",
        "retention",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(need), "compose lacks {need}");
    }
    // KRaft, no ZooKeeper.
    assert!(!services.contains_key("zookeeper"));
    assert_eq!(
        services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"],
        "broker,controller"
    );
    let mut ports = BTreeMap::new();
    for (name, svc) in services {
        let Some(env) = svc["environment"].as_object() else {
            continue;
        };
        let command: Vec<String> = svc["command"]
            .as_array()
            .or(svc["entrypoint"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        if !svc["image"]
            .as_str()
            .unwrap_or_default()
            .starts_with("bluetick")
        {
            continue;
        }
        let vars: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.clone(), compose_value(v)))
            .collect();
        let cfg = config_from(&vars, &format!("compose service {name}"));
        let joined = command.join(" ");
        let sub = joined
            .split_whitespace()
            .skip_while(|w| *w != "bluetick")
            .nth(1)
            .map(|w| w.trim_end_matches(';').to_string())
            .or_else(|| command.first().cloned())
            .expect("a command");
        subcommand_exists(&sub);
        ports.insert(name.clone(), (sub, cfg));
    }
    let published = |svc: &str| -> Vec<u16> {
        services[svc]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str()?.rsplit(':').next()?.parse().ok())
            .collect()
    };
    let (_, ingest) = &ports["ingest"];
    assert_eq!(published("ingest"), [port_of(&ingest.ingest.listen)]);
    assert!(
        ingest.ingest.listen.starts_with("0.0.0.0:"),
        "reachable from outside the container"
    );
    let (_, sink) = &ports["sink"];
    assert_eq!(published("sink"), [port_of(&sink.sink.listen)]);
    assert_eq!(ports["migrate"].0, "migrate");
    assert_eq!(ports["retention"].0, "retention");

    // Prometheus scrapes exactly those.
    let prom = yaml_docs("deploy/prometheus/prometheus.yml").remove(0);
    let targets: BTreeSet<String> = prom["scrape_configs"]
        .as_array()
        .expect("scrape configs")
        .iter()
        .flat_map(|j| j["static_configs"].as_array().cloned().unwrap_or_default())
        .flat_map(|c| c["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(String::from))
        .collect();
    let audit_listen = services["audit"]["command"]
        .as_array()
        .and_then(|c| c.iter().skip_while(|w| *w != "--listen").nth(1))
        .and_then(|v| v.as_str())
        .expect("the audit serves its findings");
    let expected: BTreeSet<String> = [
        format!("ingest:{}", port_of(&ingest.ingest.listen)),
        format!("sink:{}", port_of(&sink.sink.listen)),
        format!("audit:{}", port_of(audit_listen)),
    ]
    .into();
    assert_eq!(targets, expected);
    // Key files go only where they are read.
    for (name, (sub, cfg)) in &ports {
        let secrets: BTreeSet<&str> = services[name.as_str()]["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let (pepper, id_key) = keys_read(sub);
        assert_eq!(
            secrets.contains("pepper"),
            pepper,
            "compose service {name}: pepper"
        );
        assert_eq!(
            secrets.contains("id_key"),
            id_key,
            "compose service {name}: id key"
        );
        assert_eq!(!cfg.privacy.pepper_file.is_empty(), pepper, "{name}");
        assert_eq!(!cfg.privacy.id_key_file.is_empty(), id_key, "{name}");
    }
}

/// Which keys a role reads: (pepper, id key). Ingest hashes people and keys ids; the sink keys
/// the raw ids of version 1 events; migrate re-keys rows written before schema 004.
fn keys_read(role: &str) -> (bool, bool) {
    match role {
        "ingest" => (true, true),
        "sink" | "migrate" => (false, true),
        _ => (false, false),
    }
}

/// Containers of every workload in the k8s manifests: (file, kind, name, container).
fn k8s_containers() -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for f in files("deploy/k8s", &["yaml"]) {
        for doc in yaml_docs(&f) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let spec = match kind.as_str() {
                "Deployment" | "StatefulSet" | "Job" => &doc["spec"]["template"]["spec"],
                "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                _ => continue,
            };
            for c in spec["containers"].as_array().into_iter().flatten() {
                out.push((format!("{f} {kind}"), kind.clone(), c.clone()));
            }
        }
    }
    out
}

fn k8s_config_map() -> BTreeMap<String, String> {
    let doc = yaml_docs("deploy/k8s/config.yaml").remove(0);
    assert_eq!(doc["kind"], "ConfigMap");
    let mut vars: BTreeMap<String, String> = doc["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    for secret in yaml_docs("deploy/k8s/secrets.example.yaml") {
        if secret["metadata"]["name"] == "bluetick-secrets" {
            for (k, v) in secret["stringData"].as_object().expect("stringData") {
                vars.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
    }
    vars
}

#[tokio::test]
async fn k8s_matches_the_code() {
    let (cfg, ingest, sink) = pipeline().await;
    let shared = k8s_config_map();
    let kustomized: BTreeSet<String> = yaml_docs("deploy/k8s/kustomization.yaml")[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    let mut roles = BTreeSet::new();
    for (what, kind, c) in k8s_containers() {
        let sub = c["args"][0].as_str().expect("args[0] is the subcommand");
        subcommand_exists(sub);
        roles.insert((kind.clone(), sub.to_string()));
        let mut vars = shared.clone();
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().expect("env name").to_string();
            let value = e["value"].as_str().unwrap_or("sink-0").to_string();
            vars.insert(name, value);
        }
        let loaded = config_from(&vars, &what);
        // Each key file is mounted where it is read, and only there.
        let mounts: Vec<String> = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["mountPath"].as_str().map(String::from))
            .collect();
        let (needs_pepper, needs_id_key) = keys_read(sub);
        for (key, file, needed, secret_dir) in [
            (
                "pepper",
                &loaded.privacy.pepper_file,
                needs_pepper,
                "/etc/bluetick/pepper",
            ),
            (
                "id key",
                &loaded.privacy.id_key_file,
                needs_id_key,
                "/etc/bluetick/id-key",
            ),
        ] {
            let mounted = |f: &str| {
                mounts
                    .iter()
                    .any(|d| !f.is_empty() && Path::new(f).starts_with(d))
            };
            if needed {
                assert!(
                    mounted(file),
                    "{what}: the {key} file {file:?} is not on a mounted volume"
                );
            } else {
                assert!(
                    file.is_empty() && !mounts.iter().any(|d| d == secret_dir),
                    "{what}: {sub} does not read the {key}, so it must not get it"
                );
            }
        }
        let named_port = |name: &str| {
            c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name)
                .and_then(|p| p["containerPort"].as_u64())
        };
        // Probe paths must be served, on the port the process listens on.
        let (listen, live) = match sub {
            "ingest" => (&loaded.ingest.listen, ingest.addr),
            "sink" => (&loaded.sink.listen, sink.metrics),
            _ => continue,
        };
        let port_name = if sub == "ingest" { "http" } else { "metrics" };
        assert_eq!(
            named_port(port_name),
            Some(u64::from(port_of(listen))),
            "{what}"
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            let Some(path) = c[probe]["httpGet"]["path"].as_str() else {
                continue;
            };
            assert_eq!(c[probe]["httpGet"]["port"], port_name, "{what} {probe}");
            let status = get(live, path).await.status;
            assert_eq!(status, 200, "{what}: {probe} {path} answers {status}");
        }
        if sub == "ingest" {
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("Deployment", "ingest"),
        ("StatefulSet", "sink"),
        ("Job", "migrate"),
        ("CronJob", "retention"),
        ("Deployment", "audit"),
    ]
    .iter()
    .map(|(k, s)| (k.to_string(), s.to_string()))
    .collect();
    assert_eq!(roles, expected);
    let kinds: BTreeSet<String> = files("deploy/k8s", &["yaml"])
        .iter()
        .filter(|f| kustomized.iter().any(|r| f.ends_with(r.as_str())))
        .flat_map(|f| yaml_docs(f))
        .filter_map(|d| d["kind"].as_str().map(String::from))
        .collect();
    for need in [
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
        "ConfigMap",
    ] {
        assert!(kinds.contains(need), "k8s lacks a {need}");
    }
    sink.stop().await;
    ingest.stop().await;
    drop_database(&cfg).await;
}

/// Metric names (`bluetick_*`) in a text, with Prometheus' histogram suffixes removed.
fn metrics_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("bluetick_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_string();
        out.insert(base);
    }
    out
}

#[test]
fn alerts_and_dashboards_use_exported_metrics() {
    let exported: BTreeSet<String> = bluetick::metrics::NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut used = metrics_in(&read("deploy/prometheus/alerts.yml"));
    used.extend(metrics_in(&read(
        "deploy/grafana/dashboards/pipeline-health.json",
    )));
    assert!(used.len() >= 15, "{used:?}");
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported by bluetick: {unknown:?}");
}

/// The ClickHouse panels' SQL with Grafana's macros replaced by a fixed window.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/delivery-analytics.json"))
            .expect("dashboard JSON");
    let uids: BTreeSet<String> =
        yaml_docs("deploy/grafana/provisioning/datasources/datasources.yaml")[0]["datasources"]
            .as_array()
            .expect("datasources")
            .iter()
            .filter_map(|d| d["uid"].as_str().map(String::from))
            .collect();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let uid = t["datasource"]["uid"].as_str().unwrap_or_default();
            assert!(
                uids.contains(uid),
                "panel {} uses unknown data source {uid}",
                p["title"]
            );
            let sql = t["rawSql"].as_str().expect("rawSql");
            let sql = sql
                .replace(
                    "$__timeFilter(ts)",
                    "ts >= toDateTime(1749945600) AND ts <= toDateTime(1750204800)",
                )
                .replace("$__fromTime", "toDateTime(1749945600)")
                .replace("$__toTime", "toDateTime(1750204800)");
            assert!(!sql.contains('$'), "unreplaced macro in {sql}");
            out.push((p["title"].as_str().unwrap_or_default().to_string(), sql));
        }
    }
    out
}

#[tokio::test]
async fn dashboard_queries_agree_on_clickhouse_18_16_and_current() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    let db = cfg.clickhouse.database.clone();
    let mut script: Vec<String> = bluetick::migrate::MIGRATIONS
        .iter()
        .flat_map(|m| m.statements())
        .collect();
    script.push(SAMPLE_STATUSES_SQL.into());
    script.push(
        "INSERT INTO inbound_message (event_id, ts, message_id, message_type) VALUES \
         ('i1', 1750000000, 'x1', 'text'), ('i2', 1750000100, 'x2', 'image')"
            .into(),
    );
    script.push(
        "INSERT INTO account_event (event_id, ts, kind, template_name, template_language, \
         update_event) VALUES ('a1', 1750000000, 'template_status', 'order_update', 'en_US', \
         'APPROVED')"
            .into(),
    );
    let queries = dashboard_queries();
    assert!(queries.len() >= 7);
    let first_query = script.len();
    script.extend(queries.iter().map(|(_, sql)| sql.clone()));

    let server = run_on_server(&cfg, &script).await;
    let statements = script.clone();
    let current = tokio::task::spawn_blocking(move || chdb::run(&db, &statements))
        .await
        .expect("chdb thread");
    for (i, (title, sql)) in queries.iter().enumerate() {
        let (old, new) = (&server[first_query + i], &current[first_query + i]);
        assert!(
            !old.trim().is_empty(),
            "{title}: no rows on 18.16 for {sql}"
        );
        assert_eq!(old, new, "{title}: answers differ for {sql}");
    }
    let funnel = &server[first_query];
    assert_eq!(
        funnel, "2025-06-15 00:00:00\t2\t1\t1\t1\n2025-06-16 00:00:00\t1\t0\t0\t0\n",
        "funnel counts each message once"
    );
    drop_database(&cfg).await;
}
