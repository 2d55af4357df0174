//! `keyshift sql`: one read-only query against the store, from the shell.

use anyhow::Context;
use keyshift_store::query::QueryLimits;
use keyshift_store::{QueryEngine, QueryExecutor, Tables};

use crate::config::Config;

/// How `keyshift sql` prints the rows (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table, with a note when the row limit cut it.
    Table,
    /// A JSON object: `rows` (one object per row) and `truncated`.
    Json,
}

/// Runs `sql` and renders the rows.
pub async fn run_sql(config: &Config, sql: &str, format: OutputFormat) -> anyhow::Result<String> {
    let root = config.store_root();
    let tables = Tables::open(&root, &config.store.storage_options)
        .await
        .with_context(|| format!("opening the store at {root}"))?;
    let engine = QueryEngine::fixed(
        tables,
        QueryLimits::from(&config.store),
        QueryExecutor::standalone(&config.store)?,
    )?;
    let out = engine.sql(sql).await?;
    let mut text = match format {
        OutputFormat::Table => {
            arrow::util::pretty::pretty_format_batches(&out.batches)?.to_string()
        }
        OutputFormat::Json => {
            let rows = keyshift_metrics::batches_to_rows(&out.batches)?;
            serde_json::to_string_pretty(
                &serde_json::json!({ "rows": rows, "truncated": out.truncated }),
            )?
        }
    };
    if out.truncated && format == OutputFormat::Table {
        text.push_str(&format!(
            "\n(truncated to {} rows; raise store.query_max_rows to see more)",
            engine.limits().max_rows
        ));
    }
    Ok(text)
}
