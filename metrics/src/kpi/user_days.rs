//! `u`'s series by day from **day rollups** (see [`super::users`]): for one
//! UTC day, the users seen by kind, for every relying party and every
//! breakdown at once, so that the statement is the same in every report.
//!
//! A day's users hold what a report by day asks of `u` for that day: who
//! was seen, what their events of the day say and what they hold at the
//! day's end. Those counts do not add up over days (a user seen on two
//! days is one user of the week), so they serve reports by day only; by
//! hour or week, and for the totals over the range, `u` still groups the
//! events by user.
//!
//! The rollup task makes them (`kpi_rollups.rs`, through
//! [`super::rollup::make_recent`]); a report uses the days the cache holds
//! and groups the others' events itself, a week of them at a time, as it
//! would without rollups: a day's rollup groups its users once per
//! breakdown and reads the history up to that day (0.3–0.7 s a day over
//! ten million events a month, against about 0.1 s a day for grouping
//! them for one report), which a report that made its own would pay for
//! every day it lacks.
//!
//! A day's rollup reads the credential history of every relying party up
//! to the day's end, so its result is keyed by every earlier day as well.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::engine::{HISTORY_TABLE, Part, Sets, breakdown, quote, ts};
use super::request::{By, KpiRequest};
use super::rollup::{DIMS, day_start};
use super::stages::{Held, chunks, within};
use super::users::{HELD, hold_bits, kind_columns, user_flags};

/// The `dim` of rows without a breakdown: one row per relying party, with
/// the relying party as `g` (what a report by `rp_id` groups by).
const NONE: &str = "none";

/// The `dim` of the rows a request reads.
pub(super) fn dim(by: Option<By>) -> &'static str {
    match by {
        None | Some(By::RpId) => NONE,
        Some(by) => by.as_str(),
    }
}

/// The raw breakdown columns a day's rollup groups by.
pub(super) fn raw_columns() -> String {
    DIMS.map(By::column).join(", ")
}

/// Each `dim` of a rollup row (quoted) with the expression of its `g` over
/// the raw columns: [`NONE`] first, whose `g` is `none_g`, then every
/// breakdown.
pub(super) fn breakdowns(none_g: &str) -> Vec<(String, String)> {
    std::iter::once((quote(NONE), none_g.to_owned()))
        .chain(DIMS.map(|by| (quote(by.as_str()), breakdown(by))))
        .collect()
}

/// `day`'s rollup: `b` (the day), `g`, `rp_id`, `dim`, `kind` (the bits of
/// `users.rs`), `enroll_error` and `n`, the users of that kind. Every user
/// with an event of the day has one row per `dim`, under each breakdown
/// value their events carry.
///
/// The events are grouped by user and every breakdown column once, and
/// those rows (about one per user a day) by user again once per `dim`: the
/// second grouping through one column pair made by `unnest` rather than
/// grouping sets (0.7 s a day against 0.8–1.1 s in `keyshift sql`) or a
/// union (which makes the rows under it once per branch).
fn rollup_sql(day: NaiveDate) -> String {
    let (x, y) = (day_start(day), day_start(day) + Duration::days(1));
    let raw = raw_columns();
    let (dims, values): (Vec<String>, Vec<String>) = breakdowns("rp_id").into_iter().unzip();
    format!(
        "WITH ud AS (SELECT rp_id, user_key, {raw}, {flags}
                     FROM auth_events
                     WHERE occurred_at >= {x} AND occurred_at < {y}
                       AND event_date = CAST({d} AS DATE) AND user_key IS NOT NULL
                     GROUP BY rp_id, user_key, {raw}),
              us AS (SELECT user_key FROM ud GROUP BY user_key),
              hist AS (SELECT us.user_key, {HELD}
                       FROM (SELECT * FROM {HISTORY_TABLE} WHERE occurred_at < {y}) h
                       RIGHT JOIN us ON us.user_key = h.user_key
                       GROUP BY us.user_key),
              un AS (SELECT ud.rp_id, ud.user_key, ud.enroll_error,
                            ud.flags | {hold} AS bits,
                            unnest(make_array({dims})) AS dim,
                            unnest(make_array({values})) AS g
                     FROM hist JOIN ud ON hist.user_key = ud.user_key),
              per AS (SELECT rp_id, dim, g, bit_or(bits) AS kind,
                             max(enroll_error) AS enroll_error
                      FROM un GROUP BY rp_id, dim, g, user_key)
         SELECT arrow_cast({x}, 'Timestamp(Microsecond, Some(\"UTC\"))') AS b,
                g, rp_id, dim, kind, enroll_error, count(*) AS n
         FROM per GROUP BY rp_id, dim, g, kind, enroll_error",
        flags = user_flags(),
        x = ts(x),
        y = ts(y),
        d = quote(&day.to_string()),
        hold = hold_bits(),
        dims = dims.join(", "),
        values = values.join(", "),
    )
}

/// `day`'s rollup as a part: the same statement in every report, keyed by
/// every day up to `day` (it reads the history).
pub(super) fn day(day: NaiveDate) -> Part {
    Part {
        sql: rollup_sql(day),
        from: None,
        to: day,
        shared: false,
        reads_h: true,
    }
}

/// The series parts of `u` by day: the days of the range that are whole
/// and whose rollup the cache holds (`have`), and the others grouped from
/// their events by `sql` (`u`'s series statement), each run of them within
/// one week (the chunks of `stages.rs`, within the memory limit).
pub(super) fn series(req: &KpiRequest, sql: &str, have: Held<'_>) -> Vec<Part> {
    series_of(req, sql, have, day)
}

/// [`series`] with the rollups `rollup` makes.
pub(super) fn series_of(
    req: &KpiRequest,
    sql: &str,
    have: Held<'_>,
    rollup: fn(NaiveDate) -> Part,
) -> Vec<Part> {
    let mut out = Vec::new();
    for (a, b) in chunks(req) {
        let mut run: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
        let mut date = a.date_naive();
        while day_start(date) < b {
            let (s, e) = (day_start(date), day_start(date) + Duration::days(1));
            let part = (s >= a && e <= b).then(|| rollup(date)).filter(|p| have(p));
            match part {
                Some(p) => {
                    if let Some((x, y)) = run.take() {
                        out.push(Part::new(&within(req, x, y), sql, Sets::Series));
                    }
                    out.push(p);
                }
                None => run = Some((run.map_or(s.max(a), |r| r.0), e.min(b))),
            }
            date += Duration::days(1);
        }
        if let Some((x, y)) = run {
            out.push(Part::new(&within(req, x, y), sql, Sets::Series));
        }
    }
    out
}

/// The statement over the parts' rows (`u0`) making `u`: the rows of the
/// request's relying party (rollups hold every one; the other parts only
/// its own, with no `rp_id`) and breakdown, summed over relying parties
/// (a user's key is of one relying party), with the columns of `u`.
pub(super) fn merge(req: &KpiRequest) -> String {
    let rp = req
        .rp_id
        .as_deref()
        .map(|r| format!("(rp_id IS NULL OR rp_id = {}) AND ", quote(r)))
        .unwrap_or_default();
    // Without a breakdown, a rollup's `g` is its relying party.
    let (g, by_g) = match req.by {
        None => ("'all' AS g", ""),
        Some(_) => ("g", "g, "),
    };
    format!(
        "SELECT b, {g}, {}, enroll_error, sum(n) AS n
         FROM u0 WHERE {rp}dim = {}
         GROUP BY b, {by_g}kind, enroll_error",
        kind_columns("kind"),
        quote(dim(req.by)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::request::checked;

    /// The parts of a range by day, as `R <day>` (a rollup) or `E <from>..<to>`
    /// (grouped from the events), given the days the cache holds.
    fn parts(query: &str, held: &[&str]) -> Vec<String> {
        let req = checked(query);
        let have = |p: &Part| held.contains(&p.to.to_string().as_str()) && p.from.is_none();
        series(&req, "SELECT 1", &have)
            .iter()
            .map(|p| {
                if p.sql.contains("unnest") {
                    format!("R {}", p.to)
                } else {
                    // A series part's range is in its prelude: its days.
                    format!(
                        "E {}..{}",
                        p.from.map(|d| d.to_string()).unwrap_or_default(),
                        p.to
                    )
                }
            })
            .collect()
    }

    #[test]
    fn whole_days_held_come_from_rollups_and_the_rest_from_events_a_week_at_most() {
        // 2026-11-04 is a Wednesday; the 9th is a Monday.
        let got = parts(
            "from=2026-11-04T06:00:00Z&to=2026-11-11T12:00:00Z",
            &[
                "2026-11-04",
                "2026-11-05",
                "2026-11-06",
                "2026-11-10",
                "2026-11-11",
            ],
        );
        assert_eq!(
            got,
            [
                // The 4th is not whole, the 11th neither.
                "E 2026-11-04..2026-11-04",
                "R 2026-11-05",
                "R 2026-11-06",
                // Not held: the 7th and 8th, cut at Monday the 9th.
                "E 2026-11-07..2026-11-08",
                "E 2026-11-09..2026-11-09",
                "R 2026-11-10",
                "E 2026-11-11..2026-11-11",
            ]
        );
        // Nothing held: a week of events at a time, as by hour or week.
        let none = parts("from=2026-11-04T06:00:00Z&to=2026-11-11T12:00:00Z", &[]);
        assert_eq!(
            none,
            ["E 2026-11-04..2026-11-08", "E 2026-11-09..2026-11-11"]
        );
    }

    #[test]
    fn a_days_rollup_is_the_same_statement_in_every_report() {
        let held = |p: &Part| p.from.is_none();
        let one = series(
            &checked(
                "rp_id=x.example&from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z&by=platform",
            ),
            "SELECT 1",
            &held,
        );
        let two = series(
            &checked("from=2026-11-03T00:00:00Z&to=2026-11-05T00:00:00Z"),
            "SELECT 2",
            &held,
        );
        assert_eq!(one[1].sql, two[0].sql);
        assert!(!one[1].sql.contains("x.example"));
        // It reads the history, so it is keyed by every day before it.
        assert!(one[1].reads_h && one[1].from.is_none());
    }

    #[test]
    fn the_merge_keeps_the_requests_party_and_breakdown() {
        let m = merge(&checked(
            "rp_id=x.example&from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z&by=rp_id",
        ));
        assert!(
            m.contains("(rp_id IS NULL OR rp_id = 'x.example') AND dim = 'none'"),
            "{m}"
        );
        let m = merge(&checked(
            "from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z",
        ));
        assert!(
            m.contains("'all' AS g") && m.contains("WHERE dim = 'none'"),
            "{m}"
        );
        let m = merge(&checked(
            "from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z&by=variant",
        ));
        assert!(
            m.contains("dim = 'variant'") && m.contains("GROUP BY b, g, kind"),
            "{m}"
        );
    }
}
