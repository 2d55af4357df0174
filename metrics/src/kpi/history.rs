//! The credential history `h` of a report (see [`super::catalog`]): how a
//! statement reads it, and the report's one reading of it.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::error::DataFusionError;

use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use keyshift_store::query::plan;
use tracing::debug;

use super::engine::{days, quote, rp_filter, ts};
use super::request::KpiRequest;

/// Where a statement's `h` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Its own scan of `auth_events` (the statement stands alone: DuckDB,
    /// `--emit-sql`).
    Scan,
    /// [`HISTORY_TABLE`], read once per report by
    /// [`super::engine::run_all`] up to the report's end and cut at the
    /// statement's. `u` reads the history once per week of the range and
    /// once more for its totals; as its own scan, each read every earlier
    /// day (179 MB of columns for the last week of a month of ten million
    /// events, most of that statement's time).
    Table,
}

/// The table of a report's credential history ([`history`] up to the
/// report's end) in KPI sessions.
pub const HISTORY_TABLE: &str = "h_all";

/// The credential history `h` up to `req`'s end (see [`super::catalog`]).
pub(crate) fn history(req: &KpiRequest) -> String {
    let (_, last) = days(req);
    format!(
        "SELECT user_key, occurred_at, event_type, credential_backup_eligible
           FROM auth_events
           WHERE {rp}occurred_at < {to} AND event_date <= CAST({to_day} AS DATE)
             AND user_key IS NOT NULL
             AND (event_type IN ('enrollment.succeeded', 'credential.revoked', 'recovery.completed')
                  OR (event_type = 'auth.succeeded' AND method = 'recovery_code'))",
        rp = rp_filter(req),
        to = ts(req.to),
        to_day = quote(&last.to_string()),
    )
}

/// `batch` with its strings in buffers of their own: a string view points
/// into the buffers of the pages it was read from, and the history's few
/// rows of a day would keep that day's pages in memory for the whole report.
fn owned(batch: RecordBatch) -> keyshift_store::Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| match c.as_string_view_opt() {
            Some(views) => Arc::new(views.gc()) as ArrayRef,
            None => c.clone(),
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns).map_err(DataFusionError::from)?)
}

/// The report's credential history ([`HISTORY_TABLE`]): read once, when
/// a part that reads it runs first, and charged to the lane's memory pool
/// for as long as the report runs (it is not unbounded: a large relying
/// party's whole history is refused like any query over its budget).
pub(super) struct Reading {
    sql: Option<String>,
    held: Option<MemoryReservation>,
}

impl Reading {
    pub(super) fn new(req: &KpiRequest) -> Self {
        Self {
            sql: Some(history(req)),
            held: None,
        }
    }

    pub(super) async fn ensure(&mut self, ctx: &SessionContext) -> keyshift_store::Result<()> {
        let Some(sql) = self.sql.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let df = plan(ctx, &sql).await?;
        let schema = df.schema().as_arrow().clone();
        let held =
            MemoryConsumer::new("KPI credential history").register(&ctx.runtime_env().memory_pool);
        // Each batch is made to own its strings before it is kept, so
        // that neither the pool nor the process holds the pages.
        let mut stream = df.execute_stream().await?;
        let mut rows = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = owned(batch?)?;
            held.try_grow(batch.get_array_memory_size())?;
            rows.push(batch);
        }
        debug!(
            run_ms = started.elapsed().as_millis(),
            rows = rows.iter().map(RecordBatch::num_rows).sum::<usize>(),
            bytes = held.size(),
            "KPI history read"
        );
        self.held = Some(held);
        let table = super::stages::table(Some(&schema), rows)?;
        ctx.register_table(HISTORY_TABLE, Arc::new(table))?;
        Ok(())
    }
}
