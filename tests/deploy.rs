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
    // Every port on the host's loopback only: the webhook goes behind a TLS proxy.
    for (name, svc) in services {
        for p in svc["ports"].as_array().into_iter().flatten() {
            let p = p.as_str().expect("ports as strings");
            assert!(
                p.starts_with("127.0.0.1:"),
                "{name} publishes {p} beyond loopback"
            );
        }
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
    assert!(
        !ingest.ingest.metrics_listen.is_empty(),
        "ingest serves /metrics on its own listener, not on the webhook's"
    );
    let (_, sink) = &ports["sink"];
    assert!(
        published("sink").is_empty(),
        "only Prometheus reads the sink"
    );
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
    let gateway = &ingest.ops.pushgateway_url;
    assert!(services.contains_key("pushgateway") && services.contains_key("alertmanager"));
    let expected: BTreeSet<String> = [
        format!("ingest:{}", port_of(&ingest.ingest.metrics_listen)),
        format!("sink:{}", port_of(&sink.sink.listen)),
        format!("audit:{}", port_of(audit_listen)),
        gateway.trim_start_matches("http://").to_string(),
    ]
    .into();
    assert_eq!(targets, expected);
    for (name, (_, cfg)) in &ports {
        assert_eq!(
            &cfg.ops.pushgateway_url, gateway,
            "{name} reports to the Pushgateway"
        );
    }
    assert_eq!(
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
        "alertmanager:9093"
    );
    // Each role gets exactly the secrets it reads, as files, and its own ClickHouse user.
    for (name, (sub, cfg)) in &ports {
        let given: BTreeSet<String> = services[name.as_str()]["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        let read: BTreeSet<String> = files_read(cfg)
            .into_iter()
            .map(|(setting, path)| {
                path.strip_prefix("/run/secrets/")
                    .unwrap_or_else(|| panic!("{name}: {setting} = {path} is not a secret file"))
                    .to_string()
            })
            .collect();
        assert_eq!(given, read, "compose service {name}: secrets given vs read");
        assert_role(sub, cfg, &format!("compose service {name}"));
    }
    // Grafana: admin password from a secret, the plugin pinned, its state on a volume, and
    // ClickHouse read as the reader.
    let grafana = &services["grafana"];
    let admin_file = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
        .as_str()
        .expect("Grafana's admin password from a file");
    let grafana_secrets: Vec<&str> = grafana["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(grafana_secrets
        .iter()
        .any(|s| admin_file == format!("/run/secrets/{s}")));
    assert!(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].is_null());
    let plugins = grafana["environment"]["GF_INSTALL_PLUGINS"]
        .as_str()
        .expect("plugins");
    for plugin in plugins.split(',') {
        let version = plugin.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            version.split('.').all(|n| n.parse::<u32>().is_ok()) && !version.is_empty(),
            "plugin {plugin:?} is not pinned to a version"
        );
    }
    assert!(grafana["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v.as_str().is_some_and(|v| v.ends_with(":/var/lib/grafana"))));
    let sources = &yaml_docs("deploy/grafana/provisioning/datasources/datasources.yaml")[0];
    let ch = sources["datasources"]
        .as_array()
        .expect("datasources")
        .iter()
        .find(|d| d["type"] == "grafana-clickhouse-datasource")
        .expect("a ClickHouse data source");
    assert_eq!(ch["jsonData"]["username"], "bluetick_reader");
    let password = ch["secureJsonData"]["password"]
        .as_str()
        .unwrap_or_default();
    assert!(grafana_secrets
        .iter()
        .any(|s| password == format!("$__file{{/run/secrets/{s}}}")));
}

/// Every file a configuration reads: (setting, path).
fn files_read(cfg: &Config) -> Vec<(&'static str, String)> {
    let (i, p, k, c) = (&cfg.ingest, &cfg.privacy, &cfg.kafka, &cfg.clickhouse);
    [
        ("ingest.app_secret_file", &i.app_secret_file),
        (
            "ingest.app_secret_previous_file",
            &i.app_secret_previous_file,
        ),
        ("ingest.verify_token_file", &i.verify_token_file),
        ("privacy.pepper_file", &p.pepper_file),
        ("privacy.pepper_previous_file", &p.pepper_previous_file),
        ("privacy.id_key_file", &p.id_key_file),
        ("kafka.sasl_password_file", &k.sasl_password_file),
        ("kafka.ssl_ca_file", &k.ssl_ca_file),
        ("kafka.ssl_certificate_file", &k.ssl_certificate_file),
        ("kafka.ssl_key_file", &k.ssl_key_file),
        ("clickhouse.password_file", &c.password_file),
        ("clickhouse.ca_file", &c.ca_file),
    ]
    .into_iter()
    .filter(|(_, path)| !path.is_empty())
    .map(|(setting, path)| (setting, path.clone()))
    .collect()
}

/// Least privilege per role: its ClickHouse user (deploy/clickhouse/) and the keys it reads.
/// Ingest hashes people and keys ids, and never touches ClickHouse; the sink keys the raw ids
/// of version 1 events; migrate re-keys rows written before schema 004; nothing else holds
/// the pepper or the id key.
fn assert_role(role: &str, cfg: &Config, what: &str) {
    let (user, pepper, id_key) = match role {
        "ingest" => ("", true, true),
        "sink" => ("bluetick_writer", false, true),
        "migrate" => ("bluetick_admin", false, true),
        "retention" => ("bluetick_admin", false, false),
        "audit" => ("bluetick_reader", false, false),
        other => panic!("{what}: unknown role {other}"),
    };
    let c = &cfg.clickhouse;
    if user.is_empty() {
        assert!(
            c.password_file.is_empty(),
            "{what}: ingest gets no ClickHouse password"
        );
    } else {
        assert_eq!(c.user, user, "{what}: ClickHouse user");
        assert!(
            !c.password_file.is_empty(),
            "{what}: ClickHouse password from a file"
        );
    }
    assert_eq!(
        !cfg.privacy.pepper_file.is_empty(),
        pepper,
        "{what}: pepper"
    );
    assert_eq!(
        !cfg.privacy.id_key_file.is_empty(),
        id_key,
        "{what}: id key"
    );
    let in_env = [
        &cfg.ingest.app_secret,
        &cfg.ingest.verify_token,
        &cfg.privacy.pepper,
        &cfg.privacy.id_key,
        &c.password,
        &cfg.kafka.sasl_password,
    ];
    assert!(
        in_env.iter().all(|s| s.expose().is_empty()),
        "{what}: a secret in the environment rather than in a file"
    );
}

/// Pod specs of every workload in the k8s manifests: (file and kind, kind, pod spec).
fn k8s_pods(docs: &[(String, Value)]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (f, doc) in docs {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let spec = match kind.as_str() {
            "Deployment" | "StatefulSet" | "Job" => &doc["spec"]["template"]["spec"],
            "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        out.push((format!("{f} {kind}"), kind, spec.clone()));
    }
    out
}

fn k8s_docs() -> Vec<(String, Value)> {
    files("deploy/k8s", &["yaml"])
        .into_iter()
        .flat_map(|f| yaml_docs(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

/// The data of the ConfigMaps a container takes with `envFrom`.
fn k8s_env_from(docs: &[(String, Value)], c: &Value) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for source in c["envFrom"].as_array().into_iter().flatten() {
        assert!(
            source["secretRef"].is_null(),
            "secrets are mounted as files, not taken as environment"
        );
        let name = &source["configMapRef"]["name"];
        let (_, map) = docs
            .iter()
            .find(|(_, d)| d["kind"] == "ConfigMap" && d["metadata"]["name"] == *name)
            .unwrap_or_else(|| panic!("no ConfigMap {name}"));
        for (k, v) in map["data"].as_object().expect("data") {
            vars.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    vars
}

#[tokio::test]
async fn k8s_matches_the_code() {
    let (cfg, ingest, sink) = pipeline().await;
    let docs = k8s_docs();
    let mut roles = BTreeSet::new();
    for (what, kind, pod) in k8s_pods(&docs) {
        let c = &pod["containers"][0];
        let sub = c["args"][0].as_str().expect("args[0] is the subcommand");
        subcommand_exists(sub);
        roles.insert((kind.clone(), sub.to_string()));
        let mut vars = k8s_env_from(&docs, c);
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().expect("env name").to_string();
            let value = e["value"].as_str().unwrap_or("sink-0").to_string();
            vars.insert(name, value);
        }
        let loaded = config_from(&vars, &what);
        assert_role(sub, &loaded, &what);
        // Every file read is on a mounted volume; every mounted secret holds a file read.
        let volumes: BTreeMap<&str, &Value> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| (v["name"].as_str().expect("volume name"), v))
            .collect();
        let read = files_read(&loaded);
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let dir = m["mountPath"].as_str().expect("mountPath");
            let volume = volumes[m["name"].as_str().expect("mount name")];
            assert_eq!(m["readOnly"], true, "{what}: {dir} read-only");
            if let Some(secret) = volume["secret"]["secretName"].as_str() {
                assert!(
                    read.iter().any(|(_, f)| Path::new(f).starts_with(dir)),
                    "{what}: {sub} gets secret {secret} at {dir} but reads nothing there"
                );
            }
        }
        for (setting, file) in &read {
            let mounted = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["mountPath"].as_str())
                .any(|d| Path::new(file).starts_with(d));
            assert!(
                mounted,
                "{what}: {setting} = {file} is not on a mounted volume"
            );
        }
        let named_port = |name: &str| {
            c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name)
                .and_then(|p| p["containerPort"].as_u64())
        };
        let annotated = |doc_port: u64| {
            let template = docs
                .iter()
                .find(|(_, d)| d["spec"]["template"]["spec"]["containers"][0]["args"][0] == sub)
                .map(|(_, d)| d["spec"]["template"]["metadata"]["annotations"].clone())
                .unwrap_or_default();
            assert_eq!(
                template["prometheus.io/port"],
                doc_port.to_string(),
                "{what}: Prometheus scrapes the metrics port"
            );
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
        let metrics_port = if sub == "ingest" {
            u64::from(port_of(&loaded.ingest.metrics_listen))
        } else {
            u64::from(port_of(listen))
        };
        assert_eq!(named_port("metrics"), Some(metrics_port), "{what}");
        annotated(metrics_port);
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
    // Init containers: real subcommands and flags, configured like their pod.
    for (what, _, pod) in k8s_pods(&docs) {
        for c in pod["initContainers"].as_array().into_iter().flatten() {
            let args: Vec<&str> = c["args"]
                .as_array()
                .expect("args")
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            let help = std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
                .args([args[0], "--help"])
                .output()
                .expect("help");
            let help = String::from_utf8_lossy(&help.stdout);
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                assert!(
                    help.contains(flag),
                    "{what}: `bluetick {}` has no {flag}",
                    args[0]
                );
            }
            let mut vars = k8s_env_from(&docs, c);
            for e in c["env"].as_array().into_iter().flatten() {
                let name = e["name"].as_str().expect("env name").to_string();
                vars.insert(name, e["value"].as_str().unwrap_or_default().to_string());
            }
            let loaded = config_from(&vars, &what);
            for (setting, file) in files_read(&loaded) {
                let mounted = c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["mountPath"].as_str())
                    .any(|d| Path::new(&file).starts_with(d));
                assert!(mounted, "{what} init: {setting} = {file} is not mounted");
            }
        }
    }
    // The migrate Job is named for the release, so a new release is a new Job.
    let tag = yaml_docs("deploy/k8s/kustomization.yaml")[0]["images"][0]["newTag"]
        .as_str()
        .expect("image tag")
        .replace('.', "-");
    let job = docs
        .iter()
        .find(|(_, d)| d["kind"] == "Job")
        .map(|(_, d)| {
            d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .expect("the migrate Job");
    assert_eq!(job, format!("bluetick-migrate-{tag}"));
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
    sink.stop().await;
    ingest.stop().await;
    drop_database(&cfg).await;
}

/// The manifests as `kubectl kustomize` renders them, one JSON value per object.
fn rendered_k8s() -> Vec<Value> {
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", &root().join("deploy/k8s").to_string_lossy()])
        .output()
        .expect("kubectl (on the machine image; the deploy check needs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("YAML");
            serde_json::to_value(v).expect("JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Pod Security Standards, "restricted" profile (as of Kubernetes 1.25+), applied to one pod
/// spec, plus what this project adds: a read-only root filesystem, requests and limits, no
/// service-account token. Returns every violation.
fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let sc = &pod["securityContext"];
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == true {
            out.push(format!("{host} is set"));
        }
    }
    if pod["automountServiceAccountToken"] != false {
        out.push("the service-account token is mounted".into());
    }
    const VOLUMES: [&str; 8] = [
        "configMap",
        "secret",
        "emptyDir",
        "projected",
        "downwardAPI",
        "persistentVolumeClaim",
        "csi",
        "ephemeral",
    ];
    for v in pod["volumes"].as_array().into_iter().flatten() {
        let kinds: Vec<&String> = v
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|k| *k != "name")
            .collect();
        if kinds.iter().any(|k| !VOLUMES.contains(&k.as_str())) {
            out.push(format!("volume {} is of type {kinds:?}", v["name"]));
        }
    }
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod[*k].as_array().cloned().unwrap_or_default());
    for c in containers {
        let name = c["name"].as_str().unwrap_or("?").to_string();
        let csc = &c["securityContext"];
        let mut bad = |why: &str| out.push(format!("container {name}: {why}"));
        if csc["privileged"] == true {
            bad("privileged");
        }
        if csc["allowPrivilegeEscalation"] != false {
            bad("allowPrivilegeEscalation is not false");
        }
        let drops = csc["capabilities"]["drop"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !drops.iter().any(|d| d == "ALL") {
            bad("capabilities do not drop ALL");
        }
        let adds = csc["capabilities"]["add"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if adds.iter().any(|a| a != "NET_BIND_SERVICE") {
            bad("adds capabilities beyond NET_BIND_SERVICE");
        }
        if csc["runAsNonRoot"] != true && sc["runAsNonRoot"] != true {
            bad("runAsNonRoot is not true");
        }
        if csc["runAsUser"] == 0 || sc["runAsUser"] == 0 {
            bad("runs as uid 0");
        }
        let seccomp = |s: &Value| {
            matches!(
                s["seccompProfile"]["type"].as_str(),
                Some("RuntimeDefault" | "Localhost")
            )
        };
        if !seccomp(csc) && !seccomp(sc) {
            bad("seccompProfile is not RuntimeDefault or Localhost");
        }
        if csc["seLinuxOptions"]["type"]
            .as_str()
            .is_some_and(|t| !["container_t", "container_init_t", "container_kvm_t"].contains(&t))
        {
            bad("seLinuxOptions.type outside the allowed set");
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if p["hostPort"].as_u64().unwrap_or(0) != 0 {
                bad("uses a hostPort");
            }
        }
        if csc["readOnlyRootFilesystem"] != true {
            bad("root filesystem is writable");
        }
        for kind in ["requests", "limits"] {
            for res in ["cpu", "memory"] {
                if c["resources"][kind][res].is_null() {
                    bad(&format!("no {kind}.{res}"));
                }
            }
        }
    }
    out
}

#[test]
fn every_rendered_pod_passes_pod_security_restricted() {
    let rendered = rendered_k8s();
    let namespace = rendered
        .iter()
        .find(|d| d["kind"] == "Namespace")
        .expect("a Namespace");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let docs: Vec<(String, Value)> = rendered
        .iter()
        .map(|d| ("rendered".to_string(), d.clone()))
        .collect();
    let pods = k8s_pods(&docs);
    assert_eq!(pods.len(), 5, "ingest, sink, migrate, retention, audit");
    for (what, _, pod) in &pods {
        let violations = restricted_violations(pod);
        assert!(violations.is_empty(), "{what}: {violations:#?}");
    }
    // The checker itself catches what it is for.
    let mut loose = pods[0].2.clone();
    loose["containers"][0]["securityContext"] = serde_json::json!({"privileged": true});
    loose["hostNetwork"] = true.into();
    loose["automountServiceAccountToken"] = Value::Null;
    let found = restricted_violations(&loose);
    for why in [
        "hostNetwork",
        "token",
        "privileged",
        "allowPrivilegeEscalation",
        "drop ALL",
        "root filesystem",
    ] {
        assert!(
            found.iter().any(|f| f.contains(why)),
            "{why} not caught: {found:#?}"
        );
    }
}

#[test]
fn every_role_has_a_network_policy_and_only_the_webhook_is_public() {
    let rendered = rendered_k8s();
    let policies: Vec<&Value> = rendered
        .iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .collect();
    let deny = policies
        .iter()
        .find(|p| {
            p["spec"]["podSelector"] == serde_json::json!({})
                && p["spec"]["ingress"].is_null()
                && p["spec"]["egress"].is_null()
        })
        .expect("a default-deny policy");
    assert_eq!(
        deny["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    for d in &rendered {
        let template = match d["kind"].as_str() {
            Some("Deployment" | "StatefulSet" | "Job") => &d["spec"]["template"],
            Some("CronJob") => &d["spec"]["jobTemplate"]["spec"]["template"],
            _ => continue,
        };
        let component = &template["metadata"]["labels"]["app.kubernetes.io/component"];
        let policy = policies
            .iter()
            .find(|p| {
                p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == *component
            })
            .unwrap_or_else(|| panic!("no NetworkPolicy for {component}"));
        // A port a pod is reached on is one its container listens on.
        let ports: BTreeSet<u64> = template["spec"]["containers"][0]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["containerPort"].as_u64())
            .collect();
        for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
            for p in rule["ports"].as_array().expect("ingress by port") {
                let port = p["port"].as_u64().expect("numeric port");
                assert!(
                    ports.contains(&port),
                    "{component}: policy opens {port}, unserved"
                );
            }
        }
    }
    let ingress = rendered
        .iter()
        .find(|d| d["kind"] == "Ingress")
        .expect("an Ingress");
    assert!(!ingress["spec"]["tls"].as_array().expect("TLS").is_empty());
    let paths: Vec<Value> = ingress["spec"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| r["http"]["paths"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0]["path"], "/webhook");
    assert_eq!(paths[0]["pathType"], "Exact");
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
        // `bluetick_(a|b)_x` in a regular expression: checked by the alerts' unit tests.
        if !base.ends_with('_') {
            out.insert(base);
        }
    }
    out
}

#[test]
fn alerts_and_dashboards_use_exported_metrics() {
    let exported: BTreeSet<String> = bluetick::metrics::NAMES
        .iter()
        .chain(bluetick::metrics::PUSHED)
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
            let sql = common::chdb::variables_at_all(sql)
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
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(sql) = v["query"].as_str() {
            out.push((format!("variable {}", v["name"]), sql.to_string()));
        }
    }
    out
}

#[tokio::test]
async fn dashboard_queries_agree_on_clickhouse_18_16_and_current() {
    let mut cfg = config();
    cfg.clickhouse.url = clickhouse_url();
    let db = cfg.clickhouse.database.clone();
    let mut script = common::chdb::schema_statements();
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
    // Schema 006: calls, opt-outs, template pauses and re-categorisations, account health, ad
    // attribution, tenants.
    script.push(
        "INSERT INTO call_event (event_id, ts, kind, call_id, update_event, status, direction, \
         duration_s, tenant) VALUES \
         ('c1', 1750000000, 'call', 'k1', 'connect', '', 'USER_INITIATED', 0, 'acme'), \
         ('c2', 1750000120, 'call', 'k1', 'terminate', 'COMPLETED', 'USER_INITIATED', 118, 'acme'), \
         ('c3', 1750000500, 'call', 'k2', 'terminate', 'FAILED', 'BUSINESS_INITIATED', 0, 'acme'), \
         ('c4', 1750090000, 'call', 'k3', 'terminate', 'COMPLETED', 'BUSINESS_INITIATED', 30, 'globex')"
            .into(),
    );
    script.push(
        "INSERT INTO opt_out (event_id, ts, phone_number_id, category, preference, tenant) VALUES \
         ('o1', 1750000000, 'p1', 'marketing_messages', 'stop', 'acme'), \
         ('o1', 1750000000, 'p1', 'marketing_messages', 'stop', 'acme'), \
         ('o2', 1750090000, 'p1', 'marketing_messages', 'resume', 'acme')"
            .into(),
    );
    script.push(
        "INSERT INTO message_status (event_id, ts, message_id, status, phone_number_id, \
         error_code, tenant, waba_id) VALUES ('f9', 1750000300, 'm9', 'failed', 'p1', 131050, \
         'acme', 'w1')"
            .into(),
    );
    script.push(
        "INSERT INTO account_event (event_id, ts, kind, template_name, template_language, \
         update_event, pause_title, previous_category, new_category, alert_type, \
         alert_severity, decision, tenant) VALUES \
         ('a2', 1750000100, 'template_status', 'order_update', 'en_US', 'PAUSED', 'FIRST_PAUSE', '', '', '', '', '', 'acme'), \
         ('a3', 1750000200, 'template_category', 'order_update', 'en_US', '', '', 'UTILITY', 'MARKETING', '', '', '', 'acme'), \
         ('a4', 1750000300, 'account_alert', '', '', '', '', '', '', 'OBA_APPROVED', 'CRITICAL', '', 'acme'), \
         ('a5', 1750000400, 'account_review', '', '', '', '', '', '', '', '', 'APPROVED', 'acme')"
            .into(),
    );
    script.push(
        "INSERT INTO inbound_message (event_id, ts, message_id, message_type, person_hash, \
         ad_source_type, ad_source_id, tenant) VALUES \
         ('i3', 1750000200, 'x3', 'text', 'h1', 'ad', '120208771234567890', 'acme'), \
         ('i4', 1750000300, 'x4', 'text', 'h2', 'ad', '120208771234567890', 'acme')"
            .into(),
    );
    // The sample's days rolled up into the daily aggregates, and a rate card for them.
    for table in bluetick::model::Table::ALL {
        for day in [20_254u64, 20_255] {
            script.extend(bluetick::rollup::statements(table, day, 1));
        }
    }
    script.push(
        "INSERT INTO rate_card_daily (day, country_code, pricing_category, currency, \
         price_micros) VALUES ('2025-06-15', '', 'utility', 'USD', 4000), \
         ('2025-06-15', '', 'marketing', 'USD', 25000)"
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
        funnel, "2025-06-15 00:00:00\t2\t1\t1\t2\n2025-06-16 00:00:00\t1\t0\t0\t0\n",
        "funnel counts each message once (m2 and m9 failed)"
    );
    drop_database(&cfg).await;
}

/// `deploy/clickhouse/roles.sql` for current ClickHouse (SQL access control): every statement
/// parses there (chdb embeds the engine but not its access storage, so it is parsed, not run),
/// and the writer may insert into exactly the tables the sink fills. The same roles through
/// `users.xml` run for real on 18.16 in tests/transit.rs.
#[test]
fn clickhouse_roles_parse_on_current_clickhouse_and_grant_the_sink_its_tables() {
    let text = read("deploy/clickhouse/roles.sql");
    let statements: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(statements.len() >= 10, "{statements:?}");
    let explained: Vec<String> = statements
        .iter()
        .map(|s| format!("EXPLAIN AST {s}"))
        .collect();
    let answers = chdb::run("bluetick", &explained);
    for (s, a) in statements.iter().zip(&answers) {
        let kind = if s.starts_with("GRANT") {
            "GrantQuery"
        } else {
            "CreateRoleQuery"
        };
        assert_eq!(a.trim(), kind, "{s}");
    }
    // Tables the writer may insert into: `GRANT INSERT[, SELECT] ON bluetick.<t> TO bluetick_writer`.
    let writer_inserts: BTreeSet<String> = statements
        .iter()
        .filter(|s| s.ends_with(" TO bluetick_writer") && s.starts_with("GRANT INSERT"))
        .filter_map(|s| {
            let on = s.split(" ON bluetick.").nth(1)?;
            on.split(' ').next().map(String::from)
        })
        .collect();
    let sink_tables: BTreeSet<String> = bluetick::model::tables::Table::ALL
        .iter()
        .map(|t| t.name().to_string())
        .chain(bluetick::rollup::aggregate_tables().map(|(name, _)| name.to_string()))
        .collect();
    assert_eq!(writer_inserts, sink_tables);
    assert!(statements.contains(&"GRANT SELECT ON bluetick.* TO bluetick_reader".to_string()));
    assert!(!statements
        .iter()
        .any(|s| s.contains("TO bluetick_reader") && !s.starts_with("GRANT SELECT")));
}

/// The GitHub anchor of each heading in a Markdown text.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_has_a_runbook_and_a_firing_and_a_quiet_test() {
    let rules = yaml_docs("deploy/prometheus/alerts.yml").remove(0);
    let alerts: Vec<Value> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(alerts.len() >= 15, "{}", alerts.len());
    let tests = yaml_docs("deploy/prometheus/alerts.test.yml").remove(0);
    let mut cases: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for t in tests["tests"].as_array().expect("tests") {
        for a in t["alert_rule_test"].as_array().expect("alert_rule_test") {
            let name = a["alertname"].as_str().expect("alertname").to_string();
            let fires = !a["exp_alerts"].as_array().expect("exp_alerts").is_empty();
            let entry = cases.entry(name).or_default();
            if fires {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }
    let readme = anchors(&read("README.md"));
    for alert in &alerts {
        let name = alert["alert"].as_str().expect("alert name");
        let (firing, quiet) = cases.get(name).copied().unwrap_or_default();
        assert!(
            firing > 0 && quiet > 0,
            "{name}: {firing} firing and {quiet} quiet cases"
        );
        let runbook = alert["annotations"]["runbook"].as_str().unwrap_or_default();
        let anchor = runbook
            .strip_prefix("README.md#")
            .unwrap_or_else(|| panic!("{name}: runbook {runbook:?} is not a README section"));
        assert!(
            readme.contains(anchor),
            "{name}: README has no section #{anchor}"
        );
        assert!(
            ["page", "ticket"].contains(&alert["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
    }
    // The Alertmanager routes both severities somewhere.
    let am = yaml_docs("deploy/alertmanager/alertmanager.yml").remove(0);
    let receivers: BTreeSet<&str> = am["receivers"]
        .as_array()
        .expect("receivers")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(receivers.contains(am["route"]["receiver"].as_str().expect("default receiver")));
    for route in am["route"]["routes"].as_array().expect("routes") {
        assert!(receivers.contains(route["receiver"].as_str().expect("receiver")));
    }
}

/// The ClickHouse config.d file that deploy mounts starts ClickHouse 18.16 and takes effect:
/// random hex (what bluetick's ids and hashes are) compresses to about half with zstd, where
/// lz4, the default, finds nothing to save.
#[tokio::test]
async fn clickhouse_compression_config_runs_on_18_16_and_halves_hex_columns() {
    use common::procs::{free_port, scratch_dir, ClickHouseExtras, ClickHouseServer};
    let ratio = |url: String| async move {
        let mut cfg = config();
        cfg.clickhouse.url = url;
        let client = bluetick::clickhouse::client(&cfg.clickhouse).expect("client");
        for sql in [
            "CREATE TABLE default.hex (id String) ENGINE = MergeTree ORDER BY tuple()",
            "INSERT INTO default.hex SELECT hex(MD5(toString(number))) FROM system.numbers LIMIT 200000",
        ] {
            client.query(sql).execute().await.expect(sql);
        }
        let (compressed, raw): (u64, u64) = client
            .query(
                "SELECT sum(data_compressed_bytes), sum(data_uncompressed_bytes) FROM system.columns \
                 WHERE database = 'default' AND table = 'hex'",
            )
            .fetch_one()
            .await
            .expect("column sizes");
        compressed as f64 / raw as f64
    };
    let dir = scratch_dir("compression");
    for d in ["zstd", "lz4"] {
        std::fs::create_dir_all(dir.join(d)).expect("server dir");
    }
    let zstd = ClickHouseServer::start_with(
        &dir.join("zstd"),
        free_port(),
        free_port(),
        ClickHouseExtras {
            config_d: vec![root().join("deploy/clickhouse/config.d/compression.xml")],
            ..Default::default()
        },
    );
    let lz4 = ClickHouseServer::start(&dir.join("lz4"), free_port(), free_port());
    let (with_config, without) = (ratio(zstd.url.clone()).await, ratio(lz4.url.clone()).await);
    assert!(
        with_config < 0.65 && without > 0.9,
        "compressed/raw: {with_config:.2} with deploy's config, {without:.2} without"
    );
}
