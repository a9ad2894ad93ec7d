//! Configuration: a TOML file (`--config`, see `bluetick.example.toml`) with every key
//! overridable from the environment as `BLUETICK_<SECTION>_<KEY>` (e.g. `BLUETICK_KAFKA_BROKERS`),
//! plus the short names in [`ALIASES`] for the keys deploy files set most.
//!
//! Invariant: a config that loads is complete — unknown keys, wrong types and missing secrets
//! fail at start with a message naming the key, never later in a request.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Short environment names agreed with deploy files: (variable, section, key).
pub const ALIASES: &[(&str, &str, &str)] = &[
    ("BLUETICK_LISTEN", "ingest", "listen"),
    ("BLUETICK_APP_SECRET", "ingest", "app_secret"),
    (
        "BLUETICK_APP_SECRET_PREVIOUS",
        "ingest",
        "app_secret_previous",
    ),
    ("BLUETICK_VERIFY_TOKEN", "ingest", "verify_token"),
    ("BLUETICK_PEPPER", "privacy", "pepper"),
    ("BLUETICK_PEPPER_FILE", "privacy", "pepper_file"),
    ("BLUETICK_PEPPER_PREVIOUS", "privacy", "pepper_previous"),
    (
        "BLUETICK_PEPPER_PREVIOUS_FILE",
        "privacy",
        "pepper_previous_file",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {var}: expected {expected}, got {value:?}")]
    Env {
        var: String,
        expected: &'static str,
        value: String,
    },
    #[error("config: {0}")]
    Shape(String),
    #[error("config key {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// A secret string: never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<empty>"
        } else {
            "<redacted>"
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub ingest: IngestConfig,
    pub privacy: PrivacyConfig,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    pub sink: SinkConfig,
    pub retention: RetentionConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address the webhook server binds, `host:port`.
    pub listen: String,
    /// Meta app secret: X-Hub-Signature-256 is HMAC-SHA256 of the body under it.
    pub app_secret: Secret,
    /// The secret being rotated out; accepted as well while set.
    pub app_secret_previous: Secret,
    /// Token Meta echoes in the GET verification handshake.
    pub verify_token: Secret,
    /// Larger bodies answer 413. Meta batches up to 1000 updates (a few MB).
    pub max_body_bytes: u64,
    /// A client must send all request headers within this time.
    pub header_read_timeout_ms: u64,
    /// A client must send the whole body within this time (slow clients answer 408).
    pub body_read_timeout_ms: u64,
    /// How long a request waits for the broker to ack its events before answering 503.
    pub produce_timeout_ms: u64,
    /// Requests in progress beyond this answer 503 at once.
    pub max_in_flight_requests: u64,
    /// `Retry-After` seconds on 503 answers.
    pub retry_after_secs: u64,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace_ms: u64,
    /// Security events waiting for the broker beyond this are counted and dropped, so a flood
    /// of forged requests cannot fill the producer queue that real webhooks need.
    pub max_pending_security_events: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: "127.0.0.1:8080".into(),
            app_secret: Secret::default(),
            app_secret_previous: Secret::default(),
            verify_token: Secret::default(),
            max_body_bytes: 4 * 1024 * 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            produce_timeout_ms: 5_000,
            max_in_flight_requests: 4_096,
            retry_after_secs: 5,
            shutdown_grace_ms: 10_000,
            max_pending_security_events: 1_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Key of the phone-number hash. Prefer `pepper_file` in production.
    pub pepper: Secret,
    /// File holding the pepper (trailing newline ignored); wins over `pepper`.
    pub pepper_file: String,
    /// The pepper before the last rotation: rows written before it carry hashes under this
    /// one until they age out, so `erase`/`export --previous-pepper` search with both.
    pub pepper_previous: Secret,
    pub pepper_previous_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    pub events_topic: String,
    pub security_topic: String,
    /// Signed bodies that cannot parse, kept raw.
    pub dead_letter_topic: String,
    /// Partitions of topics bluetick creates; sink replicas scale up to this.
    pub partitions: i32,
    pub replication_factor: i32,
    /// Create missing topics at start (production clusters often forbid auto-creation).
    pub create_topics: bool,
    /// `zstd`, `lz4`, `snappy`, `gzip` or `none`.
    pub compression: String,
    /// Codec level (librdkafka compression.level); -1 = the codec's default. zstd at 1
    /// compresses event records as well as at its default 3, and librdkafka starts a fresh
    /// compression context per batch, whose tables grow with the level.
    pub compression_level: i32,
    pub linger_ms: u64,
    /// Producer queue bound; a full queue answers 503 (librdkafka queue.buffering.max.messages).
    pub queue_max_messages: u64,
    /// Producer queue bound in KiB (librdkafka queue.buffering.max.kbytes).
    pub queue_max_kib: u64,
    /// Largest record; must exceed `ingest.max_body_bytes` so dead-lettered bodies fit.
    pub message_max_bytes: u64,
    /// How long the producer retries a record (librdkafka message.timeout.ms). Longer than
    /// `ingest.produce_timeout_ms` on purpose: see `kafka::producer`.
    pub message_timeout_ms: u64,
    /// librdkafka debug contexts for troubleshooting (e.g. `cgrp,fetch`); empty = off.
    pub debug: String,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            events_topic: "bluetick.events.v1".into(),
            security_topic: "bluetick.security.v1".into(),
            dead_letter_topic: "bluetick.dead-letter.v1".into(),
            partitions: 6,
            replication_factor: 1,
            create_topics: true,
            compression: "zstd".into(),
            compression_level: 1,
            linger_ms: 5,
            queue_max_messages: 200_000,
            queue_max_kib: 256 * 1024,
            message_max_bytes: 5 * 1024 * 1024,
            message_timeout_ms: 300_000,
            debug: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: Secret,
    /// How rows travel to ClickHouse. lz4 costs the sink about a tenth of its CPU and shrinks
    /// the traffic several times; `none` suits a sink on the same host as ClickHouse.
    pub compression: WireCompression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireCompression {
    Lz4,
    None,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "bluetick".into(),
            user: "default".into(),
            password: Secret::default(),
            compression: WireCompression::Lz4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Kafka consumer group; sink replicas in one group share the partitions.
    pub group_id: String,
    /// Static group membership (Kafka `group.instance.id`): a sink restarted under the same
    /// id takes its partitions back at once instead of waiting out the session timeout. Give
    /// each replica its own stable id (e.g. the pod name of a StatefulSet); empty = dynamic.
    pub instance_id: String,
    /// Address of the sink's /metrics and /healthz, `host:port`.
    pub listen: String,
    /// A batch is written when it holds this many records…
    pub batch_max_rows: u64,
    /// …or this many bytes of Kafka payload…
    pub batch_max_bytes: u64,
    /// …or its first record waited this long.
    pub batch_max_age_ms: u64,
    /// One INSERT may take this long before it counts as failed and is retried.
    pub insert_timeout_ms: u64,
    /// First wait after a failed INSERT; doubles per failure up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            group_id: "bluetick-sink".into(),
            instance_id: String::new(),
            listen: "127.0.0.1:9091".into(),
            batch_max_rows: 50_000,
            batch_max_bytes: 32 * 1024 * 1024,
            batch_max_age_ms: 1_000,
            insert_timeout_ms: 30_000,
            retry_initial_ms: 250,
            retry_max_ms: 30_000,
        }
    }
}

/// The retention policy, in one place: per table, the days it keeps (counted from the event
/// time) and the basis a BSP publishes for keeping it. `bluetick retention` drops a day's
/// partition once all of it is older; the sink does not write rows already that old;
/// `bluetick retention --report` prints this policy against what the tables hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub message_status_days: u32,
    pub message_status_basis: String,
    pub inbound_message_days: u32,
    pub inbound_message_basis: String,
    pub account_event_days: u32,
    pub account_event_basis: String,
    pub security_event_days: u32,
    pub security_event_basis: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            message_status_days: 90,
            message_status_basis: "messaging metadata: delivery analytics and billing \
                reconciliation for the business (contract); masked number + keyed hash only"
                .into(),
            inbound_message_days: 90,
            inbound_message_basis: "messaging metadata: type and time of inbound messages, \
                no content (contract); masked number + keyed hash only"
                .into(),
            account_event_days: 90,
            account_event_basis: "business account, template and quality updates; \
                no personal data (legitimate interest)"
                .into(),
            security_event_days: 180,
            security_event_basis: "security log: refused requests with source IP, reason \
                and time (legitimate interest: fraud and abuse prevention)"
                .into(),
        }
    }
}

impl Config {
    /// Reads `path` (if any), then applies `BLUETICK_*` variables from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(path, |var| std::env::var(var).ok())
    }

    /// As [`Config::load`], with the environment given as a lookup (for tests).
    pub fn load_with(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => read_table(p)?,
            None => toml::Table::new(),
        };
        apply_env(&mut table, &env)?;
        let cfg: Config = table
            .try_into()
            // The full text names the key (`in `kafka.partitions``) on a line of its own.
            .map_err(|e: toml::de::Error| {
                ConfigError::Shape(e.to_string().trim_end().replace('\n', " "))
            })?;
        Ok(cfg)
    }

    /// Checks what `bluetick ingest` needs, naming the first missing key.
    pub fn check_ingest(&self) -> Result<(), ConfigError> {
        let i = &self.ingest;
        if i.app_secret.is_empty() {
            return Err(missing("ingest.app_secret", "BLUETICK_APP_SECRET"));
        }
        if i.verify_token.is_empty() {
            return Err(missing("ingest.verify_token", "BLUETICK_VERIFY_TOKEN"));
        }
        if i.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "ingest.listen",
                reason: format!("{:?} is not host:port", i.listen),
            });
        }
        if self.kafka.message_max_bytes <= i.max_body_bytes {
            return Err(ConfigError::Invalid {
                key: "kafka.message_max_bytes",
                reason: "must exceed ingest.max_body_bytes so dead-lettered bodies fit".into(),
            });
        }
        Ok(())
    }

    /// The key of the phone-number hash, from `privacy.pepper_file` or `privacy.pepper`.
    pub fn pepper(&self) -> Result<Secret, ConfigError> {
        let p = &self.privacy;
        read_key(
            &p.pepper,
            &p.pepper_file,
            "privacy.pepper",
            "BLUETICK_PEPPER",
        )
    }

    /// The pepper before the last rotation (`privacy.pepper_previous[_file]`).
    pub fn previous_pepper(&self) -> Result<Secret, ConfigError> {
        let p = &self.privacy;
        read_key(
            &p.pepper_previous,
            &p.pepper_previous_file,
            "privacy.pepper_previous",
            "BLUETICK_PEPPER_PREVIOUS",
        )
    }
}

/// A key given inline or, winning over it, in a file (trailing newline ignored); 16+ bytes.
fn read_key(
    value: &Secret,
    file: &str,
    key: &'static str,
    var: &str,
) -> Result<Secret, ConfigError> {
    let secret = if file.is_empty() {
        value.clone()
    } else {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
            key,
            reason: format!("cannot read {file}: {e}"),
        })?;
        Secret(text.trim_end_matches(['\r', '\n']).to_string())
    };
    if secret.0.len() < 16 {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("set {var} or {var}_FILE to a secret of 16+ bytes"),
        });
    }
    Ok(secret)
}

fn missing(key: &'static str, var: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: format!("required; set it in the config file or as {var}"),
    }
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Overlays environment variables on `table`, typed like each key's default.
fn apply_env(
    table: &mut toml::Table,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let defaults =
        toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Shape(e.to_string()))?;
    for (section, keys) in &defaults {
        let Some(keys) = keys.as_table() else {
            continue;
        };
        for (key, default) in keys {
            for var in env_names(section, key) {
                if let Some(raw) = env(&var) {
                    let value = typed_like(default, &var, raw)?;
                    let sect = table
                        .entry(section.clone())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    if let Some(sect) = sect.as_table_mut() {
                        sect.insert(key.clone(), value);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Variables the binary reads besides the config keys: the config file path and the log filter.
pub const PROCESS_ENV: &[&str] = &["BLUETICK_CONFIG", "BLUETICK_LOG"];

/// Every environment variable bluetick reads: each key's generic name, the aliases, and
/// [`PROCESS_ENV`]. Deploy files are checked against this list, so a misspelt variable in a
/// manifest fails a test instead of being silently ignored in production.
pub fn env_vars() -> Vec<String> {
    let mut vars: Vec<String> = PROCESS_ENV.iter().map(|v| v.to_string()).collect();
    if let Ok(defaults) = toml::Table::try_from(Config::default()) {
        for (section, keys) in &defaults {
            for key in keys.as_table().into_iter().flat_map(|t| t.keys()) {
                vars.extend(env_names(section, key));
            }
        }
    }
    vars
}

/// The generic name first, then any alias, so an alias set wins over the generic name.
fn env_names(section: &str, key: &str) -> Vec<String> {
    let mut names = vec![format!("BLUETICK_{}_{}", section, key).to_uppercase()];
    names.extend(
        ALIASES
            .iter()
            .filter(|(_, s, k)| *s == section && *k == key)
            .map(|(v, _, _)| v.to_string()),
    );
    names
}

fn typed_like(default: &toml::Value, var: &str, raw: String) -> Result<toml::Value, ConfigError> {
    let bad = |expected| ConfigError::Env {
        var: var.to_string(),
        expected,
        value: raw.clone(),
    };
    Ok(match default {
        toml::Value::Integer(_) => {
            toml::Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?)
        }
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(bad("true or false")),
        }),
        _ => toml::Value::String(raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn env_only_config_starts_ingest() {
        let cfg = Config::load_with(
            None,
            env(&[
                ("BLUETICK_APP_SECRET", "s3cret"),
                ("BLUETICK_VERIFY_TOKEN", "tok"),
                ("BLUETICK_PEPPER", "0123456789abcdef"),
                ("BLUETICK_KAFKA_BROKERS", "k1:9092,k2:9092"),
                ("BLUETICK_INGEST_MAX_BODY_BYTES", "1024"),
            ]),
        )
        .expect("loads");
        cfg.check_ingest().expect("complete");
        assert_eq!(cfg.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(cfg.ingest.max_body_bytes, 1024);
        assert_eq!(cfg.kafka.events_topic, "bluetick.events.v1");
        assert!(cfg.pepper().is_ok());
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::load_with(None, env(&[("BLUETICK_KAFKA_PARTITIONS", "many")]))
            .expect_err("not an integer");
        assert!(e.to_string().contains("BLUETICK_KAFKA_PARTITIONS"), "{e}");

        let e = Config::default().check_ingest().expect_err("no secret");
        assert!(e.to_string().contains("ingest.app_secret"), "{e}");

        let e = Config::default().pepper().expect_err("no pepper");
        assert!(e.to_string().contains("privacy.pepper"), "{e}");
    }

    #[test]
    fn clickhouse_compression_is_lz4_or_none() {
        let load =
            |v: &str| Config::load_with(None, env(&[("BLUETICK_CLICKHOUSE_COMPRESSION", v)]));
        assert_eq!(
            Config::default().clickhouse.compression,
            WireCompression::Lz4
        );
        let cfg = load("none").expect("none is a choice");
        assert_eq!(cfg.clickhouse.compression, WireCompression::None);
        let e = load("zstd").expect_err("not offered");
        assert!(e.to_string().contains("in `clickhouse.compression`"), "{e}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("bluetick-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join("c.toml");
        std::fs::write(&path, "[ingest]\nlsiten = \"x\"\n").expect("write");
        let e = Config::load(Some(&path)).expect_err("typo");
        assert!(e.to_string().contains("lsiten"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let mut cfg = Config::default();
        cfg.ingest.app_secret = Secret("hunter2".into());
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The example documents every key with its default value.
    #[test]
    fn example_config_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bluetick.example.toml");
        let example: toml::Table = read_table(&path).expect("example parses");
        let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
        assert_eq!(example, defaults);
        Config::load_with(Some(&path), |_| None).expect("example loads");
    }
}
