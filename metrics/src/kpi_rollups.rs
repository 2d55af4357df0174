//! The rollup task: after commits, makes the day rollups of the KPI
//! report (`kpi/rollup.rs`: the ceremonies and counted events of a UTC day,
//! by hour; `kpi/user_days.rs`: its users by kind; `kpi/quantile_days.rs`:
//! its time-to-sign-in quantiles; each for every relying party and
//! breakdown) that the result cache lacks, so that a report sums
//! them instead of grouping the days' events, also the first report after
//! a start. Rollups are kept with the cache's
//! other results (memory and files), keyed by the files they read: a day
//! that gets a file (new or late events, compaction, erasure) is made
//! again on the next pass, and a report never reads a stale one.

use std::time::{Duration, Instant};

use keyshift_store::QueryEngine;
use keyshift_store::metrics::Registrar;
use prometheus::{Histogram, IntCounter, Registry};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::kpi;

/// `[kpi_rollups]`: the rollup task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpiRollupConfig {
    /// Off: each report groups the days it reads that no report read
    /// before (and keeps their ceremonies and counts in the result cache,
    /// as the task would; the users and quantiles of a day only the task
    /// makes).
    pub enabled: bool,
    /// How often the task looks for commits (the first look at start).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The most recent days kept made; a report over older days makes
    /// theirs itself.
    pub days: usize,
}

impl Default for KpiRollupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(15),
            days: 92,
        }
    }
}

impl KpiRollupConfig {
    /// One message per problem; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.interval < Duration::from_secs(1) {
            errors.push("kpi_rollups.interval must be at least 1s".to_owned());
        }
        if !(1..=3660).contains(&self.days) {
            errors.push("kpi_rollups.days must be between 1 and 3660".to_owned());
        }
        errors
    }
}

/// The rollup task's metrics.
#[derive(Debug, Clone)]
pub struct KpiRollupMetrics {
    made: IntCounter,
    failed: IntCounter,
    pass_seconds: Histogram,
}

impl KpiRollupMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar::new(registry);
        Ok(Self {
            made: r.counter(
                "keyshift_kpi_rollups_made_total",
                "Day rollups (ceremonies, counted events, users or quantiles of one day) the rollup task made.",
            )?,
            failed: r.counter(
                "keyshift_kpi_rollup_failures_total",
                "Rollup passes that left a day unmade (tried again on the next look).",
            )?,
            pass_seconds: r.histogram(
                "keyshift_kpi_rollup_pass_seconds",
                "Time of the rollup passes that made at least one rollup.",
                &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
            )?,
        })
    }
}

/// Looks for a new table version every `cfg.interval` until `shutdown` and
/// makes the rollups it lacks. A failed pass is counted and logged, and
/// tried again on the next look.
pub async fn run(
    engine: QueryEngine,
    cfg: KpiRollupConfig,
    metrics: KpiRollupMetrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The table version the last complete pass saw.
    let mut current = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let version = engine.tables().events.version();
        if current == Some(version) {
            continue;
        }
        let started = Instant::now();
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = kpi::make_rollups(&engine, cfg.days) => r,
        };
        match result {
            Ok(pass) => {
                if pass.made > 0 {
                    metrics
                        .made
                        .inc_by(u64::try_from(pass.made).unwrap_or(u64::MAX));
                    metrics
                        .pass_seconds
                        .observe(started.elapsed().as_secs_f64());
                    debug!(
                        made = pass.made,
                        ?version,
                        ms = started.elapsed().as_millis(),
                        "KPI rollups made"
                    );
                }
                for (day, e) in &pass.failed {
                    warn!(%day, error = %e, "KPI rollup not made; trying again on the next look");
                }
                if pass.failed.is_empty() {
                    current = Some(version);
                } else {
                    metrics.failed.inc();
                }
            }
            Err(e) => {
                metrics.failed.inc();
                warn!(error = %e, "KPI rollups not made; trying again on the next look");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_values_are_named() {
        assert!(KpiRollupConfig::default().validate().is_empty());
        let bad = KpiRollupConfig {
            enabled: true,
            interval: Duration::from_millis(10),
            days: 0,
        };
        let errors = bad.validate();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("kpi_rollups.interval"));
        assert!(errors[1].contains("kpi_rollups.days"));
    }
}
