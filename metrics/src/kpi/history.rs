//! The credential history `h` of a report (see [`super::catalog`]): how a
//! statement reads it, and the report's one reading of it.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::prelude::SessionContext;
use keyshift_store::query::{collect, plan};
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
///
/// Two scans rather than one filter with an `OR`: a page index is of one
/// column, and a condition on `event_type OR method` can skip no page. As
/// two, each skips the pages of other kinds of events where a day is
/// stored sorted by `event_type` (compaction does that): reading it took
/// 0.2–0.3 s instead of 0.5–0.9 s over ten million events.
pub(crate) fn history(req: &KpiRequest) -> String {
    let (_, last) = days(req);
    history_until(&rp_filter(req), req.to, last)
}

/// [`history`] of the relying party `rp` (a filter, or all) before `to`,
/// whose day is `last`.
fn history_until(rp: &str, to: DateTime<Utc>, last: NaiveDate) -> String {
    let scan = |kinds: &str| {
        format!(
            "SELECT user_key, occurred_at, event_type, credential_backup_eligible
               FROM auth_events
               WHERE {rp}occurred_at < {to} AND event_date <= CAST({to_day} AS DATE)
                 AND user_key IS NOT NULL AND {kinds}",
            to = ts(to),
            to_day = quote(&last.to_string()),
        )
    };
    format!(
        "{}\n           UNION ALL\n           {}",
        scan("event_type IN ('enrollment.succeeded', 'credential.revoked', 'recovery.completed')"),
        scan("event_type = 'auth.succeeded' AND method = 'recovery_code'"),
    )
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

    /// The history of every relying party before `to` (for `u`'s day
    /// rollups, which are the same for every report).
    pub(super) fn every_rp(to: DateTime<Utc>) -> Self {
        let last = (to - Duration::microseconds(1)).date_naive();
        Self {
            sql: Some(history_until("", to, last)),
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
        // `collect` hands back batches that own their strings, so the
        // table holds what it is charged for. `collect` lets go of its
        // charge when it returns; the table takes it on.
        let rows = collect(ctx, df).await?;
        let held =
            MemoryConsumer::new("KPI credential history").register(&ctx.runtime_env().memory_pool);
        held.try_grow(rows.iter().map(RecordBatch::get_array_memory_size).sum())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        AsArray, BooleanArray, Date32Array, StringArray, StringViewArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::error::DataFusionError;
    use datafusion::execution::memory_pool::GreedyMemoryPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::SessionConfig;

    /// A session whose `auth_events` holds `n` enrolments of distinct users
    /// on 2026-11-02 (a string view column, as Parquet gives), with `pool`
    /// bytes of query memory.
    fn session(n: usize, pool: usize) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("rp_id", DataType::Utf8, false),
            Field::new("user_key", DataType::Utf8View, true),
            Field::new(
                "occurred_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("event_date", DataType::Date32, false),
            Field::new("event_type", DataType::Utf8, false),
            Field::new("method", DataType::Utf8, true),
            Field::new("credential_backup_eligible", DataType::Boolean, true),
        ]));
        let at = 1_793_577_600_000_000_i64; // 2026-11-02T00:00:00Z
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["rp.example"; n])),
                Arc::new(StringViewArray::from_iter_values(
                    (0..n).map(|i| format!("user-key-that-is-long-enough-{i}")),
                )),
                Arc::new(TimestampMicrosecondArray::from(vec![at; n]).with_timezone("UTC")),
                Arc::new(Date32Array::from(vec![20_759; n])),
                Arc::new(StringArray::from(vec!["enrollment.succeeded"; n])),
                Arc::new(StringArray::from(vec![Some("passkey"); n])),
                Arc::new(BooleanArray::from(vec![Some(true); n])),
            ],
        )
        .expect("batch");
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(pool)))
            .build_arc()
            .expect("runtime");
        let config = SessionConfig::new().set_str("datafusion.execution.time_zone", "UTC");
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
        ctx.register_table("auth_events", Arc::new(table))
            .expect("register");
        ctx
    }

    fn req() -> KpiRequest {
        crate::kpi::request::checked(
            "rp_id=rp.example&from=2026-11-02T00:00:00Z&to=2026-11-03T00:00:00Z",
        )
    }

    #[tokio::test]
    async fn the_history_is_read_once_and_charged_while_the_report_runs() {
        let ctx = session(1_000, 64 << 20);
        let mut reading = Reading::new(&req());
        reading.ensure(&ctx).await.expect("read");
        let held = reading.held.as_ref().map_or(0, MemoryReservation::size);
        assert!(held > 0, "the history is charged");
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), held);
        let count = ctx
            .sql(&format!("SELECT count(*) FROM {HISTORY_TABLE}"))
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let n = count[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(n.value(0), 1_000);
        // A second part that reads `h` does not read it again.
        reading.ensure(&ctx).await.expect("again");
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), held);
        drop(reading);
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    }

    #[tokio::test]
    async fn a_history_over_the_budget_is_refused() {
        let ctx = session(1_000, 16 << 10);
        let err = Reading::new(&req())
            .ensure(&ctx)
            .await
            .expect_err("16 KiB cannot hold 1,000 users' history");
        assert!(
            matches!(&err, keyshift_store::StoreError::Query(q)
                if matches!(q.find_root(), DataFusionError::ResourcesExhausted(_))),
            "{err}"
        );
    }
}
