//! The store's Prometheus metrics. Labels are bounded: table names and a
//! fixed result set, never ids.

use std::time::Duration;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use tracing::{error, warn};

use crate::{AUTH_EVENTS, ErrorKind, REJECTED_EVENTS, StoreError};

mod maintenance;

pub use maintenance::MaintenanceMetrics;
pub(crate) use maintenance::Trigger;

/// A commit that failed, as the writer reports it (see
/// [`StoreMetrics::commit_failed`]).
#[derive(Debug)]
pub(crate) struct CommitFailure<'a> {
    pub table: &'static str,
    pub kind: ErrorKind,
    /// The id the callers are given.
    pub error_id: &'a str,
    pub error: &'a StoreError,
    /// Rows the commit held.
    pub events: usize,
    pub rejected: usize,
}

/// Creates metrics and registers them in one step. Every metrics struct of
/// keyshift builds its metrics through this, so that each is declared once,
/// with its name, help, label names and buckets side by side.
#[derive(Debug, Clone, Copy)]
pub struct Registrar<'r>(&'r Registry);

impl<'r> Registrar<'r> {
    /// Registers into `registry`.
    pub fn new(registry: &'r Registry) -> Self {
        Self(registry)
    }

    fn add<C: prometheus::core::Collector + Clone + 'static>(
        &self,
        c: prometheus::Result<C>,
    ) -> prometheus::Result<C> {
        let c = c?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// A counter without labels.
    pub fn counter(&self, name: &str, help: &str) -> prometheus::Result<IntCounter> {
        self.add(IntCounter::new(name, help))
    }

    /// A counter with the given label names.
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    /// A floating-point gauge without labels.
    pub fn gauge(&self, name: &str, help: &str) -> prometheus::Result<Gauge> {
        self.add(Gauge::new(name, help))
    }

    /// An integer gauge without labels.
    pub fn int_gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGauge> {
        self.add(IntGauge::new(name, help))
    }

    /// A floating-point gauge with the given label names.
    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<GaugeVec> {
        self.add(GaugeVec::new(Opts::new(name, help), labels))
    }

    /// An integer gauge with the given label names.
    pub fn int_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntGaugeVec> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    /// A histogram without labels, with the given bucket bounds.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> prometheus::Result<Histogram> {
        self.add(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        ))
    }

    /// A histogram with the given bucket bounds and label names.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> prometheus::Result<HistogramVec> {
        self.add(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        ))
    }
}

/// The writer's metrics: commit time, rows written, failed commits by kind,
/// the last commit's time.
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
        let r = Registrar::new(registry);
        let commit_errors = r.counter_vec(
            "keyshift_store_commit_errors_total",
            "Failed commits, by table and by what a retry can do (kind: conflict, transient, \
             fatal, bug).",
            &["table", "kind"],
        )?;
        for table in [AUTH_EVENTS, REJECTED_EVENTS] {
            for kind in ErrorKind::ALL {
                commit_errors.with_label_values(&[table, kind.as_str()]);
            }
        }
        Ok(Self {
            commit_seconds: r.histogram_vec(
                "keyshift_store_commit_seconds",
                "Time to write and commit one group of rows to the Delta tables.",
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
                &["result"],
            )?,
            rows_written: r.counter_vec(
                "keyshift_store_rows_written_total",
                "Rows committed to each table.",
                &["table"],
            )?,
            commit_errors,
            last_commit: r.gauge(
                "keyshift_store_last_commit_timestamp_seconds",
                "Unix time of the last successful commit (the ingest watermark).",
            )?,
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

    /// Logs and counts a failed commit: a warning when a retry can succeed
    /// (a conflict, transient I/O), an error otherwise.
    pub(crate) fn commit_failed(&self, f: CommitFailure<'_>) {
        let (kind, table, error_id) = (f.kind.as_str(), f.table, f.error_id);
        let (events, rejected) = (f.events, f.rejected);
        if f.kind.is_retryable() {
            warn!(error_id, kind, table, error = %f.error, events, rejected, "commit failed");
        } else {
            error!(
                error_id,
                kind,
                table,
                error = %f.error,
                source = ?f.error,
                events,
                rejected,
                "commit failed"
            );
        }
        self.commit_errors.with_label_values(&[table, kind]).inc();
    }

    pub(crate) fn rows_written(&self, table: &'static str, n: usize) {
        if n > 0 {
            self.rows_written
                .with_label_values(&[table])
                .inc_by(n as u64);
        }
    }
}

/// Why a query was refused without running (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every slot taken and the queue full.
    QueueFull,
    /// Waited in the queue for longer than allowed.
    QueueTimeout,
}

impl Refusal {
    const ALL: [Refusal; 2] = [Refusal::QueueFull, Refusal::QueueTimeout];

    fn as_str(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::QueueTimeout => "queue_timeout",
        }
    }
}

/// Why a query was stopped before it finished (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancel {
    /// Past `store.query_timeout`.
    Timeout,
    /// Over its memory limit.
    Memory,
    /// The process is shutting down.
    Shutdown,
    /// Its caller went away (the request was dropped).
    Abandoned,
}

impl Cancel {
    const ALL: [Cancel; 4] = [
        Cancel::Timeout,
        Cancel::Memory,
        Cancel::Shutdown,
        Cancel::Abandoned,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Cancel::Timeout => "timeout",
            Cancel::Memory => "memory",
            Cancel::Shutdown => "shutdown",
            Cancel::Abandoned => "abandoned",
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
        let r = Registrar::new(registry);
        let running = r.int_gauge_vec(
            "keyshift_query_running",
            "Queries executing now, by lane.",
            &["lane"],
        )?;
        let queued = r.int_gauge_vec(
            "keyshift_query_queued",
            "Queries waiting for a slot, by lane.",
            &["lane"],
        )?;
        let rejected = r.counter_vec(
            "keyshift_query_rejected_total",
            "Queries refused without running (reason: queue_full, queue_timeout).",
            &["lane", "reason"],
        )?;
        let cancelled = r.counter_vec(
            "keyshift_query_cancelled_total",
            "Queries stopped before they finished (reason: timeout, memory, shutdown, abandoned).",
            &["lane", "reason"],
        )?;
        let seconds = r.histogram_vec(
            "keyshift_query_seconds",
            "Execution time of queries that ran, by lane (after waiting for a slot).",
            &[
                0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ],
            &["lane"],
        )?;
        // Known label sets start at 0, so that rates over them are 0, not
        // absent, before the first refusal.
        for lane in ["adhoc", "control"] {
            running.with_label_values(&[lane]);
            queued.with_label_values(&[lane]);
            for reason in Refusal::ALL {
                rejected.with_label_values(&[lane, reason.as_str()]);
            }
            for reason in Cancel::ALL {
                cancelled.with_label_values(&[lane, reason.as_str()]);
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

    pub(crate) fn rejected(&self, lane: &'static str, reason: Refusal) {
        self.rejected
            .with_label_values(&[lane, reason.as_str()])
            .inc();
    }

    pub(crate) fn cancelled(&self, lane: &'static str, reason: Cancel) {
        self.cancelled
            .with_label_values(&[lane, reason.as_str()])
            .inc();
    }

    pub(crate) fn ran(&self, lane: &'static str, elapsed: Duration) {
        self.seconds
            .with_label_values(&[lane])
            .observe(elapsed.as_secs_f64());
    }
}

/// The query result cache's metrics (see [`crate::result_cache`]).
#[derive(Debug, Clone)]
pub struct ResultCacheMetrics {
    lookups: IntCounterVec,
    bytes: IntGaugeVec,
}

/// Where a cached result was found, if it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// In memory.
    Memory,
    /// On disk (read back into memory).
    Disk,
    /// Not cached: the statement ran.
    Miss,
}

impl ResultCacheMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar::new(registry);
        let lookups = r.counter_vec(
            "keyshift_query_cache_lookups_total",
            "Statements looked up in the query result cache, by where the result was found \
             (memory, disk) or miss (the statement ran).",
            &["outcome"],
        )?;
        for outcome in ["memory", "disk", "miss"] {
            lookups.with_label_values(&[outcome]);
        }
        let bytes = r.int_gauge_vec(
            "keyshift_query_cache_bytes",
            "Bytes of cached query results, by tier (memory, disk).",
            &["tier"],
        )?;
        for tier in ["memory", "disk"] {
            bytes.with_label_values(&[tier]);
        }
        Ok(Self { lookups, bytes })
    }

    /// Metrics bound to a private registry, for tests and tools.
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    pub(crate) fn lookup(&self, outcome: CacheOutcome) {
        let label = match outcome {
            CacheOutcome::Memory => "memory",
            CacheOutcome::Disk => "disk",
            CacheOutcome::Miss => "miss",
        };
        self.lookups.with_label_values(&[label]).inc();
    }

    pub(crate) fn bytes(&self, tier: &'static str, n: usize) {
        self.bytes
            .with_label_values(&[tier])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
