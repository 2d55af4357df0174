//! Read-only SQL over the store through DataFusion.
//!
//! Every query plans against the latest committed snapshot of the tables,
//! refuses anything but a single query statement (DataFusion's own DDL / DML /
//! statement guards), and runs on the query runtime ([`crate::executor`])
//! under row, time and memory limits ([`crate::session`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::LogicalPlan;
use futures::StreamExt;
use tokio::sync::watch;

use crate::executor::{Lane, QueryExecutor};
use crate::result_cache::ResultCache;
use crate::session::{self, Budget};
use crate::writer::Published;
use crate::{
    AUTH_EVENTS, REJECTED_EVENTS, ROLLOUT_DECISIONS, Result, StoreConfig, StoreError, Tables,
};

/// The memory pool's share of a lane's budget, in fifths (2/5).
const ACCOUNTED_FIFTHS: usize = 2;

/// Limits applied to queries.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Rows in one SQL API result.
    pub max_rows: usize,
    /// Time limit for one query, in either lane; past it the query is
    /// cancelled.
    pub timeout: Duration,
    /// Memory of the ad-hoc lane.
    pub memory_bytes: usize,
    /// Memory of the control lane.
    pub control_memory_bytes: usize,
}

impl From<&StoreConfig> for QueryLimits {
    fn from(c: &StoreConfig) -> Self {
        Self {
            max_rows: c.query_max_rows,
            timeout: c.query_timeout,
            memory_bytes: c.query_memory_mib.saturating_mul(1024 * 1024),
            control_memory_bytes: c.control_query_memory_mib.saturating_mul(1024 * 1024),
        }
    }
}

/// A query's rows, and whether the row limit cut them.
#[derive(Debug)]
pub struct QueryOutput {
    /// The result's columns (also when there are no rows).
    pub schema: SchemaRef,
    /// The rows, at most the row limit.
    pub batches: Vec<RecordBatch>,
    /// Whether the query had more rows than the limit kept.
    pub truncated: bool,
}

#[derive(Debug, Clone)]
enum Snapshot {
    Live(watch::Receiver<Arc<Published>>),
    Fixed(Tables),
}

/// One lane's DataFusion runtime (its memory pool) and budget.
#[derive(Debug, Clone)]
struct LaneEnv {
    runtime: Arc<RuntimeEnv>,
    budget: Budget,
}

/// Plans and runs SQL over the tables, on the query runtime.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    snapshot: Snapshot,
    limits: QueryLimits,
    executor: QueryExecutor,
    adhoc: LaneEnv,
    control: LaneEnv,
    cache: Option<ResultCache>,
}

impl QueryEngine {
    /// Queries follow the writer's commits.
    pub fn live(
        published: watch::Receiver<Arc<Published>>,
        limits: QueryLimits,
        executor: QueryExecutor,
    ) -> Result<Self> {
        Self::new(Snapshot::Live(published), limits, executor)
    }

    /// Queries a fixed state of the tables (the `keyshift sql` command).
    pub fn fixed(tables: Tables, limits: QueryLimits, executor: QueryExecutor) -> Result<Self> {
        Self::new(Snapshot::Fixed(tables), limits, executor)
    }

    fn new(snapshot: Snapshot, limits: QueryLimits, executor: QueryExecutor) -> Result<Self> {
        let lane = |bytes: usize, setting| -> Result<LaneEnv> {
            let budget = Budget { bytes, setting };
            // DataFusion's pool sees about half of what its operators hold
            // (hash tables while they grow, repartition buffers, allocator
            // slack), and less when the query threads are starved of CPU
            // (measured in docs/benchmarks.md), so it gets 2/5 of the
            // budget; the process then stays near the configured figure.
            let pool = Budget {
                bytes: bytes / 5 * ACCOUNTED_FIFTHS,
                setting,
            };
            Ok(LaneEnv {
                runtime: session::runtime_env(pool)?,
                budget,
            })
        };
        Ok(Self {
            snapshot,
            limits,
            executor,
            adhoc: lane(limits.memory_bytes, "store.query_memory_mib")?,
            control: lane(
                limits.control_memory_bytes,
                "store.control_query_memory_mib",
            )?,
            cache: None,
        })
    }

    /// The same engine, keeping the results of the statements that ask for
    /// it in `cache` (KPI reports do).
    #[must_use]
    pub fn with_result_cache(mut self, cache: Option<ResultCache>) -> Self {
        self.cache = cache;
        self
    }

    /// The result cache, if there is one.
    pub fn result_cache(&self) -> Option<&ResultCache> {
        self.cache.as_ref()
    }

    /// The limits this engine applies.
    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// The query runtime the engine runs its queries on.
    pub fn executor(&self) -> &QueryExecutor {
        &self.executor
    }

    /// The tables as the next query will see them.
    pub fn tables(&self) -> Tables {
        match &self.snapshot {
            Snapshot::Live(rx) => rx.borrow().tables.clone(),
            Snapshot::Fixed(t) => t.clone(),
        }
    }

    fn lane_env(&self, lane: Lane) -> &LaneEnv {
        match lane {
            Lane::Adhoc => &self.adhoc,
            Lane::Control => &self.control,
        }
    }

    /// Runs `work` with a session over the latest tables, on the query
    /// runtime, in `lane`'s slots and memory, under the time limit. The
    /// session's tables are registered inside the task, so loading their
    /// snapshots is query work too.
    pub async fn run<T, F, Fut>(&self, lane: Lane, work: F) -> Result<T>
    where
        F: FnOnce(SessionContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.run_with_tables(lane, |ctx, _| work(ctx)).await
    }

    /// [`Self::run`], `work` also given the snapshot the session reads (to
    /// key cached results by what the statements read).
    pub async fn run_with_tables<T, F, Fut>(&self, lane: Lane, work: F) -> Result<T>
    where
        F: FnOnce(SessionContext, Tables) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let tables = self.tables();
        let env = self.lane_env(lane).clone();
        let budget = env.budget;
        let task = async move {
            let ctx = context(&tables, &env).await?;
            work(ctx, tables).await
        };
        self.executor
            .run(lane, self.limits.timeout, async move {
                task.await.map_err(|e| over_budget(e, budget))
            })
            .await
    }

    /// Runs one read-only statement (a query or EXPLAIN) in the ad-hoc lane,
    /// at most `max_rows` rows.
    pub async fn sql(&self, sql: &str) -> Result<QueryOutput> {
        self.statement(Lane::Adhoc, sql, Some(self.limits.max_rows))
            .await
    }

    /// Runs one read-only statement in the control lane with no row limit,
    /// for keyshift's own bounded queries (evaluations, loads).
    pub async fn internal(&self, sql: &str) -> Result<QueryOutput> {
        self.statement(Lane::Control, sql, None).await
    }

    async fn statement(
        &self,
        lane: Lane,
        sql: &str,
        max_rows: Option<usize>,
    ) -> Result<QueryOutput> {
        let sql = sql.to_owned();
        let (schema, batches) = self
            .run(lane, move |ctx| async move {
                let df = plan(&ctx, &sql).await?;
                let is_explain = matches!(
                    df.logical_plan(),
                    LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)
                );
                let df = match max_rows {
                    // EXPLAIN must stay the root of its plan; its output is small.
                    Some(n) if !is_explain => df.limit(0, Some(n.saturating_add(1)))?,
                    _ => df,
                };
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let batches = collect(&ctx, df).await?;
                Ok((schema, batches))
            })
            .await?;
        let (batches, truncated) = match max_rows {
            Some(max) => cut(batches, max),
            None => (batches, false),
        };
        Ok(QueryOutput {
            schema,
            batches,
            truncated,
        })
    }
}

/// A session with the tables registered at their latest snapshot.
async fn context(tables: &Tables, env: &LaneEnv) -> Result<SessionContext> {
    let ctx = session::context(env.runtime.clone(), env.budget)?;
    let mut all = vec![
        (AUTH_EVENTS, &tables.events),
        (REJECTED_EVENTS, &tables.rejected),
    ];
    if let Some(d) = &tables.decisions {
        all.push((ROLLOUT_DECISIONS, d));
    }
    for (name, table) in all {
        table
            .update_datafusion_session(&ctx.state())
            .map_err(StoreError::delta(name))?;
        let provider = table.table_provider().await?;
        ctx.register_table(name, provider)?;
    }
    Ok(ctx)
}

/// Plans one statement, refusing anything but a query.
pub async fn plan(ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    ctx.sql_with_options(sql, options)
        .await
        .map_err(|e| match e {
            DataFusionError::Plan(msg)
                if msg.contains("not supported") || msg.contains("only supports") =>
            {
                StoreError::NotReadOnly(msg)
            }
            other => StoreError::Query(other),
        })
}

/// Runs `df` and keeps its batches, counting them against the lane's memory
/// pool: a result is memory too.
pub async fn collect(ctx: &SessionContext, df: DataFrame) -> Result<Vec<RecordBatch>> {
    let pool = ctx.runtime_env().memory_pool.clone();
    let held = MemoryConsumer::new("query result").register(&pool);
    let mut stream = df.execute_stream().await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = compact(batch?)?;
        held.try_grow(batch.get_array_memory_size())?;
        batches.push(batch);
    }
    Ok(batches)
}

/// A batch that owns just its rows. Operators (aggregations above all) emit
/// slices of large buffers, and a string read from Parquet is a view into
/// the page it came from; kept as they are, a few rows would hold — and be
/// charged for — the whole buffer or page. Every batch gets its strings
/// copied out (a batch of any size can point into a page); only a large
/// one is worth copying whole to drop the rest of its slices' buffers.
fn compact(batch: RecordBatch) -> Result<RecordBatch> {
    const SMALL: usize = 1 << 20;
    let size = batch.get_array_memory_size();
    let copy = if size > SMALL {
        concat_batches(&batch.schema(), [&batch]).map_err(DataFusionError::from)?
    } else {
        batch.clone()
    };
    let copy = own_strings(copy)?;
    Ok(if copy.get_array_memory_size() < size {
        copy
    } else {
        batch
    })
}

/// `batch` with every string (and binary) view column's values copied
/// into buffers of its own: a copy keeps a view's buffers as they are, and
/// they are the pages the values were read from.
fn own_strings(batch: RecordBatch) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if let Some(views) = c.as_string_view_opt() {
                Arc::new(views.gc()) as ArrayRef
            } else if let Some(views) = c.as_binary_view_opt() {
                Arc::new(views.gc()) as ArrayRef
            } else {
                c.clone()
            }
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns).map_err(DataFusionError::from)?)
}

/// A memory-pool refusal, said with the limit that caused it.
fn over_budget(e: StoreError, budget: Budget) -> StoreError {
    match e {
        StoreError::Query(q) => match q.find_root() {
            DataFusionError::ResourcesExhausted(detail) => StoreError::QueryMemory {
                limit_mib: budget.mib(),
                setting: budget.setting,
                detail: detail.clone(),
            },
            _ => StoreError::Query(q),
        },
        other => other,
    }
}

/// The first `max` rows of `batches`, and whether there were more.
fn cut(batches: Vec<RecordBatch>, max: usize) -> (Vec<RecordBatch>, bool) {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if total <= max {
        return (batches, false);
    }
    let mut keep = max;
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        if keep == 0 {
            break;
        }
        let n = b.num_rows().min(keep);
        out.push(b.slice(0, n));
        keep -= n;
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanArray, StringViewArray};
    use datafusion::arrow::compute::filter_record_batch;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn a_few_rows_kept_do_not_hold_the_pages_they_were_read_from() {
        // 100-byte strings, 10 rows kept: what a selective filter over a
        // Parquet page gives. Over and under the size at which the whole
        // batch is copied.
        for n in [50_000, 5_000] {
            let strings = StringViewArray::from_iter_values((0..n).map(|i| format!("{i:0>100}")));
            let schema = Arc::new(Schema::new(vec![Field::new(
                "s",
                DataType::Utf8View,
                false,
            )]));
            let read = RecordBatch::try_new(schema, vec![Arc::new(strings)]).expect("batch");
            let keep = BooleanArray::from_iter((0..n).map(|i| Some(i % (n / 10) == 0)));
            let kept = filter_record_batch(&read, &keep).expect("filter");
            assert!(
                kept.get_array_memory_size() > n * 100,
                "the filter shares the pages"
            );
            let owned = compact(kept.clone()).expect("compact");
            assert!(
                owned.get_array_memory_size() < 10_000,
                "{n} rows read: {}",
                owned.get_array_memory_size()
            );
            assert_eq!(owned, kept);
        }
    }
}
