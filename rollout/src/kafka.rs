//! Kafka mode: every decision is also published to the decisions topic
//! (`keyshift.rollout-decisions`, keyed by rollout id, JSON), by a
//! transactional producer with a fixed `transactional.id`. Starting a second
//! controller with the same id fences the first: its next transaction fails
//! with a fencing error and it stops.
//!
//! The decision is published (and its transaction committed) before it is
//! appended to `rollout_decisions`, which stays the log the state is folded
//! from; a crash between the two leaves the topic one decision ahead, which
//! the next start does not repeat (it folds the table). The topic is a feed
//! for other systems, at-least-once.

use std::sync::Arc;
use std::time::Duration;

use keyshift_ingest::kafka::client_config;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::decision::Decision;
use crate::{Result, RolloutError};

/// The transactional producer of the decisions topic (Kafka mode).
#[derive(Clone)]
pub struct DecisionPublisher {
    producer: Arc<FutureProducer>,
    topic: String,
}

impl std::fmt::Debug for DecisionPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionPublisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::InvalidProducerIdMapping
        )
    )
}

fn kafka_error(topic: &str, what: &str, e: &KafkaError) -> RolloutError {
    RolloutError::Kafka {
        topic: topic.to_owned(),
        message: format!("{what}: {e}"),
        fenced: fenced(e),
    }
}

impl DecisionPublisher {
    /// Connects and claims the transactional id (fencing any earlier
    /// holder). Blocks up to 30 s; call from a blocking context.
    pub fn connect(
        brokers: &str,
        topic: &str,
        transactional_id: &str,
        extra: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self> {
        let producer: FutureProducer = client_config(
            brokers,
            &[
                ("transactional.id", transactional_id),
                ("enable.idempotence", "true"),
                ("acks", "all"),
            ],
            extra,
        )
        .create()
        .map_err(|e| kafka_error(topic, "creating the producer", &e))?;
        producer
            .init_transactions(TIMEOUT)
            .map_err(|e| kafka_error(topic, "claiming the transactional id", &e))?;
        Ok(Self {
            producer: Arc::new(producer),
            topic: topic.to_owned(),
        })
    }

    /// Publishes one decision in its own transaction.
    pub async fn publish(&self, d: &Decision) -> Result<()> {
        self.publish_once(d).await.map_err(|e| match e {
            // Fencing surfaces in many forms (a purged send, a failed
            // commit); librdkafka records it as the producer's fatal error.
            RolloutError::Kafka { topic, message, .. } => {
                match self.producer.client().fatal_error() {
                    Some((code, reason)) => RolloutError::Kafka {
                        topic,
                        message: format!("{message} (fenced: {code:?}: {reason})"),
                        fenced: true,
                    },
                    None => RolloutError::Kafka {
                        topic,
                        message,
                        fenced: false,
                    },
                }
            }
            other => other,
        })
    }

    async fn publish_once(&self, d: &Decision) -> Result<()> {
        let payload = serde_json::to_vec(d).unwrap_or_default();
        let topic = self.topic.clone();
        self.producer
            .begin_transaction()
            .map_err(|e| kafka_error(&topic, "beginning a transaction", &e))?;
        let sent = self
            .producer
            .send(
                FutureRecord::to(&topic)
                    .key(d.rollout_id.as_str())
                    .payload(payload.as_slice()),
                TIMEOUT,
            )
            .await;
        let producer = self.producer.clone();
        if let Err((e, _)) = sent {
            let err = kafka_error(&topic, "producing a decision", &e);
            let _ = tokio::task::spawn_blocking(move || producer.abort_transaction(TIMEOUT)).await;
            return Err(err);
        }
        let commit = tokio::task::spawn_blocking(move || producer.commit_transaction(TIMEOUT))
            .await
            .map_err(|e| RolloutError::Kafka {
                topic: topic.clone(),
                message: format!("commit task failed: {e}"),
                fenced: false,
            })?;
        commit.map_err(|e| kafka_error(&topic, "committing the transaction", &e))
    }
}
