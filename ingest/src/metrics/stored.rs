//! The real-time event counters of `docs/metrics.md` (`keyshift_events_total`,
//! errors, fallbacks, recoveries, event age), counted from what a commit
//! stored, with `rp_id` label values bounded by [`RpLabels`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use keyshift_schemas::{EventType, Payload};
use keyshift_store::EventRecord;
use keyshift_store::metrics::Registrar;
use prometheus::{HistogramVec, IntCounterVec, Registry};

/// The `rp_id` label values: a fixed set plus the first `cap` others seen,
/// so that a producer inventing relying parties cannot grow the series.
#[derive(Debug)]
pub struct RpLabels {
    known: HashSet<String>,
    seen: HashSet<String>,
    cap: usize,
}

impl RpLabels {
    /// Labels that always keep `known` and admit at most `cap` others.
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
pub(super) struct StoredEvents {
    events: IntCounterVec,
    errors: IntCounterVec,
    fallbacks: IntCounterVec,
    pub(super) recoveries: IntCounterVec,
    age: HistogramVec,
    pub(super) rps: Arc<Mutex<RpLabels>>,
}

/// Default cap of `rp_id` label values beyond the configured ones.
pub const DEFAULT_RP_LABELS: usize = 32;

impl StoredEvents {
    pub(super) fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar::new(registry);
        Ok(Self {
            events: r.counter_vec(
                "keyshift_events_total",
                "Events stored, by relying party, type and sign-in method.",
                &["rp_id", "event_type", "method"],
            )?,
            errors: r.counter_vec(
                "keyshift_ceremony_errors_total",
                "Failed ceremonies by DOMException name (other names: other).",
                &["rp_id", "ceremony", "method", "error"],
            )?,
            fallbacks: r.counter_vec(
                "keyshift_fallbacks_total",
                "auth.fallback events by the method left and the reason.",
                &["rp_id", "from_method", "reason"],
            )?,
            recoveries: r.counter_vec(
                "keyshift_recoveries_total",
                "Account-recovery events by channel and stage.",
                &["rp_id", "channel", "stage"],
            )?,
            age: r.histogram_vec(
                "keyshift_ingest_event_age_seconds",
                "Age of each stored event at commit (commit time - occurred_at).",
                &[
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
                ],
                &["source"],
            )?,
            rps: Arc::new(Mutex::new(RpLabels::new([], DEFAULT_RP_LABELS))),
        })
    }

    pub(super) fn tally(&self, records: &[EventRecord], now: DateTime<Utc>) -> Tally {
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

    pub(super) fn apply(&self, tally: Tally) {
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
