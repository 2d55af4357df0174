//! The steps of a pass on one table, as deltalake operations: a retention
//! delete, per-partition compaction, a checkpoint, a vacuum.

use std::num::NonZeroU64;

use chrono::NaiveDate;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::{Expr, SessionConfig, col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::delete::DeleteMetrics;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::{DeltaTable, FilterOp, FilterValue};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::plan::{self, FileInfo};
use super::{Keep, MaintenanceConfig, PassOptions, Step, TableReport};
use crate::metrics::MaintenanceMetrics;
use crate::{ErrorKind, Result, StoreError};

/// Attempts of a retention delete that lost a race to a late event landing
/// in an old partition; after that, the next pass tries again.
const DELETE_ATTEMPTS: usize = 3;

/// Memory a sorted rewrite of one partition may hold; beyond it the sort
/// spills to the system's temporary directory. deltalake's own session
/// sets no bound: a pass sorting 10 MiB days peaked at 964 MB.
const SORT_MEMORY_BYTES: usize = 256 * 1024 * 1024;

/// One table's share of a pass.
pub(super) struct TableJob<'a> {
    pub name: &'static str,
    pub partition: Option<&'static str>,
    /// The column compaction sorts a small partition by, if any
    /// ([`plan::rewrite`]).
    pub cluster: Option<&'static str>,
    pub keep: Keep,
    pub config: &'a MaintenanceConfig,
    pub opts: &'a PassOptions,
    pub full_vacuum: bool,
    pub metrics: &'a MaintenanceMetrics,
}

impl TableJob<'_> {
    pub(super) async fn run(
        &self,
        mut table: DeltaTable,
        stop: &CancellationToken,
    ) -> Result<TableReport> {
        let name = self.name;
        let first = table.version().unwrap_or(0);
        let files = self.files(&table)?;
        let mut report = TableReport {
            table: name,
            versions: (first, first),
            files: (files.len(), files.len()),
            ..TableReport::default()
        };
        if self.opts.runs(Step::Retention)
            && let (Some(column), Some(keep)) = (self.partition, self.keep.0)
        {
            let first_kept = plan::first_kept_day(self.opts.now, keep);
            let days = plan::expired(&files, first_kept);
            if !days.is_empty() {
                table = self.expire(table, column, first_kept).await?;
                info!(table = name, days = days.len(), before = %first_kept, "partitions past retention deleted");
                report.expired_days = days.iter().map(ToString::to_string).collect();
            }
        }
        if self.opts.runs(Step::Compact) {
            let target = self
                .opts
                .compact_target_mib
                .unwrap_or(self.config.target_file_mib)
                .saturating_mul(1024 * 1024)
                .max(1);
            let files = self.files(&table)?;
            let cluster_max = self.config.cluster_max_mib.saturating_mul(1024 * 1024);
            for partition in plan::to_compact(&files, target, self.config.compact_min_files) {
                if stop.is_cancelled() {
                    report.interrupted = true;
                    break;
                }
                let sort_by = match plan::rewrite(&files, &partition, target, cluster_max) {
                    plan::Rewrite::Cluster => self.cluster,
                    plan::Rewrite::Merge => None,
                };
                let (t, removed, added, sorted) = self
                    .compact_partition(table, partition.as_deref(), target, sort_by)
                    .await?;
                table = t;
                report.partitions_compacted += 1;
                report.partitions_sorted += usize::from(sorted);
                report.files_compacted.0 += removed;
                report.files_compacted.1 += added;
                self.metrics.files_removed(name, Step::Compact, removed);
            }
        }
        let changed = table.version().unwrap_or(0) != first;
        if (changed && self.opts.only.is_none()) || self.opts.only == Some(Step::Checkpoint) {
            crate::checkpoint::write_now(&table, name).await?;
            report.checkpoint = true;
        }
        if self.opts.runs(Step::Vacuum) && !stop.is_cancelled() {
            let (t, deleted) = self.vacuum(table).await?;
            table = t;
            report.vacuumed = (deleted, self.full_vacuum);
            self.metrics
                .files_removed(name, Step::Vacuum, deleted as u64);
        }
        report.versions.1 = table.version().unwrap_or(0);
        report.files.1 = self.files(&table)?.len();
        self.metrics.table_files(name, report.files.1);
        Ok(report)
    }

    fn files(&self, table: &DeltaTable) -> Result<Vec<FileInfo>> {
        let snapshot = table.snapshot().map_err(StoreError::delta(self.name))?;
        Ok(snapshot
            .log_data()
            .iter()
            .map(|f| FileInfo {
                partition: self
                    .partition
                    .and_then(|p| f.partition_values_map().remove(p).flatten()),
                bytes: u64::try_from(f.size()).unwrap_or(0),
            })
            .collect())
    }

    /// Deletes every partition before `first_kept`: a predicate on the
    /// partition column alone removes whole files and rewrites nothing.
    async fn expire(
        &self,
        table: DeltaTable,
        column: &str,
        first_kept: NaiveDate,
    ) -> Result<DeltaTable> {
        let days = first_kept
            .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default())
            .num_days();
        let predicate = col(column).lt(lit(ScalarValue::Date32(Some(
            i32::try_from(days).unwrap_or(i32::MIN),
        ))));
        let (table, m) = delete_retrying(table, predicate, self.name, DELETE_ATTEMPTS).await?;
        self.metrics
            .files_removed(self.name, Step::Retention, m.num_removed_files as u64);
        Ok(table)
    }

    /// [`Self::compact`], sorted by `sort_by` if given; a sort that fails
    /// (its spill cannot be written, say) has committed nothing, and the
    /// small files are merged as they are instead. The last value says
    /// whether the partition was sorted.
    async fn compact_partition(
        &self,
        table: DeltaTable,
        partition: Option<&str>,
        target: u64,
        sort_by: Option<&str>,
    ) -> Result<(DeltaTable, u64, u64, bool)> {
        if sort_by.is_some() {
            match self
                .compact(table.clone(), partition, target, sort_by)
                .await
            {
                Ok((t, removed, added)) => return Ok((t, removed, added, true)),
                Err(e) => warn!(
                    table = self.name,
                    partition,
                    error = %e,
                    "sorted compaction failed; merging instead"
                ),
            }
        }
        let (t, removed, added) = self.compact(table, partition, target, None).await?;
        Ok((t, removed, added, false))
    }

    /// Merges the small files of one partition (all of an unpartitioned
    /// table) into files of about `target` bytes, in one commit; with
    /// `sort_by`, rewrites all of its files sorted by that column instead
    /// (deltalake's Z-order on one column: a sort by its leading bytes).
    async fn compact(
        &self,
        table: DeltaTable,
        partition: Option<&str>,
        target: u64,
        sort_by: Option<&str>,
    ) -> Result<(DeltaTable, u64, u64)> {
        let filters: Vec<(&str, FilterOp, FilterValue<'_>)> = match (self.partition, partition) {
            (Some(column), Some(value)) => vec![(column, FilterOp::Eq, FilterValue::Scalar(value))],
            _ => Vec::new(),
        };
        let kind = match sort_by {
            Some(column) => OptimizeType::ZOrder(vec![column.to_owned()]),
            None => OptimizeType::Compact,
        };
        let mut optimize = table.optimize().with_type(kind).with_filters(&filters);
        if sort_by.is_some() {
            optimize = optimize.with_session_state(sort_session()?);
        }
        let (table, m) = optimize
            .with_target_size(NonZeroU64::new(target).unwrap_or(NonZeroU64::MIN))
            .with_max_concurrent_tasks(1)
            .await
            .map_err(StoreError::delta(self.name))?;
        debug!(
            table = self.name,
            partition,
            sorted_by = sort_by,
            removed = m.num_files_removed,
            added = m.num_files_added,
            "partition compacted"
        );
        Ok((table, m.num_files_removed, m.num_files_added))
    }

    /// Deletes files that left the table more than the grace period ago:
    /// those the log still lists as removed (lite), or every file in the
    /// storage the current version does not reference (full; also the
    /// leftovers of a crash).
    async fn vacuum(&self, table: DeltaTable) -> Result<(DeltaTable, usize)> {
        let grace = self.opts.vacuum_grace.unwrap_or(self.config.vacuum_grace);
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let mode = if self.full_vacuum {
            VacuumMode::Full
        } else {
            VacuumMode::Lite
        };
        let (table, m) = table
            .vacuum()
            .with_retention_period(grace)
            // The grace is ours (validated at start-up), not the table's
            // `deletedFileRetentionDuration`.
            .with_enforce_retention_duration(false)
            .with_mode(mode)
            .with_commit_properties(quiet_commit())
            .await
            .map_err(StoreError::delta(self.name))?;
        Ok((table, m.files_deleted.len()))
    }
}

/// The session a sorted rewrite runs in: [`SORT_MEMORY_BYTES`] of memory,
/// then spilling to disk.
fn sort_session() -> Result<std::sync::Arc<SessionState>> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(SORT_MEMORY_BYTES, 1.0)
        .build_arc()?;
    // One sorter (the pass runs on one low-priority thread anyway), and
    // room kept back for merging its spilled runs.
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_sort_spill_reservation_bytes(SORT_MEMORY_BYTES / 4);
    Ok(std::sync::Arc::new(
        SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(runtime)
            .build(),
    ))
}

/// Runs a DELETE, planning it again on the new version when it lost a race
/// (an append that might hold matching rows landed first), up to `attempts`
/// times in all. The commit writes no checkpoint (the pass does).
pub(super) async fn delete_retrying(
    mut table: DeltaTable,
    predicate: Expr,
    name: &'static str,
    attempts: usize,
) -> Result<(DeltaTable, DeleteMetrics)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = table
            .clone()
            .delete()
            .with_predicate(predicate.clone())
            .with_commit_properties(quiet_commit())
            .await
            .map_err(StoreError::delta(name));
        match outcome {
            Ok(done) => return Ok(done),
            Err(e) if e.kind() == ErrorKind::Conflict && attempt < attempts => {
                debug!(table = name, attempt, error = %e, "delete lost a race; again");
                table
                    .update_state()
                    .await
                    .map_err(StoreError::delta(name))?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A commit that writes no checkpoint and expires no log entries by itself:
/// the pass does both once at its end.
fn quiet_commit() -> CommitProperties {
    CommitProperties::default()
        .with_create_checkpoint(false)
        .with_cleanup_expired_logs(Some(false))
}
