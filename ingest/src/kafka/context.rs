//! The consumer's librdkafka side: its settings, and the callbacks that
//! queue rebalances for the loop and turn statistics into lag gauges.

use std::sync::Mutex;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::warn;

use super::{KafkaConfig, StartFrom, client_config};
use crate::metrics::KafkaMetrics;

pub(super) enum RebalanceEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Receives librdkafka's callbacks: rebalances are queued for the loop,
/// statistics become lag gauges.
pub(super) struct Ctx {
    pub topic: String,
    pub events: Mutex<Vec<RebalanceEvent>>,
    pub metrics: KafkaMetrics,
}

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        if let Some(topic) = stats.topics.get(&self.topic) {
            for (p, part) in &topic.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    self.metrics.lag(*p, part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        let parts = |tpl: &TopicPartitionList| -> Vec<i32> {
            tpl.elements()
                .iter()
                .filter(|e| e.topic() == self.topic)
                .map(|e| e.partition())
                .collect()
        };
        let event = match rebalance {
            Rebalance::Assign(tpl) => RebalanceEvent::Assigned(parts(tpl)),
            Rebalance::Revoke(tpl) => RebalanceEvent::Revoked(parts(tpl)),
            Rebalance::Error(e) => {
                warn!(error = %e, "rebalance error");
                return;
            }
        };
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event);
    }
}

pub(super) fn consumer_config(cfg: &KafkaConfig, brokers: &str) -> ClientConfig {
    let fetch_buffer = cfg.fetch_buffer_kib.to_string();
    let queued_min = cfg.max_batch_messages.to_string();
    let reset = match cfg.start_from {
        StartFrom::Earliest => "earliest",
        StartFrom::Latest => "latest",
    };
    client_config(
        brokers,
        &[
            ("group.id", &cfg.group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", reset),
            ("queued.max.messages.kbytes", &fetch_buffer),
            // Prefetch about one batch per partition, in large fetches: the
            // defaults (1 MiB per partition per fetch, 500 ms fetch wait,
            // 100,000 messages queued per partition) left the loop waiting
            // for data half the time, or held far more than a batch.
            ("queued.min.messages", &queued_min),
            ("max.partition.fetch.bytes", "4194304"),
            ("fetch.wait.max.ms", "100"),
            // librdkafka waits this long before fetching again for a
            // partition whose queue was full (default 1 s). A backlog drains
            // a 2 MiB queue in far less: with the default the loop starved,
            // and only a much larger (and costlier) queue hid it.
            ("fetch.queue.backoff.ms", "10"),
            ("statistics.interval.ms", "5000"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "2000"),
        ],
        &cfg.librdkafka,
    )
}
