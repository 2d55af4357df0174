//! Ingest's Prometheus metrics: the pipeline's own (labels from fixed sets)
//! and the real-time event counters alerts read without waiting for a query
//! (labels bounded by construction, see [`RpLabels`]; `docs/metrics.md` is
//! the contract).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keyshift_schemas::{EventType, Payload, RecoveryChannel};
use keyshift_store::{ErrorKind, EventRecord};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Debug, Clone)]
pub struct IngestMetrics {
    events: IntCounterVec,
    requests: IntCounterVec,
    unknown_fields: IntCounterVec,
    dedup_keys: IntGauge,
    stored: StoredEvents,
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
                "Collector requests by outcome (ok, bad_request, unauthorized, too_large, unavailable, bug, error).",
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
        // At 0 from the start, so that rates are 0 rather than absent.
        for source in ["http", "kafka"] {
            unknown_fields.with_label_values(&[source]);
        }
        Ok(Self {
            events,
            requests,
            unknown_fields,
            dedup_keys,
            stored: StoredEvents::new(registry)?,
        })
    }

    /// Fixes the `rp_id` label values: `known` always get their own (the
    /// relying parties of `auth.rp_tokens`), then the first `cap` others
    /// seen; any further one is counted as `other`.
    pub fn set_rp_labels(&self, known: impl IntoIterator<Item = String>, cap: usize) {
        let known: Vec<String> = known.into_iter().collect();
        // The recovery counters of the configured relying parties start at
        // 0, so that the first recoveries after a restart show in `rate()`.
        for rp in &known {
            for channel in RecoveryChannel::ALL {
                for stage in ["started", "completed", "failed"] {
                    self.stored
                        .recoveries
                        .with_label_values(&[rp.as_str(), channel, stage]);
                }
            }
        }
        let mut labels = self
            .stored
            .rps
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *labels = RpLabels::new(known, cap);
    }

    /// Counts what a successful commit stored.
    pub(crate) fn stored(&self, tally: Tally) {
        self.stored.apply(tally);
    }

    /// Summarises records about to be committed, applied by [`Self::stored`]
    /// once the commit succeeded.
    pub(crate) fn tally(&self, records: &[EventRecord], now: DateTime<Utc>) -> Tally {
        self.stored.tally(records, now)
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
    batch_errors: IntCounterVec,
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
            "Batches refused by the table because another writer committed first (another \
             member owned the partition); re-read from the table.",
        )?;
        let batch_errors = IntCounterVec::new(
            Opts::new(
                "keyshift_kafka_batch_errors_total",
                "Batches that failed, by what a retry can do (kind: conflict and transient are \
                 re-read from the table; fatal and bug stop the consumer).",
            ),
            &["kind"],
        )?;
        for kind in ErrorKind::ALL {
            batch_errors.with_label_values(&[kind.as_str()]);
        }
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
        registry.register(Box::new(batch_errors.clone()))?;
        registry.register(Box::new(receive_errors.clone()))?;
        Ok(Self {
            lag,
            commit_seconds,
            produce_seconds,
            rebalances,
            replayed_dropped,
            offset_gaps,
            commit_conflicts,
            batch_errors,
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

    /// A batch that did not commit.
    pub(crate) fn batch_error(&self, kind: ErrorKind) {
        self.batch_errors.with_label_values(&[kind.as_str()]).inc();
        if kind == ErrorKind::Conflict {
            self.commit_conflicts.inc();
        }
    }

    pub(crate) fn receive_error(&self) {
        self.receive_errors.inc();
    }
}

/// The `rp_id` label values: a fixed set plus the first `cap` others seen,
/// so that a producer inventing relying parties cannot grow the series.
#[derive(Debug)]
pub struct RpLabels {
    known: HashSet<String>,
    seen: HashSet<String>,
    cap: usize,
}

impl RpLabels {
    pub fn new(known: impl IntoIterator<Item = String>, cap: usize) -> Self {
        Self {
            known: known.into_iter().collect(),
            seen: HashSet::new(),
            cap,
        }
    }

    /// The label for `rp_id`: itself, or `other` once the cap is reached.
    pub fn label(&mut self, rp_id: &str) -> String {
        if self.known.contains(rp_id) || self.seen.contains(rp_id) {
            return rp_id.to_owned();
        }
        if self.seen.len() < self.cap && rp_id != "other" {
            self.seen.insert(rp_id.to_owned());
            return rp_id.to_owned();
        }
        "other".to_owned()
    }
}

/// DOMException names WebAuthn clients report; any other name is `other`.
const ERROR_NAMES: [&str; 12] = [
    "NotAllowedError",
    "AbortError",
    "InvalidStateError",
    "SecurityError",
    "NotSupportedError",
    "ConstraintError",
    "UnknownError",
    "TimeoutError",
    "NetworkError",
    "EncodingError",
    "DataError",
    "OperationError",
];

fn error_label(name: &str) -> &'static str {
    ERROR_NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("other")
}

/// One counter increment: which family and its label values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Count {
    Event(String, &'static str, &'static str),
    Error(String, &'static str, &'static str, &'static str),
    Fallback(String, &'static str, &'static str),
    Recovery(String, &'static str, &'static str),
}

/// What one commit stored, counted before the records move to the writer.
#[derive(Debug, Default)]
pub struct Tally {
    counts: HashMap<Count, u64>,
    /// (source, age in seconds) per event.
    ages: Vec<(&'static str, f64)>,
}

/// The per-event counters of `docs/metrics.md` (`keyshift_events_total`…).
#[derive(Debug, Clone)]
struct StoredEvents {
    events: IntCounterVec,
    errors: IntCounterVec,
    fallbacks: IntCounterVec,
    recoveries: IntCounterVec,
    age: HistogramVec,
    rps: Arc<Mutex<RpLabels>>,
}

/// Default cap of `rp_id` label values beyond the configured ones.
pub const DEFAULT_RP_LABELS: usize = 32;

impl StoredEvents {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let events = IntCounterVec::new(
            Opts::new(
                "keyshift_events_total",
                "Events stored, by relying party, type and sign-in method.",
            ),
            &["rp_id", "event_type", "method"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "keyshift_ceremony_errors_total",
                "Failed ceremonies by DOMException name (other names: other).",
            ),
            &["rp_id", "ceremony", "method", "error"],
        )?;
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "keyshift_fallbacks_total",
                "auth.fallback events by the method left and the reason.",
            ),
            &["rp_id", "from_method", "reason"],
        )?;
        let recoveries = IntCounterVec::new(
            Opts::new(
                "keyshift_recoveries_total",
                "Account-recovery events by channel and stage.",
            ),
            &["rp_id", "channel", "stage"],
        )?;
        let age = HistogramVec::new(
            HistogramOpts::new(
                "keyshift_ingest_event_age_seconds",
                "Age of each stored event at commit (commit time - occurred_at).",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
            ]),
            &["source"],
        )?;
        for c in [
            Box::new(events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(fallbacks.clone()),
            Box::new(recoveries.clone()),
            Box::new(age.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Self {
            events,
            errors,
            fallbacks,
            recoveries,
            age,
            rps: Arc::new(Mutex::new(RpLabels::new([], DEFAULT_RP_LABELS))),
        })
    }

    fn tally(&self, records: &[EventRecord], now: DateTime<Utc>) -> Tally {
        let mut tally = Tally::default();
        let mut rps = self.rps.lock().unwrap_or_else(PoisonError::into_inner);
        for r in records {
            let ev = &r.event;
            let rp = rps.label(&ev.rp_id);
            #[allow(clippy::cast_precision_loss)]
            let age = (now - ev.occurred_at).num_milliseconds().max(0) as f64 / 1000.0;
            tally.ages.push((r.source.kind(), age));
            let mut add = |c: Count| *tally.counts.entry(c).or_default() += 1;
            let method = match &ev.payload {
                Payload::AuthStarted { method, .. }
                | Payload::AuthSucceeded { method, .. }
                | Payload::AuthFailed { method, .. } => method.as_str(),
                Payload::AuthFallback { from_method, .. } => from_method.as_str(),
                _ => "none",
            };
            add(Count::Event(rp.clone(), ev.event_type.as_str(), method));
            match &ev.payload {
                Payload::AuthFailed { error, .. } => {
                    add(Count::Error(rp, "auth", method, error_label(&error.name)));
                }
                Payload::EnrollmentFailed { error } => {
                    add(Count::Error(
                        rp,
                        "enrollment",
                        "none",
                        error_label(&error.name),
                    ));
                }
                Payload::AuthFallback {
                    from_method,
                    reason,
                    ..
                } => add(Count::Fallback(rp, from_method.as_str(), reason.as_str())),
                Payload::Recovery { channel } => {
                    let stage = match ev.event_type {
                        EventType::RecoveryCompleted => "completed",
                        EventType::RecoveryFailed => "failed",
                        _ => "started",
                    };
                    add(Count::Recovery(rp, channel.as_str(), stage));
                }
                _ => {}
            }
        }
        tally
    }

    fn apply(&self, tally: Tally) {
        for (c, n) in tally.counts {
            let (vec, labels): (&IntCounterVec, Vec<&str>) = match &c {
                Count::Event(rp, t, m) => (&self.events, vec![rp, t, m]),
                Count::Error(rp, c, m, e) => (&self.errors, vec![rp, c, m, e]),
                Count::Fallback(rp, m, r) => (&self.fallbacks, vec![rp, m, r]),
                Count::Recovery(rp, ch, s) => (&self.recoveries, vec![rp, ch, s]),
            };
            vec.with_label_values(&labels).inc_by(n);
        }
        for (source, age) in tally.ages {
            self.age.with_label_values(&[source]).observe(age);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rp_labels_are_capped() {
        let mut l = RpLabels::new(["bank.example".to_owned()], 2);
        assert_eq!(l.label("a"), "a");
        assert_eq!(l.label("b"), "b");
        assert_eq!(l.label("c"), "other");
        assert_eq!(l.label("a"), "a");
        assert_eq!(l.label("bank.example"), "bank.example");
        // A relying party called `other` cannot take a slot of its own.
        let mut l = RpLabels::new([], 5);
        assert_eq!(l.label("other"), "other");
        assert_eq!(l.seen.len(), 0);
    }

    #[test]
    fn unknown_error_names_are_other() {
        assert_eq!(error_label("SecurityError"), "SecurityError");
        assert_eq!(error_label("user typed <script>"), "other");
        assert_eq!(error_label("securityerror"), "other");
    }
}
