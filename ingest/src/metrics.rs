//! Ingest's Prometheus metrics. Labels: source kind, outcome, request
//! outcome — all from fixed sets.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

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
                "Events by source and outcome (accepted, duplicate, rejected).",
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
