//! Ingest's Prometheus metrics: the pipeline's own (labels from fixed sets)
//! and the real-time event counters alerts read without waiting for a query
//! (labels bounded by construction, see [`RpLabels`]; `docs/metrics.md` is
//! the contract).

use std::sync::PoisonError;

use chrono::{DateTime, Utc};
use keyshift_schemas::RecoveryChannel;
use keyshift_store::EventRecord;
use keyshift_store::metrics::Registrar;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Registry};

mod kafka;
mod stored;

pub(crate) use kafka::KafkaEvent;
pub use kafka::{KafkaMetrics, Rebalance};
use stored::StoredEvents;
pub use stored::{DEFAULT_RP_LABELS, RpLabels, Tally};

/// How the collector answered a request (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// 200: stored (or forwarded to Kafka).
    Ok,
    /// 400 or 415: the body or its content type was refused.
    BadRequest,
    /// 401 or 403.
    Unauthorized,
    /// 413: over the size or event-count limit.
    TooLarge,
    /// 503: not stored for now; the client retries with the same ids.
    Unavailable,
    /// 500 with an error id: a keyshift bug.
    Bug,
    /// Any other 500 (a store that refuses for good, say).
    Error,
}

impl RequestOutcome {
    /// Every outcome, in label order.
    pub const ALL: [RequestOutcome; 7] = [
        Self::Ok,
        Self::BadRequest,
        Self::Unauthorized,
        Self::TooLarge,
        Self::Unavailable,
        Self::Bug,
        Self::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::TooLarge => "too_large",
            Self::Unavailable => "unavailable",
            Self::Bug => "bug",
            Self::Error => "error",
        }
    }
}

/// Ingest's Prometheus metrics: collector requests, events by outcome, unknown fields,
/// the dedup index's size and the real-time event counters. Clones share the counters.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    events: IntCounterVec,
    requests: IntCounterVec,
    unknown_fields: IntCounterVec,
    dedup_keys: IntGauge,
    dedup_bytes: IntGaugeVec,
    dedup_exact_seconds: IntGauge,
    dedup_checks: IntCounterVec,
    stored: StoredEvents,
}

impl IngestMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar::new(registry);
        let requests = r.counter_vec(
            "keyshift_collector_requests_total",
            "Collector requests by outcome (ok, bad_request, unauthorized, too_large, \
             unavailable, bug, error).",
            &["outcome"],
        )?;
        let unknown_fields = r.counter_vec(
            "keyshift_ingest_unknown_fields_total",
            "Fields outside schema v1 kept in the extra column.",
            &["source"],
        )?;
        // At 0 from the start, so that rates are 0 rather than absent.
        for outcome in RequestOutcome::ALL {
            requests.with_label_values(&[outcome.as_str()]);
        }
        for source in ["http", "kafka"] {
            unknown_fields.with_label_values(&[source]);
        }
        Ok(Self {
            events: r.counter_vec(
                "keyshift_ingest_events_total",
                "Events by source and outcome (accepted, duplicate, rejected; forwarded in the \
                 collector's Kafka mode).",
                &["source", "outcome"],
            )?,
            requests,
            unknown_fields,
            dedup_keys: r.int_gauge(
                "keyshift_ingest_dedup_keys",
                "Event ids held by the dedup index's exact tier.",
            )?,
            dedup_bytes: {
                let g = r.int_gauge_vec(
                    "keyshift_ingest_dedup_bytes",
                    "Memory of the dedup index, by tier (exact: the keys; filters: the Bloom \
                     filters).",
                    &["tier"],
                )?;
                for tier in ["exact", "filters"] {
                    g.with_label_values(&[tier]);
                }
                g
            },
            dedup_exact_seconds: r.int_gauge(
                "keyshift_ingest_dedup_exact_seconds",
                "How far back the dedup index's exact tier reaches (the whole window when \
                 nothing was evicted); older keys are checked against the table.",
            )?,
            dedup_checks: {
                let c = r.counter_vec(
                    "keyshift_ingest_dedup_checks_total",
                    "Events the dedup index was unsure of, checked against the table, by \
                     outcome (new, duplicate).",
                    &["outcome"],
                )?;
                for outcome in ["new", "duplicate"] {
                    c.with_label_values(&[outcome]);
                }
                c
            },
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

    /// Metrics bound to a private registry, for tests and tools.
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

    pub(crate) fn request(&self, outcome: RequestOutcome) {
        self.requests.with_label_values(&[outcome.as_str()]).inc();
    }

    pub(crate) fn unknown_fields(&self, source: &'static str, n: usize) {
        self.unknown_fields
            .with_label_values(&[source])
            .inc_by(n as u64);
    }

    /// Publishes the dedup index's size and reach.
    pub(crate) fn dedup(&self, index: &crate::dedup::DedupIndex) {
        let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.dedup_keys.set(int(index.len()));
        let memory = index.memory();
        self.dedup_bytes
            .with_label_values(&["exact"])
            .set(int(memory.hot));
        self.dedup_bytes
            .with_label_values(&["filters"])
            .set(int(memory.cold));
        let since = index.hot_since().unwrap_or_else(|| index.window_start());
        // An index that never had a window (tools, tests) has no reach to show.
        if since > DateTime::UNIX_EPOCH {
            self.dedup_exact_seconds
                .set((Utc::now() - since).num_seconds().max(0));
        }
    }

    /// Counts the outcome of checking unsure keys against the table.
    pub(crate) fn dedup_confirmed(&self, new: usize, duplicate: usize) {
        for (outcome, n) in [("new", new), ("duplicate", duplicate)] {
            if n > 0 {
                self.dedup_checks
                    .with_label_values(&[outcome])
                    .inc_by(n as u64);
            }
        }
    }
}
