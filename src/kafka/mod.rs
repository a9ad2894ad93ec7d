//! The Kafka side every component shares: client settings, topic creation, and the bounded
//! producer with its delivery futures and error classification ([`producer`]), used by
//! ingest for events and by the sink for dead letters alike.
//!
//! Topics are created explicitly (with their partition counts), because production clusters
//! and some Kafka-protocol brokers do not auto-create them.

pub mod producer;
pub mod read;
pub mod topics;

pub use producer::{Pending, ProduceError, Producer, Reach, Refusal};

use crate::config::{ConfigError, KafkaConfig};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic {topic} {problem}")]
    Layout { topic: String, problem: String },
    #[error("setting configs of topic {topic}: {why}")]
    Alter { topic: String, why: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS or SASL refused: a setting is wrong, and retrying cannot help.
    #[error("kafka at {brokers}: {what} failed ({detail}); check {settings}")]
    Security {
        brokers: String,
        what: &'static str,
        settings: &'static str,
        detail: String,
    },
    #[error("kafka at {brokers} not reachable within {secs} s: {detail}")]
    Unreachable {
        brokers: String,
        secs: u64,
        detail: String,
    },
}

impl SetupError {
    /// A wrong setting rather than a broker that is down: start-up stops on it.
    pub fn is_fatal(&self) -> bool {
        matches!(self, SetupError::Security { .. } | SetupError::Config(_))
    }
}

/// Settings every bluetick client shares, security included: with `ssl` / `sasl_ssl` the
/// brokers' certificates are verified against `kafka.ssl_ca_file` (or the system's roots) and
/// their host names checked; nothing falls back to plaintext.
pub fn client_config(cfg: &KafkaConfig) -> Result<ClientConfig, ConfigError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("socket.keepalive.enable", "true")
        .set("log_level", "4")
        .set("security.protocol", cfg.security_protocol.as_str());
    if cfg.security_protocol.tls() {
        c.set("ssl.endpoint.identification.algorithm", "https");
        for (key, file) in [
            ("ssl.ca.location", &cfg.ssl_ca_file),
            ("ssl.certificate.location", &cfg.ssl_certificate_file),
            ("ssl.key.location", &cfg.ssl_key_file),
        ] {
            if !file.is_empty() {
                c.set(key, file);
            }
        }
        if !cfg.ssl_key_password.is_empty() {
            c.set("ssl.key.password", cfg.ssl_key_password.expose());
        }
    }
    if cfg.security_protocol.sasl() {
        c.set("sasl.mechanisms", &cfg.sasl_mechanism)
            .set("sasl.username", &cfg.sasl_username)
            .set("sasl.password", cfg.sasl_password()?.expose());
    }
    if !cfg.debug.is_empty() {
        c.set("debug", &cfg.debug).set("log_level", "7");
    }
    Ok(c)
}

/// Keeps the first TLS or SASL error librdkafka reports, so a failed check can say which.
#[derive(Default)]
struct ErrorWatch(Mutex<Option<(RDKafkaErrorCode, String)>>);

impl ClientContext for ErrorWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if let (
            Some(code @ (RDKafkaErrorCode::SSL | RDKafkaErrorCode::Authentication)),
            Ok(mut seen),
        ) = (code, self.0.lock())
        {
            seen.get_or_insert((code, reason.to_string()));
        }
    }
}

impl ConsumerContext for ErrorWatch {}

/// Connects to the brokers as every component will, and says what is wrong if it cannot: a
/// refused certificate or credentials ([`SetupError::Security`], naming the settings, fatal)
/// or no broker answering ([`SetupError::Unreachable`]). Blocking; at start-up only.
pub fn check_connection(cfg: &KafkaConfig, timeout: Duration) -> Result<(), SetupError> {
    let consumer: BaseConsumer<ErrorWatch> = client_config(cfg)?
        .set("group.id", "bluetick-connection-check")
        .create_with_context(ErrorWatch::default())?;
    let result = consumer.fetch_metadata(None, timeout);
    if result.is_err() {
        // Errors reach the context only when the client's queue is served.
        for _ in 0..5 {
            let _ = consumer.poll(Duration::from_millis(100));
        }
    }
    let seen = consumer.context().0.lock().ok().and_then(|s| s.clone());
    match (result, seen) {
        (_, Some((RDKafkaErrorCode::SSL, detail))) => Err(SetupError::Security {
            brokers: cfg.brokers.clone(),
            what: "TLS",
            settings: "kafka.ssl_ca_file (the CA that signed the brokers' certificates), the \
                       brokers' host names, kafka.ssl_certificate_file / ssl_key_file",
            detail,
        }),
        (_, Some((_, detail))) => Err(SetupError::Security {
            brokers: cfg.brokers.clone(),
            what: "SASL authentication",
            settings: "kafka.sasl_mechanism, kafka.sasl_username, kafka.sasl_password(_file)",
            detail,
        }),
        (Ok(_), None) => Ok(()),
        (Err(e), None) => Err(SetupError::Unreachable {
            brokers: cfg.brokers.clone(),
            secs: timeout.as_secs(),
            detail: e.to_string(),
        }),
    }
}

/// Start-up of a component that produces or consumes: checks the connection — a refused
/// certificate or credentials stop the start, naming the setting; brokers that are down only
/// warn (the component serves and retries) — then creates missing topics if configured to.
pub async fn prepare(cfg: &KafkaConfig) -> Result<(), SetupError> {
    let c = cfg.clone();
    let checked =
        tokio::task::spawn_blocking(move || check_connection(&c, Duration::from_secs(10)))
            .await
            .unwrap_or_else(|e| {
                Err(SetupError::Unreachable {
                    brokers: cfg.brokers.clone(),
                    secs: 10,
                    detail: e.to_string(),
                })
            });
    match checked {
        Err(e) if e.is_fatal() => return Err(e),
        Err(e) => tracing::warn!(error = %e, "brokers not reachable yet; retrying meanwhile"),
        Ok(()) => {}
    }
    if cfg.create_topics {
        if let Err(e) = topics::ensure(cfg, Duration::from_secs(10)).await {
            tracing::warn!(error = %e, "could not create topics yet");
        }
    }
    Ok(())
}
