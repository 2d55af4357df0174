//! The Kafka source's metrics, and its events: each log line that goes
//! with a counter is one [`KafkaEvent`].

use std::time::Duration;

use keyshift_store::ErrorKind;
use keyshift_store::metrics::Registrar;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGaugeVec, Registry};
use tracing::{error, info, warn};

use crate::IngestError;
use crate::kafka::OffsetPolicy;

/// Kafka source metrics. The `partition` label is bounded by the topic's
/// partition count.
#[derive(Debug, Clone)]
pub struct KafkaMetrics {
    lag: IntGaugeVec,
    commit_seconds: Histogram,
    produce_seconds: Histogram,
    rebalances: IntCounterVec,
    replayed_dropped: IntCounter,
    offset_gaps: IntCounter,
    commit_conflicts: IntCounter,
    batch_errors: IntCounterVec,
    position_retries: IntCounterVec,
    receive_errors: IntCounter,
}

impl KafkaMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar::new(registry);
        let rebalances = r.counter_vec(
            "keyshift_kafka_rebalances_total",
            "Partition assignments and revocations.",
            &["kind"],
        )?;
        for kind in [Rebalance::Assign, Rebalance::Revoke] {
            rebalances.with_label_values(&[kind.as_str()]);
        }
        let batch_errors = r.counter_vec(
            "keyshift_kafka_batch_errors_total",
            "Batches that failed, by what a retry can do (kind: conflict and transient are \
             re-read from the table; fatal and bug stop the consumer).",
            &["kind"],
        )?;
        for kind in ErrorKind::ALL {
            batch_errors.with_label_values(&[kind.as_str()]);
        }
        let position_retries = r.counter_vec(
            "keyshift_kafka_position_retries_total",
            "Times reading assigned partitions' positions (and the dedup keys other members \
             stored) from the table failed in a way a retry can fix, and was retried.",
            &["kind"],
        )?;
        for kind in ErrorKind::ALL.into_iter().filter(|k| k.is_retryable()) {
            position_retries.with_label_values(&[kind.as_str()]);
        }
        Ok(Self {
            lag: r.int_gauge_vec(
                "keyshift_kafka_consumer_lag",
                "Messages behind the partition's high watermark.",
                &["partition"],
            )?,
            commit_seconds: r.histogram(
                "keyshift_kafka_commit_seconds",
                "Time to validate and commit one batch of Kafka messages with its offsets.",
                &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            )?,
            produce_seconds: r.histogram(
                "keyshift_kafka_produce_seconds",
                "Collector in Kafka mode: time until the broker acknowledged one request's \
                 messages.",
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )?,
            rebalances,
            replayed_dropped: r.counter(
                "keyshift_kafka_replayed_dropped_total",
                "Messages at or below a partition's stored offset, dropped on replay.",
            )?,
            offset_gaps: r.counter(
                "keyshift_kafka_offset_out_of_range_total",
                "Times a partition's next offset had left the broker (retention).",
            )?,
            commit_conflicts: r.counter(
                "keyshift_kafka_commit_conflicts_total",
                "Batches refused by the table because another writer committed first (another \
                 member owned the partition); re-read from the table.",
            )?,
            batch_errors,
            position_retries,
            receive_errors: r.counter(
                "keyshift_kafka_receive_errors_total",
                "Errors reported by the consumer (broker down, timeouts).",
            )?,
        })
    }

    /// Metrics bound to a private registry, for tests and tools.
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    pub(crate) fn lag(&self, partition: i32, lag: i64) {
        self.lag
            .with_label_values(&[&partition.to_string()])
            .set(lag);
    }

    pub(crate) fn commit(&self, elapsed: Duration) {
        self.commit_seconds.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn produce(&self, elapsed: Duration) {
        self.produce_seconds.observe(elapsed.as_secs_f64());
    }

    /// Logs and counts one consumer event.
    pub(crate) fn emit(&self, event: KafkaEvent<'_>) {
        match event {
            KafkaEvent::Received { error } => {
                warn!(error = %error, "kafka receive error (librdkafka retries by itself)");
                self.receive_errors.inc();
            }
            KafkaEvent::Rebalanced {
                kind,
                partitions,
                dropped,
            } => {
                info!(
                    kind = kind.as_str(),
                    ?partitions,
                    dropped,
                    "partitions rebalanced"
                );
                self.rebalances.with_label_values(&[kind.as_str()]).inc();
            }
            KafkaEvent::Replayed => self.replayed_dropped.inc(),
            KafkaEvent::OffsetGap {
                topic,
                partition,
                expected,
                got,
                policy,
            } => {
                error!(
                    topic,
                    partition,
                    expected_offset = expected,
                    first_available = got,
                    lost_messages = got - expected,
                    ?policy,
                    "OFFSET OUT OF RANGE: messages keyshift never stored have left the broker \
                     (retention)"
                );
                self.offset_gaps.inc();
            }
            KafkaEvent::BatchFailed { error, stopping } => {
                let kind = error.kind();
                if !stopping {
                    warn!(
                        kind = kind.as_str(),
                        error = %error,
                        "kafka batch not committed; repositioning from the table"
                    );
                } else {
                    error!(
                        error_id = error.error_id(),
                        kind = kind.as_str(),
                        error = %error,
                        "kafka batch failed and retrying cannot help: stopping the consumer"
                    );
                }
                self.batch_errors.with_label_values(&[kind.as_str()]).inc();
                if kind == ErrorKind::Conflict {
                    self.commit_conflicts.inc();
                }
            }
            KafkaEvent::PositionRetry {
                error,
                partitions,
                retry_in,
            } => {
                let kind = error.kind();
                warn!(
                    kind = kind.as_str(),
                    error = %error,
                    ?partitions,
                    retry_in_ms = retry_in.as_millis() as u64,
                    "reading partition positions from the table failed; retrying"
                );
                self.position_retries
                    .with_label_values(&[kind.as_str()])
                    .inc();
            }
        }
    }
}

/// A partition assignment change (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebalance {
    /// Partitions given to this member.
    Assign,
    /// Partitions taken away from it.
    Revoke,
}

impl Rebalance {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rebalance::Assign => "assign",
            Rebalance::Revoke => "revoke",
        }
    }
}

/// Something the Kafka consumer reports; [`KafkaMetrics::emit`] logs it and
/// counts it in one call, so the two cannot drift apart.
#[derive(Debug)]
pub(crate) enum KafkaEvent<'a> {
    /// librdkafka reported an error while fetching (it retries by itself).
    Received {
        error: &'a rdkafka::error::KafkaError,
    },
    /// Partitions were assigned or revoked; `dropped` buffered messages of
    /// revoked partitions were dropped (their new owner re-reads them).
    Rebalanced {
        kind: Rebalance,
        partitions: &'a [i32],
        dropped: usize,
    },
    /// A message at or below its partition's stored offset was dropped.
    Replayed,
    /// Messages never stored have left the broker (retention).
    OffsetGap {
        topic: &'a str,
        partition: i32,
        expected: i64,
        got: i64,
        policy: OffsetPolicy,
    },
    /// A batch did not commit; the consumer re-reads from the table, or
    /// (`stopping`) stops because re-reading would fail the same way.
    BatchFailed {
        error: &'a IngestError,
        stopping: bool,
    },
    /// Reading assigned partitions' positions from the table failed in a
    /// way a retry can fix; tried again after `retry_in`.
    PositionRetry {
        error: &'a IngestError,
        partitions: &'a [i32],
        retry_in: Duration,
    },
}
