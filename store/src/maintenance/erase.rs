//! Erasure of one user's rows: every `auth_events` row of the user's keyed
//! hash, every refused input whose redacted copy names it, and an entry in
//! the `erasures` log that names neither.
//!
//! The deletes rewrite the files that held the user (copy on write); the
//! old files leave storage with the vacuum after the grace period. It runs
//! under the maintenance lock: a compaction racing the delete could
//! otherwise commit a merged copy of the very rows being deleted (its
//! removes do not conflict with a delete's).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::{Expr, col, lit};
use deltalake::DeltaTable;
use deltalake::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::protocol::SaveMode;
use serde::Serialize;
use tracing::info;

use super::lock::MaintenanceLock;
use crate::{AUTH_EVENTS, REJECTED_EVENTS, Result, StoreError};

/// The erasure log's table name.
pub const ERASURES: &str = "erasures";

/// Attempts of a delete that lost a race to an append that might hold the
/// user's rows (the delete is then planned again on the new version).
const ATTEMPTS: usize = 5;

/// Whom to erase, by keyed hashes only (see the ingest crate's
/// pseudonymizer): the raw identifier never reaches the store.
#[derive(Debug, Clone)]
pub struct ErasureTarget {
    /// The relying party.
    pub rp_id: String,
    /// The user's `user_key` under that relying party.
    pub user_key: String,
    /// Strings that mark the user in the redacted copy of a refused input
    /// (`hmac:<key>`, with the key under the input's `rp_id` or, for
    /// inputs without one, under the empty one).
    pub reject_markers: Vec<String>,
}

/// What an erasure did; also the row of the `erasures` log.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureReport {
    /// Id of this erasure.
    pub erasure_id: String,
    /// When the rows left the tables (queries no longer see them).
    pub erased_at: DateTime<Utc>,
    /// The relying party.
    pub rp_id: String,
    /// Rows deleted from `auth_events`.
    pub rows_auth_events: u64,
    /// Rows deleted from `rejected_events`.
    pub rows_rejected_events: u64,
    /// By when the vacuum has deleted the files that held them: the grace
    /// period plus the time between full vacuums.
    pub files_gone_by: DateTime<Utc>,
}

/// Deletes the target's rows from both tables and logs the erasure.
/// `lock_dir`: the table root's directory (`None` on object storage).
pub async fn erase(
    root: &str,
    options: &HashMap<String, String>,
    lock_dir: Option<&std::path::Path>,
    target: &ErasureTarget,
    gone_within: Duration,
    lock_wait: Duration,
) -> Result<ErasureReport> {
    let _lock = match lock_dir {
        Some(dir) => Some(MaintenanceLock::acquire(dir, lock_wait).await?),
        None => None,
    };
    crate::commit_safety::check(root, options).await?;
    let events = crate::tables::open_existing(root, AUTH_EVENTS, options).await?;
    let by_user = col("rp_id")
        .eq(lit(target.rp_id.as_str()))
        .and(col("user_key").eq(lit(target.user_key.as_str())));
    let rows_auth_events = delete(events, by_user, AUTH_EVENTS).await?;
    let rejected = crate::tables::open_existing(root, REJECTED_EVENTS, options).await?;
    let mut rows_rejected_events = 0;
    if let Some(marked) = target
        .reject_markers
        .iter()
        .map(|m| col("raw").like(lit(format!("%{m}%"))))
        .reduce(Expr::or)
    {
        rows_rejected_events = delete(rejected, marked, REJECTED_EVENTS).await?;
    }
    let erased_at = Utc::now();
    let report = ErasureReport {
        erasure_id: uuid::Uuid::new_v4().to_string(),
        erased_at,
        rp_id: target.rp_id.clone(),
        rows_auth_events,
        rows_rejected_events,
        files_gone_by: erased_at
            + chrono::Duration::from_std(gone_within).unwrap_or(chrono::Duration::MAX),
    };
    record(root, options, &report).await?;
    info!(
        erasure_id = %report.erasure_id,
        rp_id = %report.rp_id,
        rows_auth_events,
        rows_rejected_events,
        "user erased"
    );
    Ok(report)
}

async fn delete(table: DeltaTable, predicate: Expr, name: &'static str) -> Result<u64> {
    let (_, m) = super::steps::delete_retrying(table, predicate, name, ATTEMPTS).await?;
    Ok(m.num_deleted_rows.unwrap_or(0) as u64)
}

/// The `erasures` table's columns: no identifier of the user.
pub fn erasures_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("erasure_id", DataType::Utf8, false),
        Field::new("erased_at", ts.clone(), false),
        Field::new("rp_id", DataType::Utf8, false),
        Field::new("rows_auth_events", DataType::Int64, false),
        Field::new("rows_rejected_events", DataType::Int64, false),
        Field::new("files_gone_by", ts, false),
    ]))
}

async fn record(root: &str, options: &HashMap<String, String>, r: &ErasureReport) -> Result<()> {
    let table =
        crate::tables::open_or_create_one(root, ERASURES, erasures_schema(), None, None, options)
            .await?;
    let micros = |t: DateTime<Utc>| {
        TimestampMicrosecondArray::from(vec![t.timestamp_micros()]).with_timezone("UTC")
    };
    let count = |n: u64| Int64Array::from(vec![i64::try_from(n).unwrap_or(i64::MAX)]);
    let batch = RecordBatch::try_new(
        erasures_schema(),
        vec![
            Arc::new(StringArray::from(vec![r.erasure_id.as_str()])),
            Arc::new(micros(r.erased_at)),
            Arc::new(StringArray::from(vec![r.rp_id.as_str()])),
            Arc::new(count(r.rows_auth_events)),
            Arc::new(count(r.rows_rejected_events)),
            Arc::new(micros(r.files_gone_by)),
        ],
    )
    .map_err(StoreError::arrow(ERASURES))?;
    table
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        .await
        .map_err(StoreError::delta(ERASURES))?;
    Ok(())
}
