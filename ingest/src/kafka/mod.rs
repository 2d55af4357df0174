//! The Kafka source: a consumer-group member that feeds the pipeline and
//! records each partition's position in the same Delta commit as its rows.
//!
//! Effectively-once, in short: positions live in the table (`txn` actions,
//! app id `keyshift-<topic>-<partition>`), not only in Kafka. On assignment a
//! partition is repositioned from the table; anything at or below the stored
//! position is dropped. Each commit names the position it follows per
//! partition (`StreamPosition::after`): a commit that races another writer
//! for the same partition is refused, by Delta's conflict check when the
//! other commit lands meanwhile, by that fence when it landed before (the
//! previous owner's last batch, still in flight when the partition moved),
//! and the loser starts over from the table. Offsets are committed to Kafka
//! too, after the Delta commit, so that standard lag tools work.

mod batch;
mod consumer;
mod context;
mod dlq;
pub mod forward;
mod positions;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::{Headers, Message};
use serde::{Deserialize, Serialize};

pub use consumer::run_consumer;
pub use dlq::{ERROR_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, SOURCE_TOPIC_HEADER};
pub use forward::Forwarder;

/// Header set by `keyshift collector --brokers` on messages it produced for
/// an RP token: the rp_id that token may write. Ingest holds the message to
/// it, as the embedded collector holds the request.
pub const SCOPE_HEADER: &str = "keyshift-rp-scope";

/// The message's [`SCOPE_HEADER`], if any. A header can only narrow what a
/// message may write, so an unauthenticated producer gains nothing by
/// setting one.
pub(crate) fn scope_of(m: &impl Message) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == SCOPE_HEADER)
        .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
}

/// What to do when a partition's next offset is no longer on the broker
/// (retention deleted it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetPolicy {
    /// Resume from the oldest retained message (the gap is lost data, logged
    /// and counted).
    #[default]
    Earliest,
    /// Resume from the newest message.
    Latest,
    /// Stop ingesting (exit with an error) and let an operator decide.
    Stop,
}

/// The `[kafka]` section: the Kafka source of `keyshift ingest` and the producer of
/// `keyshift collector --brokers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port,…`. Unset: no Kafka source.
    pub brokers: Option<String>,
    /// Topic of the auth events: consumed by ingest, produced to by the Kafka-mode
    /// collector. Default `keyshift.auth-events`.
    pub topic: String,
    /// Consumer group ingest joins. Default `keyshift-ingest`.
    pub group_id: String,
    /// Also produce invalid messages here (original bytes, error in headers).
    pub dlq_topic: Option<String>,
    /// Where a partition with no recorded position starts.
    pub start_from: StartFrom,
    /// What to do when a partition's next offset has left the broker. Default `earliest`.
    pub offset_out_of_range: OffsetPolicy,
    /// Commit when this many messages are buffered.
    pub max_batch_messages: usize,
    /// Batches being validated or committed while the next one is read.
    /// Two let one batch's parsing (on every core) overlap the previous
    /// one's commit; memory grows by about one batch per step.
    pub max_batches_in_flight: usize,
    /// Commit at least this often while messages are buffered.
    #[serde(with = "humantime_serde")]
    pub max_batch_delay: Duration,
    /// librdkafka's fetch buffer (`queued.max.messages.kbytes`), in KiB.
    /// Small is enough: the next fetch goes out as soon as the queue drops
    /// under it (see `fetch.queue.backoff.ms` in the consumer).
    pub fetch_buffer_kib: usize,
    /// `keyshift collector --brokers`: how long a message may take to be
    /// acknowledged before the request fails with 503.
    #[serde(with = "humantime_serde")]
    pub produce_timeout: Duration,
    /// Further librdkafka properties (security, timeouts), passed through.
    pub librdkafka: BTreeMap<String, String>,
}

/// Where a partition with no position recorded in the table starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// At the oldest retained message (the default).
    #[default]
    Earliest,
    /// At the end: only messages produced after the partition was assigned.
    Latest,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: None,
            topic: "keyshift.auth-events".to_owned(),
            group_id: "keyshift-ingest".to_owned(),
            dlq_topic: None,
            start_from: StartFrom::Earliest,
            offset_out_of_range: OffsetPolicy::Earliest,
            max_batch_messages: 50_000,
            max_batches_in_flight: 2,
            max_batch_delay: Duration::from_secs(1),
            fetch_buffer_kib: 2 * 1024,
            produce_timeout: Duration::from_secs(30),
            librdkafka: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Every problem with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.brokers.as_ref().is_some_and(|b| b.trim().is_empty()) {
            errors.push("kafka.brokers must not be empty when set".to_owned());
        }
        if self.topic.is_empty() {
            errors.push("kafka.topic must not be empty".to_owned());
        }
        if self.group_id.is_empty() {
            errors.push("kafka.group_id must not be empty".to_owned());
        }
        if self.max_batch_messages == 0 {
            errors.push("kafka.max_batch_messages must be at least 1".to_owned());
        }
        if !(1..=8).contains(&self.max_batches_in_flight) {
            errors.push("kafka.max_batches_in_flight must be between 1 and 8".to_owned());
        }
        if self.max_batch_delay.is_zero() {
            errors.push("kafka.max_batch_delay must be more than 0".to_owned());
        }
        if self.produce_timeout < Duration::from_secs(1) {
            errors.push("kafka.produce_timeout must be at least 1s".to_owned());
        }
        if self.fetch_buffer_kib < 1024 {
            errors.push("kafka.fetch_buffer_kib must be at least 1024".to_owned());
        }
        errors
    }
}

/// librdkafka settings for one of keyshift's clients (the consumer, the
/// producers, the rollout controller's publisher): the brokers, then `ours`,
/// then the operator's `kafka.librdkafka` passthrough, which wins.
pub fn client_config(
    brokers: &str,
    ours: &[(&str, &str)],
    passthrough: &BTreeMap<String, String>,
) -> rdkafka::config::ClientConfig {
    let mut c = rdkafka::config::ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in ours {
        c.set(*k, *v);
    }
    for (k, v) in passthrough {
        c.set(k, v);
    }
    c
}

/// The `txn` app id that records a partition's position.
pub fn app_id(topic: &str, partition: i32) -> String {
    format!("keyshift-{topic}-{partition}")
}

/// What a retry can do about a Kafka client error: refusals that stay
/// refusals (configuration, authorization, a message over the size limit)
/// are fatal; everything else (timeouts, a broker away) is transient.
pub(crate) fn kafka_kind(e: &rdkafka::error::KafkaError) -> keyshift_store::ErrorKind {
    use keyshift_store::ErrorKind;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
    if matches!(
        e,
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Nul(_)
    ) {
        return ErrorKind::Fatal;
    }
    match e.rdkafka_error_code() {
        Some(
            Code::MessageSizeTooLarge
            | Code::InvalidRecord
            | Code::TopicAuthorizationFailed
            | Code::GroupAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::SaslAuthenticationFailed
            | Code::Authentication
            | Code::InvalidArgument
            | Code::ProducerFenced
            | Code::Fatal,
        ) => ErrorKind::Fatal,
        _ => ErrorKind::Transient,
    }
}

#[cfg(test)]
mod header_tests {
    /// Every header keyshift reads or writes is a row of the README's table.
    #[test]
    fn the_readme_lists_every_header() {
        let readme = include_str!("../../../README.md");
        for header in [
            super::SCOPE_HEADER,
            super::ERROR_HEADER,
            super::SOURCE_TOPIC_HEADER,
            super::SOURCE_PARTITION_HEADER,
            super::SOURCE_OFFSET_HEADER,
        ] {
            assert!(
                readme.contains(&format!("| `{header}` |")),
                "README.md has no row for the Kafka header {header}"
            );
        }
    }
}

#[cfg(test)]
mod kind_tests {
    use keyshift_store::ErrorKind;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};

    use super::kafka_kind;

    #[test]
    fn kafka_errors_by_what_a_retry_can_do() {
        assert_eq!(
            kafka_kind(&KafkaError::MessageProduction(Code::MessageTimedOut)),
            ErrorKind::Transient
        );
        assert_eq!(
            kafka_kind(&KafkaError::MessageProduction(Code::BrokerTransportFailure)),
            ErrorKind::Transient
        );
        for fatal in [
            KafkaError::MessageProduction(Code::TopicAuthorizationFailed),
            KafkaError::MessageProduction(Code::MessageSizeTooLarge),
            KafkaError::ClientCreation("bad".into()),
        ] {
            assert_eq!(kafka_kind(&fatal), ErrorKind::Fatal, "{fatal}");
        }
    }
}
