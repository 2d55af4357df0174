//! Table upkeep's metrics (see [`crate::maintenance`]).

use std::time::Duration;

use prometheus::{Gauge, Histogram, IntCounterVec, IntGaugeVec, Registry};
use tracing::error;

use super::Registrar;
use crate::StoreError;

/// What started a background maintenance pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// `maintenance.interval` passed: a full pass.
    Interval,
    /// The writer added `maintenance.compact_after_files` files: a quick
    /// compaction.
    Files,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Interval => "interval",
            Trigger::Files => "files",
        }
    }
}

/// Table upkeep's metrics (see [`crate::maintenance`]).
#[derive(Debug, Clone)]
pub struct MaintenanceMetrics {
    passes: IntCounterVec,
    started: IntCounterVec,
    seconds: Histogram,
    last_success: Gauge,
    table_files: IntGaugeVec,
    files_removed: IntCounterVec,
}

impl MaintenanceMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar::new(registry);
        let passes = r.counter_vec(
            "keyshift_maintenance_passes_total",
            "Maintenance passes, by outcome (ok, interrupted, locked: another maintainer was \
             running, error).",
            &["outcome"],
        )?;
        for outcome in ["ok", "interrupted", "locked", "error"] {
            passes.with_label_values(&[outcome]);
        }
        let started = r.counter_vec(
            "keyshift_maintenance_passes_started_total",
            "Passes the background task started, by trigger (interval: the clock; files: the \
             writer added maintenance.compact_after_files files since the last pass).",
            &["trigger"],
        )?;
        for trigger in [Trigger::Interval, Trigger::Files] {
            started.with_label_values(&[trigger.label()]);
        }
        let files_removed = r.counter_vec(
            "keyshift_maintenance_files_removed_total",
            "Data files taken out of a table by a maintenance step (retention, compact), or \
             deleted from storage (vacuum).",
            &["table", "step"],
        )?;
        Ok(Self {
            passes,
            started,
            seconds: r.histogram(
                "keyshift_maintenance_pass_seconds",
                "Duration of maintenance passes.",
                &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0],
            )?,
            last_success: r.gauge(
                "keyshift_maintenance_last_success_timestamp_seconds",
                "Unix time at which the last complete maintenance pass ended (0: none yet).",
            )?,
            table_files: r.int_gauge_vec(
                "keyshift_store_table_files",
                "Data files in the current version of each table, as of the last maintenance \
                 pass.",
                &["table"],
            )?,
            files_removed,
        })
    }

    /// Metrics bound to a private registry, for tests and tools.
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    pub(crate) fn pass_done(&self, elapsed: Duration, interrupted: bool) {
        self.seconds.observe(elapsed.as_secs_f64());
        if interrupted {
            self.passes.with_label_values(&["interrupted"]).inc();
            return;
        }
        self.passes.with_label_values(&["ok"]).inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_success.set(now.as_secs_f64());
    }

    /// Counts a pass the background task starts.
    pub(crate) fn pass_started(&self, trigger: Trigger) {
        self.started.with_label_values(&[trigger.label()]).inc();
    }

    /// Counts a pass that did not run because another maintainer holds the lock.
    pub fn pass_locked(&self) {
        self.passes.with_label_values(&["locked"]).inc();
    }

    pub(crate) fn pass_failed(&self, table: &'static str, e: &StoreError) {
        error!(table, kind = %e.kind(), error = %e, "maintenance pass failed");
        self.passes.with_label_values(&["error"]).inc();
    }

    pub(crate) fn table_files(&self, table: &'static str, n: usize) {
        self.table_files
            .with_label_values(&[table])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn files_removed(
        &self,
        table: &'static str,
        step: crate::maintenance::Step,
        n: u64,
    ) {
        let step = match step {
            crate::maintenance::Step::Retention => "retention",
            crate::maintenance::Step::Compact => "compact",
            crate::maintenance::Step::Checkpoint => "checkpoint",
            crate::maintenance::Step::Vacuum => "vacuum",
        };
        if n > 0 {
            self.files_removed
                .with_label_values(&[table, step])
                .inc_by(n);
        }
    }
}
