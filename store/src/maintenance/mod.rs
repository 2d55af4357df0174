//! Table upkeep: retention, compaction, checkpoints and vacuum, one pass at
//! a time under the table root's lock ([`lock`]).
//!
//! A pass goes table by table: partitions past their retention are deleted
//! (metadata only: whole files), partitions with many small files are
//! compacted (deltalake's optimize, one commit per partition), a checkpoint
//! of the result is written, and files no longer part of the table for
//! longer than the grace period are deleted from storage.
//!
//! Why this is safe next to ingest and under SIGKILL:
//! - Every step writes its files first and then makes them part of the
//!   table in one atomic commit. Killed before the commit, the files are
//!   unreferenced (no reader sees them; the full vacuum deletes them after
//!   the grace period); killed after it, the step is done and the next pass
//!   finds nothing left to do (compaction skips big files, retention finds
//!   no old partition).
//! - Compaction commits carry no stream positions (`txn`) and remove files
//!   without `dataChange`: the writer's next append rebases over them. A
//!   retention delete removes files with `dataChange`, which the writer
//!   rebases over once (see `writer::append`). Stored Kafka offsets are the
//!   latest `txn` per app id, kept by every checkpoint.
//! - Two compactions of the same files would both commit and double the
//!   rows: the lock allows one pass per table root at a time.

pub mod background;
mod config;
pub mod erase;
pub mod lock;
pub mod plan;
mod steps;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{Keep, MaintenanceConfig, RetentionConfig, Switch};
pub use lock::MaintenanceLock;

use crate::schema::{EVENT_DATE, RECEIVED_DATE};
use crate::{AUTH_EVENTS, REJECTED_EVENTS, ROLLOUT_DECISIONS, Result, StoreError};

/// One kind of upkeep, for runs that do only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Delete partitions past their table's retention.
    Retention,
    /// Merge small files.
    Compact,
    /// Write a checkpoint of the current version.
    Checkpoint,
    /// Delete files that left the table more than the grace period ago.
    Vacuum,
}

/// How one pass runs.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Only this step (and nothing else); `None`: all of them.
    pub only: Option<Step>,
    /// The time retention is measured from.
    pub now: DateTime<Utc>,
    /// List the whole storage in the vacuum (also removes files a crash
    /// left behind); `None`: when due (`vacuum_full_every`).
    pub full_vacuum: Option<bool>,
    /// Override of `vacuum_grace`, for one-off runs.
    pub vacuum_grace: Option<Duration>,
    /// How long to wait for another maintainer's pass to end.
    pub lock_wait: Duration,
    /// Override of `target_file_mib` for this pass's compaction.
    pub compact_target_mib: Option<u64>,
}

impl PassOptions {
    /// Every step, now, full vacuum when due, not waiting for the lock.
    pub fn scheduled() -> Self {
        Self {
            only: None,
            now: Utc::now(),
            full_vacuum: None,
            vacuum_grace: None,
            lock_wait: Duration::ZERO,
            compact_target_mib: None,
        }
    }

    /// The pass the background task starts when the writer has added
    /// `compact_after_files` files: compaction alone, of the files under
    /// [`plan::quick_target_mib`], not waiting for the lock.
    pub fn quick_compaction(config: &MaintenanceConfig) -> Self {
        Self {
            only: Some(Step::Compact),
            compact_target_mib: Some(plan::quick_target_mib(config.target_file_mib)),
            ..Self::scheduled()
        }
    }

    fn runs(&self, step: Step) -> bool {
        self.only.is_none_or(|s| s == step)
    }
}

/// What a pass did to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    /// The table.
    pub table: &'static str,
    /// Its version before and after the pass.
    pub versions: (u64, u64),
    /// Data files of the current version, before and after the pass.
    pub files: (usize, usize),
    /// Day partitions deleted for retention.
    pub expired_days: Vec<String>,
    /// Partitions compacted.
    pub partitions_compacted: usize,
    /// Of those, the ones rewritten sorted (`maintenance.cluster_max_mib`).
    pub partitions_sorted: usize,
    /// Small files merged by compaction, and the files written instead.
    pub files_compacted: (u64, u64),
    /// Whether a checkpoint was written.
    pub checkpoint: bool,
    /// Files deleted from storage by the vacuum, and whether it listed the
    /// whole storage.
    pub vacuumed: (usize, bool),
    /// The step was cut short by shutdown.
    pub interrupted: bool,
}

/// Runs maintenance passes over the tables under one root.
#[derive(Debug)]
pub struct Maintainer {
    root: String,
    options: HashMap<String, String>,
    config: MaintenanceConfig,
    last_full: Mutex<Option<Instant>>,
    metrics: crate::metrics::MaintenanceMetrics,
}

impl Maintainer {
    /// A maintainer of the tables under `root` (a directory or a URL).
    pub fn new(
        root: &str,
        options: &HashMap<String, String>,
        config: MaintenanceConfig,
        metrics: crate::metrics::MaintenanceMetrics,
    ) -> Self {
        Self {
            root: root.to_owned(),
            options: options.clone(),
            config,
            last_full: Mutex::new(None),
            metrics,
        }
    }

    /// The settings this maintainer runs with.
    pub fn config(&self) -> &MaintenanceConfig {
        &self.config
    }

    fn lock_dir(&self) -> Option<PathBuf> {
        lock::lock_dir(&self.root)
    }

    /// One pass over every table. Stops between steps once `stop` is
    /// cancelled (an interrupted pass is like a killed one: safe, and the
    /// next pass goes on from the tables' state).
    pub async fn pass(
        &self,
        opts: &PassOptions,
        stop: &CancellationToken,
    ) -> Result<Vec<TableReport>> {
        let started = Instant::now();
        let _lock = match self.lock_dir() {
            Some(dir) => Some(MaintenanceLock::acquire(&dir, opts.lock_wait).await?),
            None => None,
        };
        let full = opts.full_vacuum.unwrap_or_else(|| {
            let last = *self
                .last_full
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            plan::full_vacuum_due(last, started, self.config.vacuum_full_every)
        });
        let r = &self.config.retention;
        // `auth_events` is sorted by `event_type` where compaction allows
        // (`plan::rewrite`): most KPI statements read a few kinds of events.
        let tables = [
            (
                AUTH_EVENTS,
                Some(EVENT_DATE),
                Some("event_type"),
                r.auth_events,
            ),
            (
                REJECTED_EVENTS,
                Some(RECEIVED_DATE),
                None,
                r.rejected_events,
            ),
            (ROLLOUT_DECISIONS, None, None, r.rollout_decisions),
        ];
        let mut reports = Vec::new();
        for (name, partition, cluster, keep) in tables {
            if stop.is_cancelled() {
                break;
            }
            let table = match crate::tables::open_existing(&self.root, name, &self.options).await {
                Ok(t) => t,
                Err(StoreError::Location { .. }) if name == ROLLOUT_DECISIONS => continue,
                Err(e) => return Err(e),
            };
            let job = steps::TableJob {
                name,
                partition,
                cluster,
                keep,
                config: &self.config,
                opts,
                full_vacuum: full,
                metrics: &self.metrics,
            };
            let report = job.run(table, stop).await.inspect_err(|e| {
                self.metrics.pass_failed(name, e);
            })?;
            info!(
                table = name,
                files_before = report.files.0,
                files_after = report.files.1,
                expired_days = report.expired_days.len(),
                compacted = report.partitions_compacted,
                sorted = report.partitions_sorted,
                vacuumed = report.vacuumed.0,
                full_vacuum = report.vacuumed.1,
                "table maintained"
            );
            reports.push(report);
        }
        if full && opts.runs(Step::Vacuum) && !stop.is_cancelled() {
            *self
                .last_full
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(started);
        }
        self.metrics
            .pass_done(started.elapsed(), stop.is_cancelled());
        Ok(reports)
    }
}

#[cfg(test)]
mod tests;
