//! bluetick's topics as the config says they must be: partitions, replication, and the
//! configs that carry the retention promise (`retention.ms`: Kafka is transit, not storage).
//!
//! [`ensure`] creates what is missing with those settings; [`align`] checks topics that
//! already exist, sets configs that differ (IncrementalAlterConfigs), and refuses what a
//! config change cannot fix (fewer partitions, another replication factor), naming the
//! command that can. Nothing is silently accepted.

use super::{client_config, SetupError};
use crate::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::ffi::{CStr, CString};
use std::time::Duration;

/// One topic as bluetick wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    /// Topic-level configs that must hold, e.g. `retention.ms`.
    pub configs: Vec<(&'static str, String)>,
}

/// The three topics of a config: events, security events, dead letters.
pub fn specs(cfg: &KafkaConfig) -> Vec<TopicSpec> {
    let mut common = vec![("retention.ms", cfg.retention_ms.to_string())];
    if cfg.replication_factor > 1 {
        common.push(("min.insync.replicas", cfg.min_insync_replicas.to_string()));
    }
    let mut dead = common.clone();
    dead[0].1 = cfg.dead_letter_retention_ms.to_string();
    dead.push(("max.message.bytes", cfg.message_max_bytes.to_string()));
    vec![
        TopicSpec {
            name: cfg.events_topic.clone(),
            partitions: cfg.partitions,
            replication: cfg.replication_factor,
            configs: common.clone(),
        },
        TopicSpec {
            name: cfg.security_topic.clone(),
            partitions: cfg.partitions.min(3),
            replication: cfg.replication_factor,
            configs: common,
        },
        TopicSpec {
            name: cfg.dead_letter_topic.clone(),
            partitions: 1,
            replication: cfg.replication_factor,
            configs: dead,
        },
    ]
}

/// What [`align`] found and did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicReport {
    pub name: String,
    pub created: bool,
    /// Configs changed: (name, old value or empty, new value).
    pub changed: Vec<(String, String, String)>,
}

fn admin(cfg: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, SetupError> {
    Ok(client_config(cfg)?.create()?)
}

fn options(timeout: Duration) -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout))
}

/// Creates missing topics with their partitions, replication and configs; leaves existing
/// ones alone. Returns the names created.
pub async fn ensure(cfg: &KafkaConfig, timeout: Duration) -> Result<Vec<String>, SetupError> {
    let admin = admin(cfg)?;
    let specs = specs(cfg);
    let topics: Vec<NewTopic> = specs
        .iter()
        .map(|s| {
            s.configs.iter().fold(
                NewTopic::new(
                    &s.name,
                    s.partitions,
                    TopicReplication::Fixed(s.replication),
                ),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let mut created = Vec::new();
    for result in admin.create_topics(&topics, &options(timeout)).await? {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(SetupError::Topic { topic, code }),
        }
    }
    Ok(created)
}

/// [`ensure`], then checks every topic against its spec and sets the configs that differ.
pub async fn align(cfg: &KafkaConfig, timeout: Duration) -> Result<Vec<TopicReport>, SetupError> {
    let created = ensure(cfg, timeout).await?;
    let admin = admin(cfg)?;
    let mut reports = Vec::new();
    for spec in specs(cfg) {
        check_layout(&admin, &spec, timeout)?;
        let current = describe(&admin, &spec.name, timeout).await?;
        let changes: Vec<(String, String, String)> = spec
            .configs
            .iter()
            .filter_map(|(k, want)| {
                let have = current.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                (have.as_deref() != Some(want.as_str()))
                    .then(|| (k.to_string(), have.unwrap_or_default(), want.clone()))
            })
            .collect();
        if !changes.is_empty() {
            let set: Vec<(&str, &str)> = changes
                .iter()
                .map(|(k, _, v)| (k.as_str(), v.as_str()))
                .collect();
            incremental_alter(&admin, &spec.name, &set, timeout)?;
        }
        reports.push(TopicReport {
            created: created.contains(&spec.name),
            name: spec.name,
            changed: changes,
        });
    }
    Ok(reports)
}

/// A topic's configs as the broker reports them.
pub async fn describe(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(String, String)>, SetupError> {
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options(timeout))
        .await?;
    let mut out = Vec::new();
    for r in results {
        let resource = r.map_err(|code| SetupError::Topic {
            topic: topic.to_string(),
            code,
        })?;
        for entry in resource.entries {
            out.push((entry.name, entry.value.unwrap_or_default()));
        }
    }
    Ok(out)
}

/// Partition count and replication factor of an existing topic against the spec: more
/// partitions than asked is fine (they were added on purpose), fewer or another replication
/// factor is an error no config change fixes.
fn check_layout(
    admin: &AdminClient<DefaultClientContext>,
    spec: &TopicSpec,
    timeout: Duration,
) -> Result<(), SetupError> {
    let meta = admin.inner().fetch_metadata(Some(&spec.name), timeout)?;
    let Some(topic) = meta.topics().iter().find(|t| t.name() == spec.name) else {
        return Ok(());
    };
    let partitions = topic.partitions().len() as i32;
    if partitions < spec.partitions {
        return Err(SetupError::Layout {
            topic: spec.name.clone(),
            problem: format!(
                "has {partitions} partitions, the config asks for {} (add them with \
                 `kafka-topics.sh --alter --topic {} --partitions {}`)",
                spec.partitions, spec.name, spec.partitions
            ),
        });
    }
    // Brokers that report no replicas (some Kafka-protocol brokers) are not judged.
    let replicas = topic
        .partitions()
        .iter()
        .map(|p| p.replicas().len() as i32)
        .filter(|n| *n > 0)
        .min();
    if let Some(replicas) = replicas.filter(|r| *r != spec.replication) {
        return Err(SetupError::Layout {
            topic: spec.name.clone(),
            problem: format!(
                "has replication factor {replicas}, the config asks for {} (reassign its \
                 partitions with `kafka-reassign-partitions.sh`)",
                spec.replication
            ),
        });
    }
    Ok(())
}

/// Sets `configs` on `topic` with IncrementalAlterConfigs (KIP-339), leaving its other
/// configs as they are. The rdkafka crate wraps only the legacy AlterConfigs, which replaces
/// a topic's whole config and which some Kafka-protocol brokers do not implement, so this
/// calls librdkafka's admin API directly and waits for its result on a queue of its own.
fn incremental_alter(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    configs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), SetupError> {
    let fail = |why: String| SetupError::Alter {
        topic: topic.to_string(),
        why,
    };
    let c = |s: &str| CString::new(s).map_err(|_| fail(format!("{s:?} holds a NUL byte")));
    let name = c(topic)?;
    let pairs: Vec<(CString, CString)> = configs
        .iter()
        .map(|(k, v)| Ok((c(k)?, c(v)?)))
        .collect::<Result<_, SetupError>>()?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let rk = admin.inner().native_ptr();
    // SAFETY: every pointer passed to librdkafka below is either created here and destroyed
    // before returning (resource, options, queue, event), or borrowed from a live client
    // (`rk`) or from CStrings that outlive the calls. The result's resources are owned by the
    // event and read before it is destroyed.
    unsafe {
        let resource = rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        );
        for (k, v) in &pairs {
            let err = rd::rd_kafka_ConfigResource_add_incremental_config(
                resource,
                k.as_ptr(),
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                v.as_ptr(),
            );
            if !err.is_null() {
                let why = CStr::from_ptr(rd::rd_kafka_error_string(err))
                    .to_string_lossy()
                    .into_owned();
                rd::rd_kafka_error_destroy(err);
                rd::rd_kafka_ConfigResource_destroy(resource);
                return Err(fail(why));
            }
        }
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        );
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = rd::rd_kafka_queue_new(rk);
        let mut resources = [resource];
        rd::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, options, queue);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let outcome = if event.is_null() {
            Err(fail("no answer from the broker in time".into()))
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            Err(fail(
                CStr::from_ptr(rd::rd_kafka_event_error_string(event))
                    .to_string_lossy()
                    .into_owned(),
            ))
        } else {
            let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event);
            let mut n = 0usize;
            let list = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut n);
            let mut outcome = Ok(());
            for i in 0..n {
                let r = *list.add(i);
                if rd::rd_kafka_ConfigResource_error(r)
                    != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    let why = rd::rd_kafka_ConfigResource_error_string(r);
                    let why = if why.is_null() {
                        "refused".to_string()
                    } else {
                        CStr::from_ptr(why).to_string_lossy().into_owned()
                    };
                    outcome = Err(fail(why));
                }
            }
            outcome
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_ConfigResource_destroy(resource);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_carries_its_retention_and_the_dead_letters_their_size() {
        let cfg = KafkaConfig::default();
        let all = specs(&cfg);
        assert_eq!(all.len(), 3);
        for s in &all {
            assert!(s.configs.iter().any(|(k, _)| *k == "retention.ms"), "{s:?}");
            assert!(!s.configs.iter().any(|(k, _)| *k == "min.insync.replicas"));
        }
        let dead = &all[2];
        assert!(dead
            .configs
            .contains(&("retention.ms", cfg.dead_letter_retention_ms.to_string())));
        assert!(dead.configs.iter().any(|(k, _)| *k == "max.message.bytes"));
        let replicated = KafkaConfig {
            replication_factor: 3,
            min_insync_replicas: 2,
            ..KafkaConfig::default()
        };
        assert!(specs(&replicated)[0]
            .configs
            .contains(&("min.insync.replicas", "2".to_string())));
    }
}
