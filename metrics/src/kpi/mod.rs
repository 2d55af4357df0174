//! The passkey KPIs: defined once ([`catalog`], [`funnel`]), computed over
//! `auth_events` on the isolated query path ([`engine`]), reported the same
//! way to `GET /v1/kpis`, `GET /v1/funnel` and `keyshift kpis` ([`report`]).
//! `docs/kpis.md` is [`catalog_markdown`]'s output, checked by a test.

pub mod catalog;
pub mod engine;
pub mod funnel;
mod history;
mod parts;
mod quantile_days;
mod quantiles;
pub mod report;
pub mod request;
mod rollup;
pub mod stages;
mod text;
mod user_days;
mod users;

use chrono::{DateTime, Utc};
use keyshift_store::QueryEngine;

pub use catalog::{CATALOG, Kpi, Unit};
pub use report::{FunnelReport, Header, KpiReport};
pub use request::{By, Interval, KpiRequest, MAX_POINTS, RawParams};
pub use rollup::{Pass as RollupPass, make_recent as make_rollups};
pub use text::{catalog_markdown, funnel_table, kpi_table};

use crate::Result;

/// Computes `req`'s KPIs. `watermark`: up to when the store is complete.
pub async fn kpis(
    engine: &QueryEngine,
    req: &KpiRequest,
    watermark: Option<DateTime<Utc>>,
) -> Result<KpiReport> {
    let version = engine.tables().events.version();
    let statements = engine::kpi_statements(req, &req.kpis);
    let batches = engine::run_all(engine, req, statements).await?;
    let rows = batches
        .iter()
        .map(|b| engine::rows(b))
        .collect::<Result<Vec<_>>>()?;
    report::kpi_report(Header::new(req, watermark, version), &req.kpis, rows)
}

/// Computes the enrollment and sign-in funnels over `req`'s range.
pub async fn funnels(
    engine: &QueryEngine,
    req: &KpiRequest,
    watermark: Option<DateTime<Utc>>,
) -> Result<FunnelReport> {
    let version = engine.tables().events.version();
    let mut statements = Vec::new();
    for f in funnel::FUNNELS {
        statements.push((
            format!("{} steps", f.name),
            vec![engine::part(req, f.steps_sql)],
        ));
        statements.push((
            format!("{} exits", f.name),
            vec![engine::part(req, f.exits_sql)],
        ));
    }
    let batches = engine::run_all(engine, req, statements).await?;
    let mut out = Vec::new();
    for (i, f) in funnel::FUNNELS.iter().enumerate() {
        let columns: Vec<&str> = f.steps.iter().chain(f.outs).copied().collect();
        let steps = engine::step_rows(&batches[2 * i], &columns)?;
        let exits = engine::rows(&batches[2 * i + 1])?;
        out.push(report::funnel_result(f, req.by.is_some(), steps, &exits)?);
    }
    Ok(FunnelReport {
        header: Header::new(req, watermark, version),
        funnels: out,
    })
}
