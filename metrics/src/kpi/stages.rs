//! The shared tables `a` (sign-in ceremonies by kind), `u` (users by kind
//! and by the passkeys they hold), `q` (time-to-sign-in quantiles) and `c`
//! (events counted by kind) that most KPIs read, computed once per report.
//!
//! Grouping ten million events by ceremony or by user at once needs more
//! memory than a query may take, so both are computed a piece of the range
//! at a time and put together:
//! - `a` and `c`: from the hourly rollups of the range's days, the same
//!   rows in every report, summed into its intervals and breakdown
//!   (`rollup.rs`: also how a ceremony that crosses a day is counted).
//! - `u`: a week from Monday 00:00 UTC at a time (see [`chunks`]): a chunk
//!   holds whole intervals, so its rows never overlap another's. Distinct
//!   users over the whole range (the totals) take one more pass, grouped
//!   by user only. Each pass reads the credential history `h` up to its
//!   intervals' ends as well (cut from the report's one reading of it,
//!   `history.rs`), so a statement over `u` depends on every earlier day
//!   ([`SHARED`]). Its statements are in `users.rs`. By day, the days
//!   whose users the rollup task has made come from those rollups instead
//!   (`user_days.rs`).
//! - `q`: one pass over the range: a quantile does not add up over chunks.
//!   By day, the days whose quantiles the rollup task has made come from
//!   those rollups, and the pass makes the totals only
//!   (`quantile_days.rs`).

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Utc};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;

use super::engine::{NO_BREAKDOWN, Part, statement};
use super::parts::mentions;
use super::quantile_days;
use super::request::KpiRequest;
use super::rollup::{
    COUNTED, COUNTED_COLUMNS, COUNTED_EVENTS, KINDS, Table, ceremony, ceremony_breakdown,
};
use super::users::users;
use datafusion::error::DataFusionError;
use keyshift_store::StoreError;

/// The median and 95th percentile of `duration_ms` of successful sign-ins,
/// per method, in standard SQL, for other engines (`whole`). KPI sessions
/// compute both with one aggregate, so that each duration is kept once
/// per grouping set (`quantiles.rs`; the statement is in
/// `quantile_days.rs`).
const QUANTILES_STANDARD: &str = "SELECT b, g, method,
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
                 percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95,
                 count(duration_ms) AS n
          FROM e WHERE event_type = 'auth.succeeded' AND duration_ms IS NOT NULL
          GROUP BY {SETS(method)}";

/// A shared table: its name in the KPI queries, whether it reads the
/// credential history before the range (`h`: a statement over such a table
/// depends on every earlier day, and its cached result is keyed by all of
/// them), and how it is made for a request.
pub struct Shared {
    /// `a`, `u`, `q` or `c`.
    pub name: &'static str,
    /// Whether it reads `h`.
    pub history: bool,
    make: fn(&KpiRequest, Held<'_>) -> Stage,
}

/// Whether the result cache holds a part's result (see [`stages_with`]).
pub(super) type Held<'a> = &'a dyn Fn(&Part) -> bool;

/// The shared tables, in the order they are made.
pub const SHARED: [Shared; 4] = [
    Shared {
        name: "a",
        history: false,
        make: ceremonies,
    },
    Shared {
        name: "u",
        history: true,
        make: users,
    },
    Shared {
        name: "q",
        history: false,
        make: quantiles,
    },
    Shared {
        name: "c",
        history: false,
        make: counts,
    },
];

/// A shared table: `parts` run in order and their rows put together; then,
/// if there is one, `merge` reads them as `<name>0` and its rows are the
/// table. `whole` is the same table in one statement over the whole range
/// (for other engines, in the bench).
#[derive(Debug, Clone)]
pub struct Stage {
    /// The table's name in the KPI queries: `a` (ceremonies), `u` (users),
    /// `q` (quantiles) or `c` (counted events).
    pub name: &'static str,
    /// Statements run one after the other (one per chunk of the range, plus the
    /// totals for `u`).
    pub parts: Vec<Part>,
    /// Statement over the parts' rows (read as `<name>0`) giving the table; `None`
    /// when the parts' rows are the table as they are.
    pub merge: Option<String>,
    /// The same table as one statement over the whole range.
    pub whole: String,
}

/// `[from, to)` cut at Mondays, 00:00 UTC: every interval falls whole in
/// one chunk, and the edges stay where they are as the range moves (a
/// chunk's cached result is reused). `u` groups a week's events by user
/// within the memory limit (2.3 million events over ten million a month),
/// and each of its chunks joins the whole history, so fewer, larger chunks.
pub fn chunks(req: &KpiRequest) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let day = req.from.date_naive();
    let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
    let mut edge = monday.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let mut out = Vec::new();
    while edge < req.to {
        let next = edge + Duration::days(7);
        let (a, b) = (edge.max(req.from), next.min(req.to));
        if a < b {
            out.push((a, b));
        }
        edge = next;
    }
    out
}

/// `req` narrowed to `[from, to)`.
pub(super) fn within(req: &KpiRequest, from: DateTime<Utc>, to: DateTime<Utc>) -> KpiRequest {
    KpiRequest {
        from,
        to,
        ..req.clone()
    }
}

/// `a`: the rollups of the range's days and its odd hours ([`Table`]),
/// put together.
fn ceremonies(req: &KpiRequest, _: Held<'_>) -> Stage {
    let whole = statement(
        req,
        &format!(
            "SELECT b, g, {KINDS}, count(*) AS n FROM ({}) GROUP BY {{SETS({KINDS})}}",
            ceremony(&format!(
                "min(b) AS b, {} AS g",
                req.by.map_or(NO_BREAKDOWN.to_owned(), ceremony_breakdown)
            ))
        ),
    );
    Stage {
        name: "a",
        parts: Table::Ceremonies.parts(req),
        merge: Some(Table::Ceremonies.merge(req)),
        whole,
    }
}

/// `q`: series and totals in one statement. A quantile keeps every value
/// of its groups: each sign-in's duration is held once per grouping set
/// (three times with a breakdown). Cut into weeks plus a totals pass, it
/// held less but took about one and a half times as long over ten million
/// events (measured with two `percentile_cont`s). By day, the series of
/// the days the rollup task has made come from their rollups instead
/// (`quantile_days.rs`).
fn quantiles(req: &KpiRequest, have: Held<'_>) -> Stage {
    Stage {
        name: "q",
        parts: quantile_days::parts(req, have),
        merge: Some(quantile_days::merge(req)),
        whole: statement(req, QUANTILES_STANDARD),
    }
}

/// `c`: like `a`, from rollups.
fn counts(req: &KpiRequest, _: Held<'_>) -> Stage {
    Stage {
        name: "c",
        parts: Table::Counts.parts(req),
        merge: Some(Table::Counts.merge(req)),
        whole: statement(
            req,
            &format!(
                "SELECT b, g, {COUNTED}, count(*) AS n
                 FROM (SELECT b, g, {COUNTED_COLUMNS} FROM e WHERE {COUNTED_EVENTS})
                 GROUP BY {{SETS({COUNTED})}}"
            ),
        ),
    }
}

/// The shared tables `statements` read, in the order they must be made. A
/// statement that names a table anywhere is taken to read it: a wider
/// guess only makes a table that is not needed.
pub fn stages(req: &KpiRequest, statements: &[&str]) -> Vec<Stage> {
    stages_with(req, statements, &|_| false)
}

/// [`stages`], with the parts that are only used when the result cache
/// holds them (`u`'s and `q`'s day rollups) where `have` says it does.
pub(super) fn stages_with(req: &KpiRequest, statements: &[&str], have: Held<'_>) -> Vec<Stage> {
    SHARED
        .iter()
        .filter(|t| statements.iter().any(|sql| mentions(sql, t.name)))
        .map(|t| (t.make)(req, have))
        .collect()
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
    use crate::kpi::request::checked as req;

    #[test]
    fn chunks_cover_the_range_once_at_fixed_edges() {
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
            days("from=2026-11-04T06:00:00Z&to=2026-11-20T12:00:00Z&interval=hour"),
            days("from=2026-11-04T06:00:00Z&to=2026-11-20T12:00:00Z&interval=week")
        );
        assert_eq!(
            days("from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z"),
            ["02 00..04 00"]
        );
        assert!(days("from=2026-11-04T00:00:00Z&to=2026-11-04T00:00:00Z").is_empty());
    }

    #[test]
    fn totals_are_not_grouped_by_their_constant_interval() {
        // `b` is NULL in the totals; grouping by it would put DataFusion's
        // grouping in its slower partially sorted mode.
        use crate::kpi::engine::{Sets, expand};
        let by = req("from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z&by=platform");
        assert_eq!(
            expand("{SETS(x)}", &by, Sets::Totals),
            "GROUPING SETS ((g, x), (x))"
        );
        assert_eq!(
            expand("{SETS(x)}", &by, Sets::Both),
            "GROUPING SETS ((b, g, x), (g, x), (x))"
        );
        assert_eq!(
            expand("{SETS(x)}", &by, Sets::Series),
            "GROUPING SETS ((b, g, x))"
        );
    }

    #[test]
    fn no_kpi_groups_the_events_by_user_itself() {
        // It would run as one pass over the whole range: over ten million
        // events, more than a query's memory. Users go through `u`.
        for k in crate::kpi::CATALOG {
            assert!(!k.sql.contains("SETS(user_key"), "{}", k.name);
        }
    }

    #[test]
    fn only_the_tables_read_are_made() {
        let r = req("from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z");
        let s = |sql: &str| stages(&r, &[sql]);
        assert_eq!(s("SELECT * FROM a WHERE x").len(), 1);
        assert_eq!(s("SELECT * FROM u").len(), 1);
        assert_eq!(s("SELECT * FROM q WHERE n > 0").len(), 1);
        assert_eq!(s("SELECT * FROM x JOIN u ON true").len(), 1);
        assert!(s("SELECT * FROM auth_events").is_empty());
        // Statements come whole: the common tables in front name none.
        assert!(stages(&r, &[&statement(&r, "SELECT 1")]).is_empty());
        assert_eq!(stages(&r, &[&statement(&r, "SELECT * FROM u")]).len(), 1);
        assert!(s("SELECT * FROM us").is_empty());
        assert!(s("SELECT * FROM qq").is_empty());
        assert_eq!(s("SELECT * FROM a JOIN u ON true").len(), 2);
    }
}
