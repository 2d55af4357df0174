//! The store's Prometheus metrics. Labels are bounded: table names and a
//! fixed result set, never ids.

use std::time::Duration;

use crate::{AUTH_EVENTS, ErrorKind, REJECTED_EVENTS};
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct StoreMetrics {
    commit_seconds: HistogramVec,
    rows_written: IntCounterVec,
    commit_errors: IntCounterVec,
    last_commit: Gauge,
}

impl StoreMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let commit_seconds = HistogramVec::new(
            HistogramOpts::new(
                "keyshift_store_commit_seconds",
                "Time to write and commit one group of rows to the Delta tables.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["result"],
        )?;
        let rows_written = IntCounterVec::new(
            Opts::new(
                "keyshift_store_rows_written_total",
                "Rows committed to each table.",
            ),
            &["table"],
        )?;
        let commit_errors = IntCounterVec::new(
            Opts::new(
                "keyshift_store_commit_errors_total",
                "Failed commits, by table and by what a retry can do (kind: conflict, \
                 transient, fatal, bug).",
            ),
            &["table", "kind"],
        )?;
        for table in [AUTH_EVENTS, REJECTED_EVENTS] {
            for kind in ErrorKind::ALL {
                commit_errors.with_label_values(&[table, kind.as_str()]);
            }
        }
        let last_commit = Gauge::new(
            "keyshift_store_last_commit_timestamp_seconds",
            "Unix time of the last successful commit (the ingest watermark).",
        )?;
        registry.register(Box::new(last_commit.clone()))?;
        registry.register(Box::new(commit_seconds.clone()))?;
        registry.register(Box::new(rows_written.clone()))?;
        registry.register(Box::new(commit_errors.clone()))?;
        Ok(Self {
            commit_seconds,
            rows_written,
            commit_errors,
            last_commit,
        })
    }

    /// Metrics bound to a private registry, for tests and tools.
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    pub(crate) fn observe_commit(&self, elapsed: Duration, ok: bool) {
        self.commit_seconds
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .observe(elapsed.as_secs_f64());
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            self.last_commit.set(now.as_secs_f64());
        }
    }

    pub(crate) fn commit_failed(&self, table: &'static str, kind: ErrorKind) {
        self.commit_errors
            .with_label_values(&[table, kind.as_str()])
            .inc();
    }

    pub(crate) fn rows_written(&self, table: &'static str, n: usize) {
        if n > 0 {
            self.rows_written
                .with_label_values(&[table])
                .inc_by(n as u64);
        }
    }
}

/// Metrics of the query runtime. Labels: `lane` (adhoc, control) and fixed
/// reason sets.
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    running: IntGaugeVec,
    queued: IntGaugeVec,
    rejected: IntCounterVec,
    cancelled: IntCounterVec,
    seconds: HistogramVec,
}

impl QueryMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let running = IntGaugeVec::new(
            Opts::new("keyshift_query_running", "Queries executing now, by lane."),
            &["lane"],
        )?;
        let queued = IntGaugeVec::new(
            Opts::new(
                "keyshift_query_queued",
                "Queries waiting for a slot, by lane.",
            ),
            &["lane"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "keyshift_query_rejected_total",
                "Queries refused without running (reason: queue_full, queue_timeout).",
            ),
            &["lane", "reason"],
        )?;
        let cancelled = IntCounterVec::new(
            Opts::new(
                "keyshift_query_cancelled_total",
                "Queries stopped before they finished (reason: timeout, memory, shutdown, abandoned).",
            ),
            &["lane", "reason"],
        )?;
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "keyshift_query_seconds",
                "Execution time of queries that ran, by lane (after waiting for a slot).",
            )
            .buckets(vec![
                0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["lane"],
        )?;
        registry.register(Box::new(running.clone()))?;
        registry.register(Box::new(queued.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(cancelled.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        // Known label sets start at 0, so that rates over them are 0, not
        // absent, before the first refusal.
        for lane in ["adhoc", "control"] {
            running.with_label_values(&[lane]);
            queued.with_label_values(&[lane]);
            for reason in ["queue_full", "queue_timeout"] {
                rejected.with_label_values(&[lane, reason]);
            }
            for reason in ["timeout", "memory", "shutdown", "abandoned"] {
                cancelled.with_label_values(&[lane, reason]);
            }
        }
        Ok(Self {
            running,
            queued,
            rejected,
            cancelled,
            seconds,
        })
    }

    /// Metrics bound to a private registry, for tests and tools.
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    pub(crate) fn running(&self, lane: &'static str) -> IntGauge {
        self.running.with_label_values(&[lane])
    }

    pub(crate) fn queued(&self, lane: &'static str) -> IntGauge {
        self.queued.with_label_values(&[lane])
    }

    pub(crate) fn rejected(&self, lane: &'static str, reason: &'static str) {
        self.rejected.with_label_values(&[lane, reason]).inc();
    }

    pub(crate) fn cancelled(&self, lane: &'static str, reason: &'static str) {
        self.cancelled.with_label_values(&[lane, reason]).inc();
    }

    pub(crate) fn ran(&self, lane: &'static str, elapsed: Duration) {
        self.seconds
            .with_label_values(&[lane])
            .observe(elapsed.as_secs_f64());
    }
}
