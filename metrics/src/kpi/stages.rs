//! The shared tables `a` (sign-in ceremonies by kind), `u` (users by kind
//! and by the passkeys they hold), `q` (time-to-sign-in quantiles) and `c`
//! (events counted by kind) that most KPIs read, computed once per report.
//!
//! Grouping ten million events by ceremony or by user at once needs more
//! memory than a query may take, so both are computed a chunk of the range
//! at a time — a week from Monday 00:00 UTC, or half a week for the
//! ceremonies (see [`chunks`]) — and put together: a chunk holds whole
//! intervals, so its rows never overlap another's.
//! - `a`: a ceremony belongs to the chunk of its first event; each chunk
//!   reads an hour of events either side of its bounds to see the whole of
//!   ceremonies that cross them (a ceremony is assumed to last under an
//!   hour). Ceremony counts add up, so the totals are sums over chunks.
//! - `u`: users per interval come from their chunk; distinct users over
//!   the whole range (the totals) take one more pass, grouped by user only.
//!   Each pass reads the credential history `h` up to its intervals' ends
//!   as well (cut from the report's one reading of it, `history.rs`), so a
//!   statement over `u` depends on every earlier day ([`SHARED`]). Its
//!   statements are in `users.rs`.
//! - `q`: one pass over the range: a quantile does not add up over chunks.
//! - `c`: like `a`, chunks summed (without the margin).

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;

use super::engine::{Part, Sets, statement};
use super::parts::mentions;
use super::request::{Interval, KpiRequest};
use super::users::users;
use datafusion::error::DataFusionError;
use keyshift_store::StoreError;

const KINDS: &str = "method, success_method, succeeded, error_name, fallback_reason, \
                     fallback_path, cross_device";

/// One ceremony per row, from the events of `e`: the `auth.*` events of one
/// relying party sharing an `attempt_id` (without one, an event is a
/// ceremony of its own). Grouped by the two columns rather than a key made
/// of them: building a string per event cost more than the grouping.
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
          GROUP BY rp_id, coalesce(attempt_id, event_id)";

/// The columns of `c` the counts are kept by.
const COUNTED: &str = "event_type, recovery_channel, kind";

/// The events that KPIs count one by one, by kind: recovery starts (by
/// channel), support contacts and passkeys created (`kind`: `synced` or
/// `device_bound`, the BE flag).
const COUNTS: &str = "SELECT b, g, event_type, recovery_channel,
                 CASE WHEN event_type <> 'enrollment.succeeded' THEN NULL
                      WHEN credential_backup_eligible THEN 'synced'
                      ELSE 'device_bound' END AS kind,
                 count(*) AS n
          FROM e WHERE event_type IN ('recovery.started', 'support.contacted',
                                      'enrollment.succeeded')
          GROUP BY b, g, event_type, recovery_channel, kind";

/// The median and 95th percentile of `duration_ms` of successful sign-ins,
/// per method: one statement for both, so that the events are read once.
const QUANTILES: &str = "SELECT b, g, method,
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
    make: fn(&KpiRequest) -> Stage,
}

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

fn ts(t: DateTime<Utc>) -> String {
    format!("to_timestamp_micros({})", t.timestamp_micros())
}

/// How finely a statement that groups by ceremony or user cuts the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// Whole ISO weeks, from Monday 00:00 UTC.
    Weeks,
    /// Half weeks (Monday to Thursday, Thursday to Monday, 00:00 UTC) for
    /// hourly and daily intervals; whole weeks for weekly ones.
    HalfWeeks,
}

/// `[from, to)` cut at Mondays, 00:00 UTC, and with [`Chunking::HalfWeeks`]
/// at Thursdays too: every interval falls whole in one chunk, and the edges
/// stay where they are as the range moves (a chunk's cached result is
/// reused). The ceremony grouping takes half weeks: over ten million events
/// a month a whole week (2.3 million events) came close enough to the
/// memory limit to be refused now and then, half a week (1.3 million) stays
/// well within it. The user groupings take weeks: they need less memory,
/// and `u`'s chunks each join the whole history (read once per report).
pub fn chunks(req: &KpiRequest, chunking: Chunking) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let day = req.from.date_naive();
    let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
    let mut edge = monday.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let halves = chunking == Chunking::HalfWeeks && req.interval != Interval::Week;
    let mut out = Vec::new();
    while edge < req.to {
        let next = if halves && edge.weekday() == Weekday::Mon {
            edge + Duration::days(3)
        } else {
            let to_monday = 7 - i64::from(edge.weekday().num_days_from_monday());
            edge + Duration::days(to_monday)
        };
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

fn ceremonies(req: &KpiRequest) -> Stage {
    let margin = Duration::hours(1);
    let parts = chunks(req, Chunking::HalfWeeks)
        .into_iter()
        .map(|(from, to)| {
            let wide = within(
                req,
                (from - margin).max(req.from),
                (to + margin).min(req.to),
            );
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
    let merge = sums(req, "a0", KINDS);
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

/// `q`: series and totals in one statement. A quantile keeps every value
/// of its groups: each sign-in's duration is held once per grouping set
/// and quantile (six times with a breakdown). Cut into weeks plus a totals
/// pass, it held a third less but took about one and a half times as
/// long over ten million events.
fn quantiles(req: &KpiRequest) -> Stage {
    Stage {
        name: "q",
        parts: vec![Part::new(req, QUANTILES, Sets::Both)],
        merge: None,
        whole: statement(req, QUANTILES),
    }
}

/// `c`: half a week at a time, like `a` (without its margin: an event is
/// counted where it falls), then summed into the series and totals.
fn counts(req: &KpiRequest) -> Stage {
    Stage {
        name: "c",
        parts: chunks(req, Chunking::HalfWeeks)
            .into_iter()
            .map(|(from, to)| Part::new(&within(req, from, to), COUNTS, Sets::Both))
            .collect(),
        merge: Some(sums(req, "c0", COUNTED)),
        whole: sums(req, &format!("({COUNTS})"), COUNTED),
    }
}

/// The counts `n` of `rows` summed by `columns`, into the series and the
/// totals: how the chunks of a table whose counts add up (`a`, `c`) are
/// put together.
fn sums(req: &KpiRequest, rows: &str, columns: &str) -> String {
    statement(
        req,
        &format!("SELECT b, g, {columns}, sum(n) AS n FROM {rows} GROUP BY {{SETS({columns})}}"),
    )
}

/// The shared tables `statements` read, in the order they must be made. A
/// statement that names a table anywhere is taken to read it: a wider
/// guess only makes a table that is not needed.
pub fn stages(req: &KpiRequest, statements: &[&str]) -> Vec<Stage> {
    SHARED
        .iter()
        .filter(|t| statements.iter().any(|sql| mentions(sql, t.name)))
        .map(|t| (t.make)(req))
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
            chunks(&req(q), Chunking::HalfWeeks)
                .iter()
                .map(|(a, b)| format!("{}..{}", a.format("%d %H"), b.format("%d %H")))
                .collect()
        };
        // 2026-11-04 is a Wednesday; the 9th and 16th are Mondays, the 5th,
        // 12th and 19th Thursdays.
        assert_eq!(
            days("from=2026-11-04T06:00:00Z&to=2026-11-20T12:00:00Z"),
            [
                "04 06..05 00",
                "05 00..09 00",
                "09 00..12 00",
                "12 00..16 00",
                "16 00..19 00",
                "19 00..20 12"
            ]
        );
        assert_eq!(
            days("from=2026-11-04T06:00:00Z&to=2026-11-20T12:00:00Z&interval=hour"),
            days("from=2026-11-04T06:00:00Z&to=2026-11-20T12:00:00Z&interval=day")
        );
        // Weekly intervals, or weeks asked for: whole weeks only.
        assert_eq!(
            days("from=2026-11-04T06:00:00Z&to=2026-11-20T12:00:00Z&interval=week"),
            ["04 06..09 00", "09 00..16 00", "16 00..20 12"]
        );
        let weeks: Vec<_> = chunks(
            &req("from=2026-11-04T06:00:00Z&to=2026-11-20T12:00:00Z"),
            Chunking::Weeks,
        );
        assert_eq!(weeks.len(), 3);
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
        use crate::kpi::engine::expand;
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
