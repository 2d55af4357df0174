//! Ingest's Prometheus metrics. Labels: source kind, outcome, request
//! outcome — all from fixed sets.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct IngestMetrics {
    events: IntCounterVec,
    requests: IntCounterVec,
    unknown_fields: IntCounterVec,
    dedup_keys: IntGauge,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let events = IntCounterVec::new(
            Opts::new(
                "keyshift_ingest_events_total",
                "Events by source and outcome (accepted, duplicate, rejected; forwarded in the collector's Kafka mode).",
            ),
            &["source", "outcome"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "keyshift_collector_requests_total",
                "Collector requests by outcome (ok, bad_request, unauthorized, too_large, unavailable, error).",
            ),
            &["outcome"],
        )?;
        let unknown_fields = IntCounterVec::new(
            Opts::new(
                "keyshift_ingest_unknown_fields_total",
                "Fields outside schema v1 kept in the extra column.",
            ),
            &["source"],
        )?;
        let dedup_keys = IntGauge::new(
            "keyshift_ingest_dedup_keys",
            "Event ids currently held by the dedup index.",
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(unknown_fields.clone()))?;
        registry.register(Box::new(dedup_keys.clone()))?;
        Ok(Self {
            events,
            requests,
            unknown_fields,
            dedup_keys,
        })
    }

    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    pub(crate) fn events(&self, source: &'static str, outcome: &'static str, n: usize) {
        if n > 0 {
            self.events
                .with_label_values(&[source, outcome])
                .inc_by(n as u64);
        }
    }

    pub(crate) fn request(&self, outcome: &'static str) {
        self.requests.with_label_values(&[outcome]).inc();
    }

    pub(crate) fn unknown_fields(&self, source: &'static str, n: usize) {
        self.unknown_fields
            .with_label_values(&[source])
            .inc_by(n as u64);
    }

    pub(crate) fn dedup_keys(&self, n: usize) {
        self.dedup_keys.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

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
    receive_errors: IntCounter,
}

impl KafkaMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let lag = IntGaugeVec::new(
            Opts::new(
                "keyshift_kafka_consumer_lag",
                "Messages behind the partition's high watermark.",
            ),
            &["partition"],
        )?;
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "keyshift_kafka_commit_seconds",
                "Time to validate and commit one batch of Kafka messages with its offsets.",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let produce_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "keyshift_kafka_produce_seconds",
                "Collector in Kafka mode: time until the broker acknowledged one request's messages.",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let rebalances = IntCounterVec::new(
            Opts::new(
                "keyshift_kafka_rebalances_total",
                "Partition assignments and revocations.",
            ),
            &["kind"],
        )?;
        let replayed_dropped = IntCounter::new(
            "keyshift_kafka_replayed_dropped_total",
            "Messages at or below a partition's stored offset, dropped on replay.",
        )?;
        let offset_gaps = IntCounter::new(
            "keyshift_kafka_offset_out_of_range_total",
            "Times a partition's next offset had left the broker (retention).",
        )?;
        let commit_conflicts = IntCounter::new(
            "keyshift_kafka_commit_conflicts_total",
            "Batches refused by the table (another writer owned the partition); re-read.",
        )?;
        let receive_errors = IntCounter::new(
            "keyshift_kafka_receive_errors_total",
            "Errors reported by the consumer (broker down, timeouts).",
        )?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(commit_seconds.clone()))?;
        registry.register(Box::new(produce_seconds.clone()))?;
        registry.register(Box::new(rebalances.clone()))?;
        registry.register(Box::new(replayed_dropped.clone()))?;
        registry.register(Box::new(offset_gaps.clone()))?;
        registry.register(Box::new(commit_conflicts.clone()))?;
        registry.register(Box::new(receive_errors.clone()))?;
        Ok(Self {
            lag,
            commit_seconds,
            produce_seconds,
            rebalances,
            replayed_dropped,
            offset_gaps,
            commit_conflicts,
            receive_errors,
        })
    }

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

    pub(crate) fn rebalance(&self, kind: &'static str) {
        self.rebalances.with_label_values(&[kind]).inc();
    }

    pub(crate) fn replayed_dropped(&self, n: u64) {
        self.replayed_dropped.inc_by(n);
    }

    pub(crate) fn offset_gap(&self) {
        self.offset_gaps.inc();
    }

    pub(crate) fn commit_conflict(&self) {
        self.commit_conflicts.inc();
    }

    pub(crate) fn receive_error(&self) {
        self.receive_errors.inc();
    }
}
