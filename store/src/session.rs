//! How a DataFusion session is set up so that its limits hold.
//!
//! - Memory: each lane has its own pool (`store.query_memory_mib`,
//!   `store.control_query_memory_mib`) shared by that lane's running queries;
//!   spilling is off, so a sort, join or aggregation that outgrows the pool
//!   fails instead of filling the disk. Functions whose output size comes from
//!   an argument rather than from their input (`repeat`, `lpad`, `range`, …)
//!   are checked before they run ([`crate::guard`]).
//! - Time: the executor aborts a query's task at its time limit, which only
//!   takes effect when the task yields. DataFusion makes its leaves yield
//!   (`EnsureCooperative`), but an operator that emits many batches per input
//!   batch — cross, nested-loop and hash joins with a large output — never
//!   reaches a leaf for minutes. [`YieldEverywhere`] makes every operator
//!   spend tokio's cooperative budget on each batch it emits, so every plan
//!   yields within a bounded number of batches.

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

use crate::Result;
use crate::guard;

/// Memory budget of one lane, and the setting that sets it (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub bytes: usize,
    pub setting: &'static str,
}

impl Budget {
    pub fn mib(&self) -> usize {
        self.bytes / (1024 * 1024)
    }
}

/// A lane's DataFusion runtime: its memory pool, no spilling.
pub(crate) fn runtime_env(budget: Budget) -> Result<Arc<RuntimeEnv>> {
    let top = NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN);
    let pool = TrackConsumersPool::new(GreedyMemoryPool::new(budget.bytes), top);
    Ok(RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()?)
}

/// A session over `runtime` with keyshift's settings, rule and guards.
pub(crate) fn context(runtime: Arc<RuntimeEnv>, budget: Budget) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .set_str("datafusion.execution.time_zone", "UTC");
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_physical_optimizer_rule(Arc::new(YieldEverywhere))
        .build();
    let ctx = SessionContext::new_with_state(state);
    guard::install(&ctx, budget)?;
    Ok(ctx)
}

/// Wraps every operator that has inputs in a [`CooperativeExec`] (leaves are
/// wrapped by DataFusion's own `EnsureCooperative`). Runs last.
#[derive(Debug, Default)]
pub struct YieldEverywhere;

impl PhysicalOptimizerRule for YieldEverywhere {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.children().is_empty() || node.name() == CooperativeExec::static_name() {
                return Ok(Transformed::no(node));
            }
            let wrapped: Arc<dyn ExecutionPlan> = Arc::new(CooperativeExec::new(node));
            Ok(Transformed::yes(wrapped))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "keyshift_yield_everywhere"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
