//! `q`'s series by day from **day rollups** (see [`super::stages`]): for
//! one UTC day, the median and 95th percentile of the successful sign-ins'
//! durations per method, for every relying party and for all of them, and
//! for every breakdown, so that the statement is the same in every report.
//!
//! A quantile does not add up over days or relying parties, so a day's
//! rows serve the series of reports by day only, and carry their
//! relying-party scope: one relying party's (`scope` is its id) or all of
//! them (`*`). The totals over the range still take every duration of the
//! range; without the series' grouping set, that pass holds each duration
//! two times instead of three (once without a breakdown).
//!
//! Made by the rollup task with the other rollups of a day; a report uses
//! the days the cache holds. When it holds none of the range's, the report
//! takes `q` in one pass over the range as before: cut into runs of days
//! and a totals pass, it took half as long again.

use std::cell::Cell;

use chrono::{Duration, NaiveDate};

use super::engine::{NO_INTERVAL, Part, Sets, quote, ts};
use super::request::{By, Interval, KpiRequest};
use super::rollup::day_start;
use super::stages::Held;
use super::user_days::{breakdowns, dim, raw_columns, series_of};

/// The scope of the rows of all relying parties.
const ALL: &str = "*";

/// The durations `q` reads, and how it names their quantiles.
const QUANTILE_COLUMNS: &str = "median_and_p95(duration_ms)['p50'] AS p50,
                 median_and_p95(duration_ms)['p95'] AS p95,
                 count(duration_ms) AS n";

/// `q` made from the events of a request's range (`e`), with the columns of
/// the rollups: no `scope` (the request's own relying party), `dim` the
/// request's. For the totals only (`Sets::Totals`), `b` is not grouped by.
pub(super) fn statement_sql(by: Option<By>, sets: Sets) -> String {
    let b = match sets {
        Sets::Totals => NO_INTERVAL,
        Sets::Both | Sets::Series => "b",
    };
    format!(
        "SELECT {b} AS b, g, CAST(NULL AS VARCHAR) AS scope, {} AS dim, method,
                {QUANTILE_COLUMNS}
          FROM e WHERE event_type = 'auth.succeeded' AND duration_ms IS NOT NULL
          GROUP BY {{SETS(method)}}",
        quote(dim(by))
    )
}

/// `day`'s rollup: `b` (the day), `g`, `scope`, `dim`, `method`, `p50`,
/// `p95`, `n`. Each duration of the day is under twelve rows: its relying
/// party's and all relying parties', each with no breakdown (`dim` `none`,
/// `g` the relying party or `*`) and under each breakdown.
fn rollup_sql(day: NaiveDate) -> String {
    let (x, y) = (day_start(day), day_start(day) + Duration::days(1));
    let raw = raw_columns();
    // Its relying party's rows, then all relying parties'; without a
    // breakdown, `g` is the scope.
    let rows: Vec<(String, String, String)> = ["rp_id".to_owned(), quote(ALL)]
        .into_iter()
        .flat_map(|scope| {
            breakdowns(&scope)
                .into_iter()
                .map(move |(dim, g)| (scope.clone(), dim, g))
        })
        .collect();
    let column = |pick: fn(&(String, String, String)) -> &String| {
        rows.iter()
            .map(pick)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "WITH s AS (SELECT rp_id, duration_ms, method, {raw}
                    FROM auth_events
                    WHERE occurred_at >= {x} AND occurred_at < {y}
                      AND event_date = CAST({d} AS DATE)
                      AND event_type = 'auth.succeeded' AND duration_ms IS NOT NULL),
              un AS (SELECT duration_ms, method,
                            unnest(make_array({scopes})) AS scope,
                            unnest(make_array({dims})) AS dim,
                            unnest(make_array({values})) AS g
                     FROM s)
         SELECT arrow_cast({x}, 'Timestamp(Microsecond, Some(\"UTC\"))') AS b,
                g, scope, dim, method, {QUANTILE_COLUMNS}
         FROM un GROUP BY scope, dim, g, method",
        x = ts(x),
        y = ts(y),
        d = quote(&day.to_string()),
        scopes = column(|r| &r.0),
        dims = column(|r| &r.1),
        values = column(|r| &r.2),
    )
}

/// `day`'s rollup as a part: the same statement in every report, keyed by
/// the day's files.
pub(super) fn day(day: NaiveDate) -> Part {
    Part {
        sql: rollup_sql(day),
        from: Some(day),
        to: day,
        shared: false,
        reads_h: false,
    }
}

/// The parts of `q`: by day, the series of the whole days the cache holds
/// from their rollups and of the other days from their events, then the
/// totals; by hour or week, or when the cache holds none of the days,
/// series and totals in one pass.
pub(super) fn parts(req: &KpiRequest, have: Held<'_>) -> Vec<Part> {
    let one_pass = || {
        vec![Part::new(
            req,
            &statement_sql(req.by, Sets::Both),
            Sets::Both,
        )]
    };
    if req.interval != Interval::Day {
        return one_pass();
    }
    let sql = statement_sql(req.by, Sets::Series);
    let any = Cell::new(false);
    let noted = |p: &Part| {
        let held = have(p);
        any.set(any.get() || held);
        held
    };
    let mut parts = series_of(req, &sql, &noted, day);
    if !any.get() {
        return one_pass();
    }
    let totals = statement_sql(req.by, Sets::Totals);
    parts.push(Part::new(req, &totals, Sets::Totals));
    parts
}

/// The statement over the parts' rows (`q0`) making `q`: the rows of the
/// request's scope and breakdown (statements' rows, without a scope, are
/// the request's already).
pub(super) fn merge(req: &KpiRequest) -> String {
    let scope = match (&req.rp_id, req.by) {
        (Some(rp), _) => format!("scope = {}", quote(rp)),
        // By relying party: each one's own rows.
        (None, Some(By::RpId)) => format!("scope <> {}", quote(ALL)),
        (None, _) => format!("scope = {}", quote(ALL)),
    };
    let g = if req.by.is_none() { "'all' AS g" } else { "g" };
    format!(
        "SELECT b, {g}, method, p50, p95, n FROM q0
         WHERE (scope IS NULL OR {scope}) AND dim = {}",
        quote(dim(req.by))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::request::checked;

    fn held(p: &Part) -> bool {
        p.sql.contains("unnest")
    }

    #[test]
    fn without_any_day_held_q_is_one_pass() {
        let req = checked("from=2026-11-02T00:00:00Z&to=2026-11-09T00:00:00Z");
        let got = parts(&req, &|_| false);
        assert_eq!(got.len(), 1);
        assert!(
            got[0]
                .sql
                .contains("GROUPING SETS ((b, g, method), (g, method))")
        );
        // With days held: their rollups, the rest as series, then the totals.
        let got = parts(&req, &|p| held(p) && p.to.to_string() != "2026-11-08");
        let kinds: Vec<bool> = got.iter().map(held).collect();
        assert_eq!(kinds, [true, true, true, true, true, true, false, false]);
        assert!(got[6].sql.contains("GROUPING SETS ((b, g, method))"));
        assert!(got[7].sql.contains("GROUPING SETS ((g, method))"));
    }

    #[test]
    fn a_days_rollup_reads_that_day_only_and_is_the_same_in_every_report() {
        let a = day(NaiveDate::from_ymd_opt(2026, 11, 2).expect("date"));
        let one = parts(
            &checked(
                "rp_id=x.example&from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z&by=platform",
            ),
            &held,
        );
        assert_eq!(one[0].sql, a.sql);
        assert_eq!((a.from, a.to), (Some(a.to), a.to));
        assert!(!a.sql.contains("x.example"));
    }

    #[test]
    fn the_merge_keeps_the_requests_scope_and_breakdown() {
        let range = "from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z";
        let m = |q: &str| merge(&checked(&format!("{range}{q}")));
        assert!(m("&rp_id=x.example&by=rp_id").contains("scope = 'x.example')"));
        assert!(m("&by=rp_id").contains("scope <> '*') AND dim = 'none'"));
        let all = m("");
        assert!(all.contains("'all' AS g") && all.contains("scope = '*') AND dim = 'none'"));
        assert!(m("&by=browser").contains("dim = 'browser'"));
    }
}
