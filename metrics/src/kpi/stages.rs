//! The shared tables `a` (sign-in ceremonies by kind) and `u` (users by
//! kind) that most KPIs read, computed once per report.
//!
//! Grouping ten million events by ceremony or by user at once needs more
//! memory than a query may take, so both are computed a chunk of the range
//! at a time — a week, from Monday 00:00 UTC — and put together: a chunk
//! holds whole intervals, so its rows never overlap another's.
//! - `a`: a ceremony belongs to the chunk of its first event; each chunk
//!   reads an hour of events either side of its bounds to see the whole of
//!   ceremonies that cross them (a ceremony is assumed to last under an
//!   hour). Ceremony counts add up, so the totals are sums over chunks.
//! - `u`: users per interval come from their chunk; distinct users over
//!   the whole range (the totals) take one more pass, grouped by user only.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Utc};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;

use super::engine::{Part, Sets, statement};
use super::request::KpiRequest;
use datafusion::error::DataFusionError;
use keyshift_store::StoreError;

const KINDS: &str = "method, success_method, succeeded, error_name, fallback_reason, \
                     fallback_path, cross_device";

/// One ceremony per row, from the events of `e`.
const CEREMONY: &str = "SELECT min(b) AS b, min(g) AS g, min(occurred_at) AS first,
                 coalesce(max(method) FILTER (WHERE event_type = 'auth.started'),
                          max(method), max(fallback_from)) AS method,
                 max(method) FILTER (WHERE event_type = 'auth.succeeded') AS success_method,
                 bool_or(event_type = 'auth.succeeded') AS succeeded,
                 max(error_name) FILTER (WHERE event_type = 'auth.failed') AS error_name,
                 max(fallback_reason) AS fallback_reason,
                 max(concat(fallback_from, '→', fallback_to))
                     FILTER (WHERE event_type = 'auth.fallback') AS fallback_path,
                 coalesce(bool_or(cross_device), false) AS cross_device
          FROM e WHERE event_type LIKE 'auth.%'
          GROUP BY ak";

/// One user per row and interval (or per breakdown value, for the totals).
const USER: &str = "bool_or(event_type = 'enrollment.offered') AS offered,
                 bool_or(event_type = 'enrollment.started') AS started,
                 bool_or(event_type = 'enrollment.succeeded') AS enrolled,
                 bool_or(event_type = 'enrollment.skipped') AS skipped,
                 bool_or(event_type = 'enrollment.failed') AS enroll_failed,
                 max(error_name) FILTER (WHERE event_type = 'enrollment.failed') AS enroll_error,
                 bool_or(event_type = 'auth.succeeded') AS active
          FROM e WHERE user_key IS NOT NULL
            AND (event_type LIKE 'enrollment.%' OR event_type = 'auth.succeeded')";

const USER_KINDS: &str = "offered, started, enrolled, skipped, enroll_failed, enroll_error, active";

/// A shared table: `parts` run in order and their rows put together; then,
/// if there is one, `merge` reads them as `<name>0` and its rows are the
/// table. `whole` is the same table in one statement over the whole range
/// (for other engines, in the bench).
#[derive(Debug, Clone)]
pub struct Stage {
    /// The table's name in the KPI queries: `a` (ceremonies) or `u` (users).
    pub name: &'static str,
    /// Statements run one after the other (one per weekly chunk, plus the totals for `u`).
    pub parts: Vec<Part>,
    /// Statement over the parts' rows (read as `<name>0`) giving the table; `None`
    /// when the parts' rows are the table as they are.
    pub merge: Option<String>,
    /// The same table as one statement over the whole range.
    pub whole: String,
}

/// Whether `sql` reads the table `name` (`FROM name` or `JOIN name`).
pub fn reads(sql: &str, name: &str) -> bool {
    ["FROM", "JOIN"].iter().any(|word| {
        let pattern = format!("{word} {name}");
        sql.match_indices(&pattern).any(|(i, _)| {
            sql[i + pattern.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
    })
}

fn ts(t: DateTime<Utc>) -> String {
    format!("to_timestamp_micros({})", t.timestamp_micros())
}

/// `[from, to)` cut at Mondays, 00:00 UTC: whole hours, days and ISO weeks
/// fall in one chunk, and a week of ten million events a month is small
/// enough to group by ceremony or user within the memory limit.
pub fn chunks(req: &KpiRequest) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let day = req.from.date_naive();
    let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
    let mut edge = monday.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let mut out = Vec::new();
    while edge < req.to {
        let next = edge + Duration::weeks(1);
        let (a, b) = (edge.max(req.from), next.min(req.to));
        if a < b {
            out.push((a, b));
        }
        edge = next;
    }
    out
}

fn ceremonies(req: &KpiRequest) -> Stage {
    let margin = Duration::hours(1);
    let parts = chunks(req)
        .into_iter()
        .map(|(from, to)| {
            let wide = KpiRequest {
                from: (from - margin).max(req.from),
                to: (to + margin).min(req.to),
                ..req.clone()
            };
            let sql = format!(
                "SELECT b, g, {KINDS}, count(*) AS n FROM ({CEREMONY})
                 WHERE first >= {} AND first < {}
                 GROUP BY b, g, {KINDS}",
                ts(from),
                ts(to)
            );
            Part::new(&wide, &sql, Sets::Both)
        })
        .collect();
    let merge = statement(
        req,
        &format!("SELECT b, g, {KINDS}, sum(n) AS n FROM a0 GROUP BY {{SETS({KINDS})}}"),
    );
    let whole = statement(
        req,
        &format!(
            "SELECT b, g, {KINDS}, count(*) AS n FROM ({CEREMONY}) GROUP BY {{SETS({KINDS})}}"
        ),
    );
    Stage {
        name: "a",
        parts,
        merge: Some(merge),
        whole,
    }
}

fn users(req: &KpiRequest) -> Stage {
    let per_interval = |r: &KpiRequest| {
        Part::new(
            r,
            &format!(
                "SELECT b, g, {USER_KINDS}, count(*) AS n
                 FROM (SELECT b, g, user_key, {USER} GROUP BY b, g, user_key)
                 GROUP BY b, g, {USER_KINDS}"
            ),
            Sets::Both,
        )
    };
    let mut parts: Vec<Part> = chunks(req)
        .into_iter()
        .map(|(from, to)| {
            per_interval(&KpiRequest {
                from,
                to,
                ..req.clone()
            })
        })
        .collect();
    // The totals: distinct users over the whole range; `b` stays NULL (an
    // aggregate over no rows keeps its type).
    let sets = if req.by.is_some() {
        "GROUPING SETS ((g, user_key), (user_key))"
    } else {
        "g, user_key"
    };
    parts.push(Part::new(
        req,
        &format!(
            "SELECT b, g, {USER_KINDS}, count(*) AS n
             FROM (SELECT min(b) FILTER (WHERE false) AS b, g, user_key, {USER}
                   GROUP BY {sets})
             GROUP BY b, g, {USER_KINDS}"
        ),
        Sets::Both,
    ));
    let whole = statement(
        req,
        &format!(
            "SELECT b, g, {USER_KINDS}, count(*) AS n
             FROM (SELECT b, g, user_key, {USER} GROUP BY {{SETS(user_key)}})
             GROUP BY b, g, {USER_KINDS}"
        ),
    );
    Stage {
        name: "u",
        parts,
        merge: None,
        whole,
    }
}

/// The shared tables `statements` read, in the order they must be made.
pub fn stages(req: &KpiRequest, statements: &[&str]) -> Vec<Stage> {
    let mut out = Vec::new();
    let any = |name: &str| statements.iter().any(|sql| reads(sql, name));
    if any("a") {
        out.push(ceremonies(req));
    }
    if any("u") {
        out.push(users(req));
    }
    out
}

/// An in-memory table of `batches`, every column nullable (parts of one
/// stage come from different statements and may disagree on nullability).
pub fn table(
    schema: Option<&Schema>,
    batches: Vec<RecordBatch>,
) -> keyshift_store::Result<MemTable> {
    // Runs inside the query task: a failure here is keyshift's bug, reported
    // like a failed KPI query.
    let internal = |e: String| StoreError::Query(DataFusionError::Internal(e));
    let Some(planned) = schema else {
        return Err(internal("a shared KPI table has no statement".into()));
    };
    let schema = Arc::new(Schema::new(
        planned
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let columns = b
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| internal(e.to_string()))?;
        out.push(
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| internal(e.to_string()))?,
        );
    }
    MemTable::try_new(schema, vec![out]).map_err(|e| internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::RawParams;

    fn req(q: &str) -> KpiRequest {
        RawParams::from_query(q)
            .expect("params")
            .check(Utc::now())
            .expect("request")
    }

    #[test]
    fn chunks_cover_the_range_once_at_monday_edges() {
        let days = |q: &str| -> Vec<String> {
            chunks(&req(q))
                .iter()
                .map(|(a, b)| format!("{}..{}", a.format("%d %H"), b.format("%d %H")))
                .collect()
        };
        // 2026-11-04 is a Wednesday; the 9th and 16th are Mondays.
        assert_eq!(
            days("from=2026-11-04T06:00:00Z&to=2026-11-20T12:00:00Z"),
            ["04 06..09 00", "09 00..16 00", "16 00..20 12"]
        );
        assert_eq!(
            days("from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z"),
            ["02 00..04 00"]
        );
        assert!(days("from=2026-11-04T00:00:00Z&to=2026-11-04T00:00:00Z").is_empty());
    }

    #[test]
    fn only_the_tables_read_are_made() {
        let r = req("from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z");
        let s = |sql: &str| stages(&r, &[sql]);
        assert_eq!(s("SELECT * FROM a WHERE x").len(), 1);
        assert_eq!(s("SELECT * FROM u").len(), 1);
        assert_eq!(s("SELECT * FROM x JOIN u ON true").len(), 1);
        assert!(s("SELECT * FROM auth_events").is_empty());
        assert!(s("SELECT * FROM us").is_empty());
    }
}
