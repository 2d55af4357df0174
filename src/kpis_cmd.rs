//! `keyshift kpis`: the KPI (or funnel) report of a data dir, in the
//! terminal or as the same JSON `GET /v1/kpis` returns.

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use keyshift_metrics::kpi::{self, RawParams};
use keyshift_store::metrics::ResultCacheMetrics;
use keyshift_store::query::QueryLimits;
use keyshift_store::{QueryEngine, QueryExecutor, ResultCache, Tables};

use crate::config::Config;

/// What to report, as on the HTTP API.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KpisArgs {
    /// Relying party [default: all].
    #[arg(long)]
    pub rp_id: Option<String>,
    /// Start of the range, RFC 3339 [default: `to` − 7 days].
    #[arg(long)]
    pub from: Option<String>,
    /// End of the range, RFC 3339 [default: the time of the table's last commit].
    #[arg(long)]
    pub to: Option<String>,
    /// hour, day or week [default: day].
    #[arg(long)]
    pub interval: Option<String>,
    /// Breakdown: platform, browser, form_factor, variant, rollout_id, rp_id.
    #[arg(long)]
    pub by: Option<String>,
    /// KPI names (repeat or comma-separate) [default: all].
    #[arg(long)]
    pub kpi: Vec<String>,
    /// The funnels instead of the KPIs.
    #[arg(long)]
    pub funnel: bool,
    /// The whole report as JSON, series included.
    #[arg(long)]
    pub json: bool,
    /// Print the KPI catalogue as Markdown (docs/kpis.md) and exit.
    #[arg(long)]
    pub catalog: bool,
}

/// Time of the last commit of `auth_events`: nothing committed later is in
/// the table, so the report is complete up to there.
async fn last_commit(tables: &Tables) -> Option<DateTime<Utc>> {
    let mut history = tables.events.history(Some(1));
    let info = history.next().await?.ok()?;
    DateTime::from_timestamp_millis(info.timestamp?)
}

/// A query engine over `tables` outside the server, with the result cache
/// of `config`'s data dir (what reports and the rollup task keep there).
pub(crate) fn kpi_engine(config: &Config, tables: Tables) -> anyhow::Result<QueryEngine> {
    Ok(QueryEngine::fixed(
        tables,
        QueryLimits::from(&config.store),
        QueryExecutor::standalone(&config.store)?,
    )?
    .with_result_cache(ResultCache::new(
        &config.store,
        Some(config.result_cache_dir()),
        ResultCacheMetrics::unregistered(),
    )))
}

/// Computes the report `args` asks for over the store of `config`: a text
/// table, or JSON with `--json`; the KPI catalogue (Markdown) with
/// `--catalog`. `--to` defaults to the time of the last commit of
/// `auth_events` (now when there is none).
pub async fn run_kpis(config: &Config, args: &KpisArgs) -> anyhow::Result<String> {
    if args.catalog {
        return Ok(kpi::catalog_markdown());
    }
    let root = config.store_root();
    let tables = Tables::open(&root, &config.store.storage_options)
        .await
        .with_context(|| format!("opening the store at {root}"))?;
    let watermark = last_commit(&tables).await;
    let mut raw = RawParams {
        rp_id: args.rp_id.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        interval: args.interval.clone(),
        by: args.by.clone(),
        kpis: Vec::new(),
    };
    for k in &args.kpi {
        raw.add_kpis(k);
    }
    let req = raw.check(watermark.unwrap_or_else(Utc::now))?;
    let engine = kpi_engine(config, tables)?;
    Ok(if args.funnel {
        let report = kpi::funnels(&engine, &req, watermark).await?;
        if args.json {
            serde_json::to_string_pretty(&report)?
        } else {
            kpi::funnel_table(&report)
        }
    } else {
        let report = kpi::kpis(&engine, &req, watermark).await?;
        if args.json {
            serde_json::to_string_pretty(&report)?
        } else {
            kpi::kpi_table(&report)
        }
    })
}
