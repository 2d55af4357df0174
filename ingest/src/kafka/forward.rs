//! The Kafka mode of the collector (`keyshift collector --brokers`): HTTP in,
//! Kafka out, no store in this process.
//!
//! Each item is checked by the same rules as ingest ([`Checker`]) so the
//! client learns at once what will be refused, and then produced as it came
//! — refused items too, so that ingest records them in `rejected_events`
//! exactly as the embedded collector does. An RP token's rp_id travels in the
//! [`SCOPE_HEADER`] so ingest enforces it again. The producer is idempotent
//! with `acks=all`; a request is answered 200 only after the broker
//! acknowledged every message, and 503 otherwise, after which the client
//! re-sends with the same event ids (ingest deduplicates).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keyshift_http::Principal;
use keyshift_schemas::Doc;
use keyshift_store::ErrorKind;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::Serialize;

use super::{KafkaConfig, SCOPE_HEADER, client_config};
use crate::metrics::{IngestMetrics, KafkaMetrics};
use crate::pipeline::{Checker, Input, Rejection, clip};
use crate::{IngestConfig, IngestError, Result};

/// What became of a request in Kafka mode.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ForwardSummary {
    /// Valid events acknowledged by the broker. Repeats of an `event_id`
    /// are counted here; ingest drops them.
    pub accepted: usize,
    /// Items ingest will refuse (they are forwarded all the same, and
    /// recorded in `rejected_events` there).
    pub rejected: Vec<Rejection>,
    /// Messages acknowledged by the broker (accepted + rejected).
    pub forwarded: usize,
}

/// One message ready to produce.
#[derive(Debug)]
pub struct Outgoing {
    key: Option<String>,
    payload: Vec<u8>,
}

/// The Kafka-mode collector's sink: checks each request's items and produces them to
/// `kafka.topic` with an idempotent producer.
pub struct Forwarder {
    producer: FutureProducer,
    topic: String,
    checker: Checker,
    cfg: IngestConfig,
    timeout: Duration,
    metrics: IngestMetrics,
    kafka_metrics: KafkaMetrics,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Creates the producer (idempotent, `acks=all`, lz4) for `kafka.topic`; fails when
    /// librdkafka refuses the settings.
    pub fn new(
        kafka: &KafkaConfig,
        ingest: &IngestConfig,
        metrics: IngestMetrics,
        kafka_metrics: KafkaMetrics,
    ) -> Result<Self> {
        let brokers = kafka.brokers.clone().unwrap_or_default();
        let delivery_ms = kafka.produce_timeout.as_millis().to_string();
        let producer = client_config(
            &brokers,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("compression.type", "lz4"),
                ("linger.ms", "5"),
                ("delivery.timeout.ms", &delivery_ms),
            ],
            &kafka.librdkafka,
        )
        .create::<FutureProducer>()
        .map_err(|e| IngestError::Kafka {
            topic: kafka.topic.clone(),
            message: format!("creating the producer: {e}"),
            kind: ErrorKind::Fatal,
        })?;
        Ok(Self {
            producer,
            topic: kafka.topic.clone(),
            checker: Checker::new(ingest),
            cfg: ingest.clone(),
            timeout: kafka.produce_timeout,
            metrics,
            kafka_metrics,
        })
    }

    /// The ingest settings that check items and limit requests.
    pub fn config(&self) -> &IngestConfig {
        &self.cfg
    }

    /// The ingest metrics its requests and events are counted in.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// CPU work: checks each item and serializes the messages.
    pub fn prepare(
        &self,
        principal: &Principal,
        inputs: Vec<Input>,
        now: DateTime<Utc>,
    ) -> (Vec<Outgoing>, ForwardSummary) {
        let mut summary = ForwardSummary::default();
        let mut out = Vec::with_capacity(inputs.len());
        for (index, Input(raw)) in inputs.into_iter().enumerate() {
            let doc = match Doc::parse(&raw) {
                Ok(doc) => doc,
                Err(e) => {
                    summary.rejected.push(Rejection {
                        index,
                        event_id: None,
                        error: format!("malformed JSON: {e}"),
                    });
                    out.push(Outgoing {
                        key: None,
                        payload: raw,
                    });
                    continue;
                }
            };
            match self.checker.check(principal, &doc, now) {
                Ok(_) => summary.accepted += 1,
                Err(r) => summary.rejected.push(Rejection {
                    index,
                    event_id: doc.get("event_id").and_then(Doc::as_str).map(clip),
                    error: r.error,
                }),
            }
            // Keyed by user (else device) so one user's events keep their
            // order within a partition.
            let key = ["user_id", "device_id"]
                .iter()
                .find_map(|k| doc.get(k).and_then(Doc::as_str))
                .map(str::to_owned);
            drop(doc);
            out.push(Outgoing { key, payload: raw });
        }
        summary.forwarded = out.len();
        (out, summary)
    }

    /// Produces the messages and waits until the broker acknowledged all of
    /// them (or one failed).
    pub async fn send(&self, principal: &Principal, messages: Vec<Outgoing>) -> Result<()> {
        let started = Instant::now();
        let scope = match principal {
            Principal::Rp(rp) => Some(rp.as_str()),
            Principal::Open | Principal::Admin => None,
        };
        let mut pending = Vec::with_capacity(messages.len());
        for m in &messages {
            let mut record = FutureRecord::<str, [u8]>::to(&self.topic).payload(&m.payload);
            if let Some(k) = &m.key {
                record = record.key(k.as_str());
            }
            if let Some(rp) = scope {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: SCOPE_HEADER,
                    value: Some(rp),
                }));
            }
            pending.push(self.producer.send(record, Timeout::After(self.timeout)));
        }
        // Polled together, so all of the request's messages are in flight at
        // once (each future queues its message on first poll, and waits in
        // the queue when librdkafka's is full).
        let failure = futures::future::join_all(pending)
            .await
            .into_iter()
            .find_map(|r| r.err().map(|(e, _)| e));
        self.kafka_metrics.produce(started.elapsed());
        match failure {
            None => Ok(()),
            Some(e) => Err(IngestError::Kafka {
                topic: self.topic.clone(),
                message: format!("the broker did not acknowledge a message: {e}"),
                kind: super::kafka_kind(&e),
            }),
        }
    }

    /// Waits for anything still queued (shutdown).
    pub fn flush(&self, within: Duration) {
        if let Err(e) = self.producer.flush(Timeout::After(within)) {
            tracing::warn!(error = %e, "producer flush at shutdown");
        }
    }
}
