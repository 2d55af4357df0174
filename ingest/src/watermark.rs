//! The ingest watermark: a time up to which every event that was sent is in
//! the store. The rollout controller refuses to judge on data older than its
//! freshness requirement, so this is what separates "no traffic" from "the
//! pipeline is behind".
//!
//! - The embedded collector answers only after the commit, so for it the
//!   watermark is always now ([`IngestWatermark::live`]).
//! - The Kafka consumer moves it ([`IngestWatermark::tracked`]): to the
//!   newest message timestamp of each committed batch, and to now (less one
//!   batch delay) when a whole tick passes with nothing received, buffered or
//!   in flight. A consumer that is down or lagging leaves it behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};

/// The time up to which every sent event is in the store; clones share one value.
#[derive(Debug, Clone)]
pub struct IngestWatermark {
    /// Microseconds since the epoch; `i64::MIN` before anything is known.
    /// `None`: always now.
    tracked: Option<Arc<AtomicI64>>,
}

impl IngestWatermark {
    /// Always now: sources that commit before they acknowledge.
    pub fn live() -> Self {
        Self { tracked: None }
    }

    /// Moved by a stream consumer; unknown until it first moves.
    pub fn tracked() -> Self {
        Self {
            tracked: Some(Arc::new(AtomicI64::new(i64::MIN))),
        }
    }

    /// The watermark: now for a live one; for a tracked one, `None` until it first moves.
    pub fn get(&self) -> Option<DateTime<Utc>> {
        match &self.tracked {
            None => Some(Utc::now()),
            Some(t) => {
                let v = t.load(Ordering::Acquire);
                (v != i64::MIN)
                    .then(|| Utc.timestamp_micros(v).single())
                    .flatten()
            }
        }
    }

    /// Moves the watermark forward (never back).
    pub fn advance_to(&self, at: DateTime<Utc>) {
        if let Some(t) = &self.tracked {
            t.fetch_max(at.timestamp_micros(), Ordering::AcqRel);
        }
    }

    pub(crate) fn advance_to_ms(&self, ms: i64) {
        if let Some(at) = Utc.timestamp_millis_opt(ms).single() {
            self.advance_to(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_watermarks_only_move_forward() {
        let w = IngestWatermark::tracked();
        assert_eq!(w.get(), None);
        let t = Utc::now();
        w.advance_to(t);
        w.advance_to(t - chrono::Duration::hours(1));
        assert_eq!(
            w.get().map(|x| x.timestamp_micros()),
            Some(t.timestamp_micros())
        );
        assert!(IngestWatermark::live().get().is_some());
    }
}
