//! Read-only SQL over the store through DataFusion.
//!
//! Every query plans against the latest committed snapshot of both tables,
//! refuses anything but a single query statement (DataFusion's own DDL / DML /
//! statement guards), and runs under row, time and memory limits.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use tokio::sync::watch;

use crate::writer::Published;
use crate::{
    AUTH_EVENTS, REJECTED_EVENTS, ROLLOUT_DECISIONS, Result, StoreConfig, StoreError, Tables,
};

/// Limits applied to user queries.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub max_rows: usize,
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl From<&StoreConfig> for QueryLimits {
    fn from(c: &StoreConfig) -> Self {
        Self {
            max_rows: c.query_max_rows,
            timeout: c.query_timeout,
            memory_bytes: c.query_memory_mib.saturating_mul(1024 * 1024),
        }
    }
}

/// A query's rows, and whether the row limit cut them.
#[derive(Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
}

#[derive(Debug, Clone)]
enum Snapshot {
    Live(watch::Receiver<Arc<Published>>),
    Fixed(Tables),
}

/// Plans and runs SQL over `auth_events` and `rejected_events`.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    snapshot: Snapshot,
    limits: QueryLimits,
    runtime: Arc<RuntimeEnv>,
}

impl QueryEngine {
    /// Queries follow the writer's commits.
    pub fn live(published: watch::Receiver<Arc<Published>>, limits: QueryLimits) -> Result<Self> {
        Self::new(Snapshot::Live(published), limits)
    }

    /// Queries a fixed state of the tables (the `keyshift sql` command).
    pub fn fixed(tables: Tables, limits: QueryLimits) -> Result<Self> {
        Self::new(Snapshot::Fixed(tables), limits)
    }

    fn new(snapshot: Snapshot, limits: QueryLimits) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes.max(64 * 1024 * 1024), 1.0)
            .build_arc()?;
        Ok(Self {
            snapshot,
            limits,
            runtime,
        })
    }

    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// The tables as the next query will see them.
    pub fn tables(&self) -> Tables {
        match &self.snapshot {
            Snapshot::Live(rx) => rx.borrow().tables.clone(),
            Snapshot::Fixed(t) => t.clone(),
        }
    }

    /// A session with the tables registered at their latest snapshot.
    pub async fn context(&self) -> Result<SessionContext> {
        let tables = self.tables();
        let config = SessionConfig::new()
            .with_information_schema(true)
            .set_str("datafusion.execution.time_zone", "UTC");
        let ctx = SessionContext::new_with_config_rt(config, self.runtime.clone());
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

    /// Runs one read-only statement (a query or EXPLAIN) under the limits.
    pub async fn sql(&self, sql: &str) -> Result<QueryOutput> {
        self.run(sql, Some(self.limits.max_rows)).await
    }

    /// Runs one read-only statement with no row limit, for keyshift's own
    /// bounded internal queries.
    pub async fn sql_unbounded(&self, sql: &str) -> Result<QueryOutput> {
        self.run(sql, None).await
    }

    async fn run(&self, sql: &str, max_rows: Option<usize>) -> Result<QueryOutput> {
        let ctx = self.context().await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let work = async {
            let df = ctx
                .sql_with_options(sql, options)
                .await
                .map_err(|e| match e {
                    datafusion::error::DataFusionError::Plan(msg)
                        if msg.contains("not supported") || msg.contains("only supports") =>
                    {
                        StoreError::NotReadOnly(msg)
                    }
                    other => StoreError::Query(other),
                })?;
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
            let batches = df.collect().await?;
            Ok::<_, StoreError>((schema, batches))
        };
        let (schema, mut batches) = tokio::time::timeout(self.limits.timeout, work)
            .await
            .map_err(|_| StoreError::QueryTimeout(self.limits.timeout))??;
        let mut truncated = false;
        if let Some(max) = max_rows {
            let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if total > max {
                truncated = true;
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
                batches = out;
            }
        }
        Ok(QueryOutput {
            schema,
            batches,
            truncated,
        })
    }
}
