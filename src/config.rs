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
    ("BLUETICK_APP_SECRET_FILE", "ingest", "app_secret_file"),
    (
        "BLUETICK_APP_SECRET_PREVIOUS",
        "ingest",
        "app_secret_previous",
    ),
    ("BLUETICK_VERIFY_TOKEN", "ingest", "verify_token"),
    ("BLUETICK_VERIFY_TOKEN_FILE", "ingest", "verify_token_file"),
    ("BLUETICK_PEPPER", "privacy", "pepper"),
    ("BLUETICK_PEPPER_FILE", "privacy", "pepper_file"),
    ("BLUETICK_PEPPER_PREVIOUS", "privacy", "pepper_previous"),
    (
        "BLUETICK_PEPPER_PREVIOUS_FILE",
        "privacy",
        "pepper_previous_file",
    ),
    ("BLUETICK_ID_KEY", "privacy", "id_key"),
    ("BLUETICK_ID_KEY_FILE", "privacy", "id_key_file"),
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
    pub ops: OpsConfig,
}

/// How the short-lived commands (migrate, retention, erase, export) report their runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// A Prometheus Pushgateway (`http://pushgateway:9091`) that each run's outcome is pushed
    /// to (last run and last success times, failure, duration, what it did), since a job that
    /// has exited cannot be scraped. Empty: not pushed.
    pub pushgateway_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address the webhook server binds, `host:port`.
    pub listen: String,
    /// Meta app secret: X-Hub-Signature-256 is HMAC-SHA256 of the body under it.
    pub app_secret: Secret,
    /// File holding the app secret; wins over `app_secret`.
    pub app_secret_file: String,
    /// The secret being rotated out; accepted as well while set.
    pub app_secret_previous: Secret,
    pub app_secret_previous_file: String,
    /// Token Meta echoes in the GET verification handshake.
    pub verify_token: Secret,
    pub verify_token_file: String,
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
    /// Refused requests are counted per source, reason and route over this window and written
    /// as one security event each (a count, not a row per request).
    pub security_event_window_ms: u64,
    /// Distinct (source, reason, route) counted per window; more are dropped and counted.
    pub max_security_sources: u64,
    /// Bodies up to this size are admitted whenever a request slot is free; larger ones
    /// reserve their bytes from `body_bytes_in_flight_mib` first.
    pub small_body_bytes: u64,
    /// Bytes of bodies larger than `small_body_bytes` held at once across all connections,
    /// before their signature is checked; past it, 503 + Retry-After. With
    /// `max_in_flight_requests × small_body_bytes` and the producer queue, this sizes ingest's
    /// memory: the defaults fit a 512 MiB pod.
    pub body_bytes_in_flight_mib: u64,
    /// Address of a separate listener for `/metrics` (and `/healthz`), so that exposing the
    /// webhook does not expose metrics; empty = `/metrics` on the webhook listener.
    pub metrics_listen: String,
    /// Proxies (CIDRs, comma-separated) whose `X-Forwarded-For` names the real source of a
    /// request; from any other peer the header is ignored.
    pub trusted_proxies: String,
    /// More Meta apps, each with its own secret and verify token, at `/webhook/<name>`
    /// (`/webhook` stays the app of `app_secret` above). In the environment:
    /// `BLUETICK_INGEST_APPS='[{name = "retail", app_secret_file = "…", verify_token_file = "…"}]'`.
    pub apps: Vec<AppConfig>,
    /// The tenant map (TOML: `[waba]` and `[phone_number_id]` tables of id = "tenant"), re-read
    /// when it changes; empty = no tenants.
    pub tenant_map: String,
    /// How often the tenant map's file is checked for changes.
    pub tenant_map_reload_ms: u64,
    /// Threads serving webhook connections, each a single-threaded runtime owning the
    /// connections dealt to it; 0 = one per two cores the process may use (its CPU quota
    /// counts), at least one. The other cores serve librdkafka's threads and the network.
    pub worker_threads: u64,
}

/// One more Meta app of a BSP (see `ingest.apps`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// The path segment its webhooks arrive at: `/webhook/<name>`.
    pub name: String,
    pub app_secret: Secret,
    pub app_secret_file: String,
    pub app_secret_previous: Secret,
    pub app_secret_previous_file: String,
    pub verify_token: Secret,
    pub verify_token_file: String,
}

/// One app's resolved credentials.
#[derive(Debug, Clone)]
pub struct AppSecrets {
    /// Empty for the default app (`/webhook`).
    pub name: String,
    pub current: Secret,
    pub previous: Secret,
    pub verify_token: Secret,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: "127.0.0.1:8080".into(),
            app_secret: Secret::default(),
            app_secret_file: String::new(),
            app_secret_previous: Secret::default(),
            app_secret_previous_file: String::new(),
            verify_token: Secret::default(),
            verify_token_file: String::new(),
            max_body_bytes: 4 * 1024 * 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            produce_timeout_ms: 5_000,
            max_in_flight_requests: 1_024,
            retry_after_secs: 5,
            shutdown_grace_ms: 10_000,
            max_pending_security_events: 1_000,
            apps: Vec::new(),
            tenant_map: String::new(),
            tenant_map_reload_ms: 10_000,
            worker_threads: 0,
            security_event_window_ms: 60_000,
            max_security_sources: 10_000,
            small_body_bytes: 64 * 1024,
            body_bytes_in_flight_mib: 128,
            metrics_listen: String::new(),
            trusted_proxies: String::new(),
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
    /// Key of the pseudonyms that replace Meta's message, call and group ids (which carry
    /// phone numbers). Separate from the pepper: a BSP may hand it to the systems that join
    /// bluetick's rows with its send log, which must never learn the pepper. Prefer
    /// `id_key_file`.
    pub id_key: Secret,
    /// File holding the id key; wins over `id_key`.
    pub id_key_file: String,
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
    /// `min.insync.replicas` of bluetick's topics when replicated (replication_factor > 1):
    /// with `acks=all`, a write is acked once this many replicas have it.
    pub min_insync_replicas: i32,
    /// `retention.ms` of the events and security topics. Kafka is transit, not storage: a
    /// few days covers a sink outage over a weekend; ClickHouse is the store of record.
    pub retention_ms: u64,
    /// `retention.ms` of the dead-letter topic; no longer than `retention_ms`.
    pub dead_letter_retention_ms: u64,
    /// Create missing topics at start (production clusters often forbid auto-creation).
    pub create_topics: bool,
    /// How ingest writes events to the events topic: `protobuf` (`schemas/event.v2.proto`)
    /// or `json` (JSON Lines, `schemas/event.v2.schema.json`). The sink reads both, so the
    /// setting can change with records of the other format still in the topic.
    pub record_format: RecordFormat,
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
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (librdkafka security.protocol).
    pub security_protocol: KafkaSecurity,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, with a `sasl_*` protocol.
    pub sasl_mechanism: String,
    pub sasl_username: String,
    pub sasl_password: Secret,
    /// File holding the SASL password; wins over `sasl_password`.
    pub sasl_password_file: String,
    /// CA certificates (PEM) that sign the brokers' certificates; empty = the system's.
    pub ssl_ca_file: String,
    /// Client certificate and key (PEM), for brokers that authenticate clients by TLS.
    pub ssl_certificate_file: String,
    pub ssl_key_file: String,
    pub ssl_key_password: Secret,
}

impl KafkaConfig {
    /// The SASL password, from `kafka.sasl_password_file` or `kafka.sasl_password`.
    pub fn sasl_password(&self) -> Result<Secret, ConfigError> {
        read_optional(
            &self.sasl_password,
            &self.sasl_password_file,
            "kafka.sasl_password",
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSecurity {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl KafkaSecurity {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::Ssl => "ssl",
            KafkaSecurity::SaslPlaintext => "sasl_plaintext",
            KafkaSecurity::SaslSsl => "sasl_ssl",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, KafkaSecurity::Ssl | KafkaSecurity::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, KafkaSecurity::SaslPlaintext | KafkaSecurity::SaslSsl)
    }
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
            min_insync_replicas: 1,
            retention_ms: 3 * 24 * 3_600_000,
            dead_letter_retention_ms: 3 * 24 * 3_600_000,
            create_topics: true,
            record_format: RecordFormat::Protobuf,
            compression: "zstd".into(),
            compression_level: 1,
            linger_ms: 5,
            queue_max_messages: 200_000,
            queue_max_kib: 128 * 1024,
            message_max_bytes: 5 * 1024 * 1024,
            message_timeout_ms: 300_000,
            debug: String::new(),
            security_protocol: KafkaSecurity::Plaintext,
            sasl_mechanism: "SCRAM-SHA-512".into(),
            sasl_username: String::new(),
            sasl_password: Secret::default(),
            sasl_password_file: String::new(),
            ssl_ca_file: String::new(),
            ssl_certificate_file: String::new(),
            ssl_key_file: String::new(),
            ssl_key_password: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP(S) interface, e.g. `http://127.0.0.1:8123` or `https://host:8443`.
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: Secret,
    /// File holding the password; wins over `password`.
    pub password_file: String,
    /// CA certificates (PEM) that sign the server's certificate, for an `https://` URL;
    /// empty = the public web roots.
    pub ca_file: String,
    /// How rows travel to ClickHouse. lz4 costs the sink about a tenth of its CPU and shrinks
    /// the traffic several times; `none` suits a sink on the same host as ClickHouse.
    pub compression: WireCompression,
    /// A cluster of `remote_servers` to run on; empty = one server. With a cluster, `migrate`
    /// creates every table `ON CLUSTER`: the event tables as replicated `<table>_local` tables
    /// sharded by message behind a `Distributed` table of the table's name, the small ones
    /// (daily aggregates, rate card, erasure audit) replicated whole to every server.
    pub cluster: String,
}

impl ClickHouseConfig {
    /// The password, from `clickhouse.password_file` or `clickhouse.password`.
    pub fn password(&self) -> Result<Secret, ConfigError> {
        read_optional(&self.password, &self.password_file, "clickhouse.password")
    }
}

/// The encoding of events in Kafka records (see `model::record`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    #[default]
    Protobuf,
    Json,
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
            password_file: String::new(),
            ca_file: String::new(),
            compression: WireCompression::Lz4,
            cluster: String::new(),
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
    /// Kafka `session.timeout.ms`: a sink silent this long leaves the group and its
    /// partitions go to the others. With `instance_id`, also how long a restarting sink may
    /// take to come back to its own partitions without a rebalance.
    pub session_timeout_ms: u64,
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
    /// A batch not stored within this long (ClickHouse or the broker failing, or the loop
    /// wedged) makes `/healthz` answer 503, so the orchestrator restarts the sink; nothing is
    /// lost by a restart, as the batch's offsets are not committed.
    pub stall_after_ms: u64,
    /// How often the daily aggregates of the days this sink wrote to are recounted (the
    /// dashboards' freshness); 0 = never (then run `bluetick rollup`).
    pub rollup_interval_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            group_id: "bluetick-sink".into(),
            instance_id: String::new(),
            session_timeout_ms: 45_000,
            listen: "127.0.0.1:9091".into(),
            batch_max_rows: 50_000,
            batch_max_bytes: 32 * 1024 * 1024,
            batch_max_age_ms: 1_000,
            insert_timeout_ms: 30_000,
            retry_initial_ms: 250,
            retry_max_ms: 30_000,
            stall_after_ms: 300_000,
            rollup_interval_ms: 60_000,
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
    pub call_event_days: u32,
    pub call_event_basis: String,
    pub opt_out_days: u32,
    pub opt_out_basis: String,
    /// The record of erasures: kept longer than any data table (it is also the list the
    /// sinks check, which must outlive every event old enough to be stored).
    pub erasure_audit_days: u32,
    pub erasure_audit_basis: String,
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
            call_event_days: 90,
            call_event_basis: "messaging metadata: calls' direction, outcome, times and \
                duration, no media or network addresses (contract); masked number + keyed hash \
                only"
                .into(),
            opt_out_days: 90,
            opt_out_basis: "messaging metadata: a customer stopping or resuming marketing \
                messages (contract: honouring the choice); masked number + keyed hash only"
                .into(),
            security_event_days: 180,
            security_event_basis: "security log: refused requests with source IP, reason \
                and time (legitimate interest: fraud and abuse prevention)"
                .into(),
            erasure_audit_days: 1095,
            erasure_audit_basis: "record of erasures carried out: request id, keyed hashes, \
                tables, rows removed, times (legal obligation: accountability for data subject \
                requests)"
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
        cfg.check_kafka()?;
        cfg.check_clickhouse()?;
        cfg.check_retention()?;
        Ok(cfg)
    }

    /// Checks the ClickHouse settings: a CA file means TLS, so the URL must be `https://`.
    pub fn check_clickhouse(&self) -> Result<(), ConfigError> {
        let c = &self.clickhouse;
        let https = c.url.starts_with("https://");
        if !https && !c.url.starts_with("http://") {
            return Err(ConfigError::Invalid {
                key: "clickhouse.url",
                reason: "must start with http:// or https://".into(),
            });
        }
        if !c.ca_file.is_empty() && !https {
            return Err(ConfigError::Invalid {
                key: "clickhouse.url",
                reason: "clickhouse.ca_file is set but the URL is http://: bluetick would send \
                         in plaintext; use https://"
                    .into(),
            });
        }
        Ok(())
    }

    /// Checks that the retention settings agree with each other.
    pub fn check_retention(&self) -> Result<(), ConfigError> {
        let r = &self.retention;
        let longest = [
            r.message_status_days,
            r.inbound_message_days,
            r.account_event_days,
            r.security_event_days,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        if r.erasure_audit_days < longest {
            return Err(ConfigError::Invalid {
                key: "retention.erasure_audit_days",
                reason: format!(
                    "must be at least the longest table retention ({longest} days): sinks keep erased people out for as long as their events could still be stored"
                ),
            });
        }
        Ok(())
    }

    /// Checks that the Kafka settings agree with each other.
    pub fn check_kafka(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        let tls_files = [&k.ssl_ca_file, &k.ssl_certificate_file, &k.ssl_key_file];
        if !k.security_protocol.tls() && tls_files.iter().any(|f| !f.is_empty()) {
            return Err(ConfigError::Invalid {
                key: "kafka.security_protocol",
                reason: "TLS files are set but the protocol is not ssl or sasl_ssl: \
                         bluetick would send in plaintext"
                    .into(),
            });
        }
        if k.security_protocol.sasl() {
            if k.sasl_username.is_empty() {
                return Err(missing(
                    "kafka.sasl_username",
                    "BLUETICK_KAFKA_SASL_USERNAME",
                ));
            }
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&k.sasl_mechanism.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "kafka.sasl_mechanism",
                    reason: "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into(),
                });
            }
        }
        if k.dead_letter_retention_ms > k.retention_ms {
            return Err(ConfigError::Invalid {
                key: "kafka.dead_letter_retention_ms",
                reason:
                    "must not exceed kafka.retention_ms: dead letters live no longer than events"
                        .into(),
            });
        }
        if k.replication_factor > 1 && !(1..=k.replication_factor).contains(&k.min_insync_replicas)
        {
            return Err(ConfigError::Invalid {
                key: "kafka.min_insync_replicas",
                reason: "must be between 1 and kafka.replication_factor".into(),
            });
        }
        Ok(())
    }

    /// Checks what `bluetick ingest` needs, naming the first missing key.
    pub fn check_ingest(&self) -> Result<(), ConfigError> {
        let i = &self.ingest;
        self.app_secrets()?;
        if self.verify_token()?.is_empty() {
            return Err(missing("ingest.verify_token", "BLUETICK_VERIFY_TOKEN"));
        }
        if i.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "ingest.listen",
                reason: format!("{:?} is not host:port", i.listen),
            });
        }
        if !i.metrics_listen.is_empty() && i.metrics_listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::Invalid {
                key: "ingest.metrics_listen",
                reason: format!("{:?} is not host:port", i.metrics_listen),
            });
        }
        self.trusted_proxies()?;
        if self.kafka.message_max_bytes <= i.max_body_bytes {
            return Err(ConfigError::Invalid {
                key: "kafka.message_max_bytes",
                reason: "must exceed ingest.max_body_bytes so dead-lettered bodies fit".into(),
            });
        }
        Ok(())
    }

    /// The app secret and the one being rotated out (empty if none), from their files or
    /// values; refused if missing or weak.
    pub fn app_secrets(&self) -> Result<(Secret, Secret), ConfigError> {
        let i = &self.ingest;
        let current = read_optional(&i.app_secret, &i.app_secret_file, "ingest.app_secret")?;
        if current.is_empty() {
            return Err(missing("ingest.app_secret", "BLUETICK_APP_SECRET"));
        }
        refuse_weak(&current, "ingest.app_secret", "BLUETICK_APP_SECRET")?;
        let previous = read_optional(
            &i.app_secret_previous,
            &i.app_secret_previous_file,
            "ingest.app_secret_previous",
        )?;
        if !previous.is_empty() {
            refuse_weak(
                &previous,
                "ingest.app_secret_previous",
                "BLUETICK_APP_SECRET_PREVIOUS",
            )?;
        }
        Ok((current, previous))
    }

    /// Every app's credentials: the default app's first (name empty), then `ingest.apps`,
    /// each refused if its name is not a path segment, repeats another, or a secret is
    /// missing or weak.
    pub fn all_apps(&self) -> Result<Vec<AppSecrets>, ConfigError> {
        let (current, previous) = self.app_secrets()?;
        let mut apps = vec![AppSecrets {
            name: String::new(),
            current,
            previous,
            verify_token: self.verify_token()?,
        }];
        let invalid = |reason: String| ConfigError::Invalid {
            key: "ingest.apps",
            reason,
        };
        for app in &self.ingest.apps {
            let n = &app.name;
            let segment = !n.is_empty()
                && n.len() <= 32
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !segment {
                return Err(invalid(format!(
                    "app name {n:?}: use 1-32 lowercase letters, digits, '-' or '_' (it is the path /webhook/<name>)"
                )));
            }
            if apps.iter().any(|a| &a.name == n) {
                return Err(invalid(format!("app {n:?} is listed twice")));
            }
            let current = read_optional(&app.app_secret, &app.app_secret_file, "ingest.apps")?;
            if current.is_empty() {
                return Err(invalid(format!(
                    "app {n:?} has no app_secret (or app_secret_file)"
                )));
            }
            let previous = read_optional(
                &app.app_secret_previous,
                &app.app_secret_previous_file,
                "ingest.apps",
            )?;
            for secret in [&current, &previous] {
                if let Some(why) = weakness(secret.expose()).filter(|_| !secret.is_empty()) {
                    return Err(invalid(format!("app {n:?}: a secret {why}")));
                }
            }
            apps.push(AppSecrets {
                name: n.clone(),
                current,
                previous,
                verify_token: read_optional(
                    &app.verify_token,
                    &app.verify_token_file,
                    "ingest.apps",
                )?,
            });
        }
        Ok(apps)
    }

    /// The webhook verify token, from its file or value.
    pub fn verify_token(&self) -> Result<Secret, ConfigError> {
        let i = &self.ingest;
        read_optional(&i.verify_token, &i.verify_token_file, "ingest.verify_token")
    }

    /// `ingest.trusted_proxies` as networks.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.ingest
            .trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| ConfigError::Invalid {
                        key: "ingest.trusted_proxies",
                        reason: format!("{s:?} is not an address or CIDR network"),
                    })
            })
            .collect()
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

    /// The key of Meta ids' pseudonyms, from `privacy.id_key_file` or `privacy.id_key`.
    pub fn id_key(&self) -> Result<Secret, ConfigError> {
        let p = &self.privacy;
        read_key(
            &p.id_key,
            &p.id_key_file,
            "privacy.id_key",
            "BLUETICK_ID_KEY",
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

/// A key given inline or, winning over it, in a file (trailing newline ignored); refused if
/// missing or weak.
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
    if secret.is_empty() {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("required; set {var} or {var}_FILE (e.g. `openssl rand -hex 32`)"),
        });
    }
    refuse_weak(&secret, key, var)?;
    Ok(secret)
}

/// A secret that may be empty, given inline or, winning over it, in a file.
fn read_optional(value: &Secret, file: &str, key: &'static str) -> Result<Secret, ConfigError> {
    if file.is_empty() {
        return Ok(value.clone());
    }
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
        key,
        reason: format!("cannot read {file}: {e}"),
    })?;
    Ok(Secret(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// Words that mark a value as a placeholder someone forgot to replace (the example files',
/// the demo's, the docs').
const PLACEHOLDER_WORDS: &[&str] = &[
    "change",
    "example",
    "placeholder",
    "replace",
    "secret",
    "password",
    "passwd",
    "demo",
    "test",
    "dummy",
    "sample",
    "default",
    "todo",
    "xxxx",
    "pepper",
    "insert",
    "your",
];

/// Why `secret` is too weak to run with, if it is: short, a placeholder, or too few distinct
/// characters to be random. Never says what the value is.
pub fn weakness(secret: &str) -> Option<&'static str> {
    if secret.len() < 16 {
        return Some("is shorter than 16 bytes");
    }
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w)) {
        return Some("looks like a placeholder, not a random value");
    }
    let mut seen = [false; 256];
    secret.bytes().for_each(|b| seen[usize::from(b)] = true);
    if seen.iter().filter(|s| **s).count() < 8 {
        return Some("has fewer than 8 distinct characters");
    }
    None
}

fn refuse_weak(secret: &Secret, key: &'static str, var: &str) -> Result<(), ConfigError> {
    match weakness(secret.expose()) {
        None => Ok(()),
        Some(why) => Err(ConfigError::Invalid {
            key,
            reason: format!(
                "the value {why}; set {var} to a random secret of 16+ bytes (e.g. `openssl rand -hex 32`)"
            ),
        }),
    }
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
        // A list (`ingest.apps`): a TOML array, e.g. `[{name = "a", app_secret_file = "/f"}]`.
        // Its value is not echoed on error: it may hold secrets.
        toml::Value::Array(_) => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(toml::Value::is_array)
            .ok_or_else(|| ConfigError::Env {
                var: var.to_string(),
                expected: "a TOML array such as [{name = \"a\", app_secret_file = \"/f\"}]",
                value: format!("({} characters, not shown)", raw.len()),
            })?,
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
    fn apps_come_from_the_environment_and_are_checked() {
        let base = [
            ("BLUETICK_APP_SECRET", "f3a9c1d07b2e4856a1c9"),
            ("BLUETICK_VERIFY_TOKEN", "tok"),
        ];
        let with = |apps: &str| {
            let mut vars = base.to_vec();
            vars.push(("BLUETICK_INGEST_APPS", apps));
            Config::load_with(None, env(&vars)).and_then(|c| c.all_apps())
        };
        let apps = with(
            r#"[{name = "retail", app_secret = "9b8a7c6d5e4f3a2b1c0d", verify_token = "t2"}]"#,
        )
        .expect("one more app");
        let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["", "retail"]);
        assert_eq!(apps[1].verify_token.expose(), "t2");
        for (bad, says) in [
            (
                r#"[{name = "Retail/1", app_secret = "9b8a7c6d5e4f3a2b1c0d"}]"#,
                "path",
            ),
            (
                r#"[{name = "a", app_secret = "9b8a7c6d5e4f3a2b1c0d"}, {name = "a", app_secret = "1b8a7c6d5e4f3a2b1c0d"}]"#,
                "twice",
            ),
            (r#"[{name = "a"}]"#, "no app_secret"),
            (r#"[{name = "a", app_secret = "changeme"}]"#, "app \"a\""),
        ] {
            let e = with(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        // Not TOML: refused without showing the value, which may hold secrets.
        let e = with("[{name = 'x', app_secret = 'Sup3rS3cretValue'").expect_err("broken");
        let text = e.to_string();
        assert!(
            text.contains("BLUETICK_INGEST_APPS") && !text.contains("Sup3rS3cret"),
            "{text}"
        );
    }

    #[test]
    fn env_only_config_starts_ingest() {
        let cfg = Config::load_with(
            None,
            env(&[
                ("BLUETICK_APP_SECRET", "f3a9c1d07b2e4856a1c9"),
                ("BLUETICK_VERIFY_TOKEN", "tok"),
                ("BLUETICK_PEPPER", "0123456789abcdef"),
                ("BLUETICK_ID_KEY", "9d8c7b6a5f4e3d2c1b0a"),
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
        assert!(cfg.id_key().is_ok());
    }

    /// The example files' and the demo's values, and anything short or repetitive, stop the
    /// start; the message names the key and never the value.
    #[test]
    fn weak_secrets_are_refused_without_echoing_them() {
        for weak in [
            "replace-with-the-meta-app-secret",
            "demo-pepper-change-me-in-production",
            "test-app-secret-0123",
            "aaaaaaaabbbbbbbbcccc",
            "k9Q",
        ] {
            let cfg = Config::load_with(
                None,
                env(&[
                    ("BLUETICK_APP_SECRET", weak),
                    ("BLUETICK_VERIFY_TOKEN", "tok"),
                    ("BLUETICK_PEPPER", weak),
                    ("BLUETICK_ID_KEY", weak),
                ]),
            )
            .expect("loads");
            for (e, key) in [
                (cfg.check_ingest().expect_err(weak), "ingest.app_secret"),
                (cfg.pepper().expect_err(weak), "privacy.pepper"),
                (cfg.id_key().expect_err(weak), "privacy.id_key"),
            ] {
                let text = e.to_string();
                assert!(text.contains(key), "{text}");
                assert!(!text.contains(weak), "echoes the secret: {text}");
            }
        }
        assert_eq!(weakness("3f9a0c7d1e2b4a6f8c0d2e4f6a8b0c1d"), None);
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
