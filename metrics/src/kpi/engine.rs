//! Turns a [`KpiRequest`] into SQL over the store, runs it on the query
//! runtime (ad-hoc lane: a dashboard refresh queues behind other queries
//! and never runs on the ingest runtime) and reads the rows back.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::array::{Array, Float64Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use keyshift_store::query::{collect, plan};
use keyshift_store::result_cache::CachedResult;
use keyshift_store::{Lane, QueryEngine, StoreError};

use super::catalog::Kpi;
pub use super::history::{HISTORY_TABLE, History};
use super::history::{Reading, history};
pub use super::parts::{Part, part};
use super::request::{By, Interval, KpiRequest};
use crate::{MetricsError, Result};

/// One row of a KPI or exits query: interval start (`None`: the whole
/// range), breakdown value (`None`: all), key, numerator, denominator.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Start of the interval (UTC); `None` for a total over the whole range.
    pub t: Option<DateTime<Utc>>,
    /// Breakdown value (`'all'` without a breakdown); `None` for a total over all values.
    pub group: Option<String>,
    /// The point's key (error name, reason, method…); `None` for unkeyed KPIs.
    pub key: Option<String>,
    /// Numerator (the quantile itself for millisecond KPIs); `None` when SQL gave NULL.
    pub num: Option<f64>,
    /// Denominator; 0 for exits queries, which have none.
    pub den: i64,
}

pub(super) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(super) fn ts(t: DateTime<Utc>) -> String {
    format!("to_timestamp_micros({})", t.timestamp_micros())
}

/// The first and last day (`event_date`) of `req`'s range `[from, to)`: a
/// range that ends at midnight does not read the day that starts there.
pub fn days(req: &KpiRequest) -> (NaiveDate, NaiveDate) {
    let last = req.to - chrono::Duration::microseconds(1);
    (req.from.date_naive(), last.date_naive())
}

/// `rp_id = '…' AND `, or nothing for all relying parties.
pub(super) fn rp_filter(req: &KpiRequest) -> String {
    req.rp_id
        .as_deref()
        .map(|r| format!("rp_id = {} AND ", quote(r)))
        .unwrap_or_default()
}

/// The common tables `e` and `h` (documented in [`super::catalog`]).
fn prelude(req: &KpiRequest, sets: Sets, from: History) -> String {
    let rp = rp_filter(req);
    let g = match req.by {
        None => NO_BREAKDOWN.to_owned(),
        Some(by) => breakdown(by),
    };
    let (from_ts, to) = (ts(req.from), ts(req.to));
    // event_date (the partition column) bounds the files read; occurred_at
    // the rows.
    let (first, last) = days(req);
    let (from_day, to_day) = (quote(&first.to_string()), quote(&last.to_string()));
    let h = match from {
        History::Scan => history(req),
        History::Table => format!("SELECT * FROM {HISTORY_TABLE} WHERE occurred_at < {to}"),
    };
    format!(
        "WITH e AS (
           SELECT *, {b} AS b, {g} AS g
           FROM auth_events
           WHERE {rp}occurred_at >= {from_ts} AND occurred_at < {to}
             AND event_date >= CAST({from_day} AS DATE) AND event_date <= CAST({to_day} AS DATE)),
         h AS (
           {h})",
        b = match sets {
            Sets::Totals => NO_INTERVAL.to_owned(),
            Sets::Both | Sets::Series => bucket(req.interval),
        },
    )
}

/// The breakdown value `g` of an event, by `by`.
pub(crate) fn breakdown(by: By) -> String {
    match by {
        By::Variant => "coalesce(rollout_variant, 'none')".to_owned(),
        by => format!("coalesce(CAST({} AS VARCHAR), 'unknown')", by.column()),
    }
}

/// `g` without a breakdown.
pub(crate) const NO_BREAKDOWN: &str = "'all'";

/// `b` of the totals: no interval; a NULL of the timestamp's type.
pub(crate) const NO_INTERVAL: &str = "to_timestamp_micros(CAST(NULL AS BIGINT))";

/// The start of the interval `occurred_at` falls in, as a timestamp of the
/// column's type (microseconds, UTC).
///
/// `date_bin` from a Monday midnight, not `date_trunc`: both give the same
/// buckets in UTC (no daylight saving; a week starts on Monday), but
/// `date_trunc` converts every timestamp through its time zone, about
/// 240 ns of CPU an event (a query bucketing ten million events took 1.5 s
/// with it, 0.4 s with `date_bin`; a ceremony chunk an eighth less).
/// `date_bin` answers in nanoseconds; the cast keeps `b` in the column's
/// unit.
pub(crate) fn bucket(interval: Interval) -> String {
    bucket_of(interval, "occurred_at")
}

/// [`bucket`] of the timestamp column `column`.
pub(crate) fn bucket_of(interval: Interval, column: &str) -> String {
    format!(
        "arrow_cast(date_bin({}, {column}, TIMESTAMP '1970-01-05T00:00:00Z'), \
         'Timestamp(Microsecond, Some(\"UTC\"))')",
        interval.sql_interval()
    )
}

/// Rows per batch in KPI sessions (see [`run_all`]).
const KPI_BATCH_ROWS: &str = "262144";

/// Which rows a statement's `{SETS(…)}` groupings make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sets {
    /// Series and totals, in one pass.
    Both,
    /// Per interval (and breakdown value) only.
    Series,
    /// Over the whole range only. `b` is NULL throughout and its sets leave
    /// it out (a statement writes [`NO_INTERVAL`] for it): DataFusion takes
    /// a constant grouping column for a sort order and groups in its slower
    /// partially sorted mode.
    Totals,
}

/// Expands `{SETS(…)}` and `{END(…)}` (see [`super::catalog`]).
pub fn expand(sql: &str, req: &KpiRequest, mode: Sets) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let Some(end) = tail.find(")}") else {
            out.push_str(tail);
            return out;
        };
        let inner = &tail[1..end];
        if let Some(cols) = inner.strip_prefix("SETS(") {
            let cols: Vec<&str> = cols
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            let set = |prefix: &[&str]| {
                let all: Vec<&str> = prefix.iter().chain(cols.iter()).copied().collect();
                format!("({})", all.join(", "))
            };
            let mut sets = match mode {
                Sets::Both => vec![set(&["b", "g"]), set(&["g"])],
                Sets::Series => vec![set(&["b", "g"])],
                Sets::Totals => vec![set(&["g"])],
            };
            if req.by.is_some() && mode != Sets::Series {
                sets.push(set(&[]));
            }
            out.push_str(&format!("GROUPING SETS ({})", sets.join(", ")));
        } else if let Some(t) = inner.strip_prefix("END(") {
            let to = ts(req.to);
            let next = format!("{t} + {}", req.interval.sql_interval());
            out.push_str(&format!(
                "(CASE WHEN {t} IS NULL OR {next} > {to} THEN {to} ELSE {next} END)"
            ));
        } else {
            out.push_str(&tail[..end + 2]);
        }
        rest = &tail[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The whole statement for one KPI query: the prelude, then the query's own
/// common tables, if any, then its SELECT.
pub fn statement(req: &KpiRequest, sql: &str) -> String {
    statement_with(req, sql, Sets::Both, History::Scan)
}

/// [`statement`] making only the `mode` rows, reading `h` `from`.
pub fn statement_with(req: &KpiRequest, sql: &str, mode: Sets, from: History) -> String {
    let body = expand(sql, req, mode);
    let body = body.trim_start();
    let prelude = prelude(req, mode, from);
    match body.strip_prefix("WITH ") {
        Some(rest) => format!("{prelude},\n{rest}"),
        None => format!("{prelude}\n{body}"),
    }
}

/// Runs `statements` in one admission slot of the ad-hoc lane, one after
/// the other, and returns each one's batches. A part whose result is
/// cached for the files it reads is not run; the shared tables (`a`, `u`,
/// `q`, `c`) are computed first, once, if a part that must run reads them.
pub async fn run_all(
    engine: &QueryEngine,
    req: &KpiRequest,
    statements: Vec<(String, Vec<Part>)>,
) -> Result<Vec<Vec<RecordBatch>>> {
    let req = req.clone();
    let cache = engine.result_cache().cloned();
    let out = engine
        .run_with_tables(Lane::Adhoc, move |ctx, tables| async move {
            kpi_session(&ctx)?;
            let all: Vec<&str> = statements
                .iter()
                .flat_map(|(_, parts)| parts.iter().map(|p| p.sql.as_str()))
                .collect();
            let mut cache = super::parts::Cache::new(cache, &tables);
            let stages = super::stages::stages_with(&req, &all, &|p| cache.has(p));
            cache.share(&stages);
            let found: Vec<Vec<Option<Arc<CachedResult>>>> = statements
                .iter()
                .map(|(_, parts)| parts.iter().map(|p| cache.get(p)).collect())
                .collect();
            let to_run: Vec<&str> = statements
                .iter()
                .zip(&found)
                .flat_map(|((_, parts), hits)| parts.iter().zip(hits))
                .filter(|(_, hit)| hit.is_none())
                .map(|(p, _)| p.sql.as_str())
                .collect();
            // The report's history: read when the first part that reads it
            // must run.
            let mut history = Reading::new(&req);
            // Only the shared tables that a statement still to run reads.
            let needed = stages.into_iter().filter(|stage| {
                to_run
                    .iter()
                    .any(|sql| super::parts::mentions(sql, stage.name))
            });
            for stage in needed {
                let name = stage.name;
                let mut parts = Vec::new();
                let mut schema = None;
                for part in &stage.parts {
                    let hit = cache.get(part);
                    let result = result_of(&ctx, &cache, &mut history, name, part, hit).await?;
                    schema.get_or_insert_with(|| result.schema.as_ref().clone());
                    parts.extend(result.batches.iter().cloned());
                }
                let mut table = super::stages::table(schema.as_ref(), parts)?;
                if let Some(merge) = &stage.merge {
                    ctx.register_table(format!("{name}0"), Arc::new(table))?;
                    let df = plan(&ctx, merge).await.map_err(|e| tag(name, e))?;
                    let schema = df.schema().as_arrow().clone();
                    let merged = collect(&ctx, df).await.map_err(|e| tag(name, e))?;
                    ctx.deregister_table(format!("{name}0"))?;
                    table = super::stages::table(Some(&schema), merged)?;
                }
                ctx.register_table(name, Arc::new(table))?;
            }
            let mut out = Vec::with_capacity(statements.len());
            for ((name, parts), hits) in statements.iter().zip(found) {
                let mut batches = Vec::new();
                for (part, hit) in parts.iter().zip(hits) {
                    let result = result_of(&ctx, &cache, &mut history, name, part, hit).await?;
                    batches.extend(result.batches.iter().cloned());
                }
                out.push(batches);
            }
            Ok(out)
        })
        .await;
    // A planning or execution error of keyshift's own SQL is a bug of
    // keyshift, not of the caller (a 500, not a 400). Limits, time-outs and
    // a full queue keep their kinds.
    out.map_err(|e| match e {
        StoreError::Query(q) => MetricsError::Kpi(q.to_string()),
        other => MetricsError::Store(other),
    })
}

/// Sets a session up for KPI statements.
pub(super) fn kpi_session(ctx: &SessionContext) -> datafusion::error::Result<()> {
    let state = ctx.state_ref();
    let mut state = state.write();
    let options = state.config_mut().options_mut();
    // Aggregations hand their output on as slices of one buffer, and every
    // slice is charged for the whole buffer where batches are counted
    // (repartitioning): with the default 8,192 rows a large grouping is
    // charged hundreds of times over. Bigger batches keep the accounting
    // near the truth.
    options.set("datafusion.execution.batch_size", KPI_BATCH_ROWS)?;
    // A join builds its hash table on the side written first (see
    // `users.rs`). The optimizer judges sides by file statistics from
    // before the filters: it built `u`'s on the users seen in a week
    // (635,000 rows, 103 MB over ten million events), not on their history
    // (85,000, 26 MB).
    options.set("datafusion.optimizer.join_reordering", "false")?;
    drop(state);
    // `q`'s aggregate (`quantiles.rs`).
    super::quantiles::register(ctx);
    Ok(())
}

/// A part's result: `hit`, or run now (after the history, if it reads it).
async fn result_of(
    ctx: &SessionContext,
    cache: &super::parts::Cache,
    history: &mut Reading,
    name: &str,
    part: &Part,
    hit: Option<Arc<CachedResult>>,
) -> keyshift_store::Result<Arc<CachedResult>> {
    if let Some(hit) = hit {
        return Ok(hit);
    }
    if part.reads_h {
        history.ensure(ctx).await.map_err(|e| tag("history", e))?;
    }
    cache
        .compute(ctx, name, part)
        .await
        .map_err(|e| tag(name, e))
}

fn tag(name: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Query(q) => StoreError::Query(q.context(format!("KPI query {name}"))),
        other => other,
    }
}

/// The named column of `batch`, cast to `to`.
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<Arc<dyn Array>> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| MetricsError::Kpi(format!("KPI query returned no column {name}")))?;
    cast(col, to).map_err(|e| MetricsError::Kpi(format!("column {name}: {e}")))
}

fn strings(a: &Arc<dyn Array>) -> Result<&StringArray> {
    a.as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| MetricsError::Kpi("expected strings".into()))
}

/// Interval starts and breakdown values, one per row.
type Heads = (Vec<Option<DateTime<Utc>>>, Vec<Option<String>>);

/// One funnel step row: interval start, breakdown value, step counts.
pub type StepRow = (Option<DateTime<Utc>>, Option<String>, Vec<i64>);

/// Interval starts and breakdown values of `batch`.
fn heads(batch: &RecordBatch) -> Result<Heads> {
    let t = column(
        batch,
        "b",
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )?;
    let t = cast(&t, &DataType::Int64).map_err(|e| MetricsError::Kpi(e.to_string()))?;
    let t = t
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| MetricsError::Kpi("expected timestamps".into()))?;
    let g = column(batch, "g", &DataType::Utf8)?;
    let g = strings(&g)?;
    let n = batch.num_rows();
    let times = (0..n)
        .map(|i| {
            t.is_valid(i)
                .then(|| DateTime::from_timestamp_micros(t.value(i)))
                .flatten()
        })
        .collect();
    let groups = (0..n)
        .map(|i| g.is_valid(i).then(|| g.value(i).to_owned()))
        .collect();
    Ok((times, groups))
}

/// Reads `b, g, k, num[, den]` rows.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for batch in batches {
        let (times, groups) = heads(batch)?;
        let k = column(batch, "k", &DataType::Utf8)?;
        let k = strings(&k)?;
        let num = column(batch, "num", &DataType::Float64)?;
        let num = num
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| MetricsError::Kpi("expected numbers".into()))?;
        let den = match batch.column_by_name("den") {
            Some(_) => Some(count_column(batch, "den")?),
            None => None,
        };
        for (i, (t, group)) in times.into_iter().zip(groups).enumerate() {
            out.push(Row {
                t,
                group,
                key: k.is_valid(i).then(|| k.value(i).to_owned()),
                num: num.is_valid(i).then(|| num.value(i)),
                den: den.as_ref().map_or(0, |d| d[i]),
            });
        }
    }
    Ok(out)
}

/// A count column (NULL read as 0).
pub fn count_column(batch: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let c = column(batch, name, &DataType::Int64)?;
    let c = c
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| MetricsError::Kpi("expected counts".into()))?;
    Ok((0..c.len())
        .map(|i| if c.is_valid(i) { c.value(i) } else { 0 })
        .collect())
}

/// Interval starts and breakdown values of a funnel's step rows, with the
/// named step columns.
pub fn step_rows(batches: &[RecordBatch], columns: &[&str]) -> Result<Vec<StepRow>> {
    let mut out = Vec::new();
    for batch in batches {
        let (times, groups) = heads(batch)?;
        let cols = columns
            .iter()
            .map(|c| count_column(batch, c))
            .collect::<Result<Vec<_>>>()?;
        for (i, (t, g)) in times.into_iter().zip(groups).enumerate() {
            out.push((t, g, cols.iter().map(|c| c[i]).collect()));
        }
    }
    Ok(out)
}

/// The statements of `kpis`, named: one part each. None groups the events
/// by user itself (`{SETS(user_key)}`; a unit test of `stages` holds the
/// catalogue to it): distinct users come from `u`, made a chunk at a time
/// within the memory limit.
pub fn kpi_statements(req: &KpiRequest, kpis: &[&'static Kpi]) -> Vec<(String, Vec<Part>)> {
    kpis.iter()
        .map(|k| (k.name.to_owned(), vec![part(req, k.sql)]))
        .collect()
}
