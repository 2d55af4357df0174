//! The ceremony table `a` and the counted events `c` as hourly rows for
//! every relying party and every breakdown at once, one UTC day per
//! statement (a day's **rollup**), and how a report makes its `a` and `c`
//! from them (see [`super::stages`]).
//!
//! A day's rollup does not depend on the request: a report of any relying
//! party, breakdown and interval reads the same rows (its `g` is one of
//! their breakdown columns, its `b` their hour bucketed) and sums them. So
//! a day is grouped once per version of the files it reads and its rows
//! kept in the result cache, by the first report that needs them or before
//! that by the rollup task after a commit (`kpi_rollups.rs`, calling
//! [`make_recent`]). Hours at the ends of a range that are not whole (a
//! range ending at the watermark) are grouped from the events by the same
//! statement over just those hours.
//!
//! A ceremony belongs to the hour of its first event and is judged by all
//! of its events, read up to an hour before and after (a ceremony is
//! assumed to last under an hour): at the ends of a report's range as
//! anywhere inside it, so that a day's rows are the same in every report.
//! A sign-in that starts at 23:59:59 and succeeds a few seconds later is
//! one successful ceremony of the day it started in.

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use keyshift_store::{Lane, QueryEngine};

use super::engine::{
    NO_BREAKDOWN, Part, breakdown, bucket_of, kpi_session, quote, rp_filter, statement, ts,
};
use super::history::Reading;
use super::parts::Cache;
use super::request::{By, Interval, KpiRequest};

/// The kinds of ceremony `a` is counted by.
pub(super) const KINDS: &str = "method, success_method, succeeded, error_name, fallback_reason, \
                     fallback_path, cross_device";

/// What a ceremony's events say of it (see [`ceremony`]).
const CEREMONY_KINDS: &str = "coalesce(max(method) FILTER (WHERE event_type = 'auth.started'),
                          max(method), max(fallback_from)) AS method,
                 max(method) FILTER (WHERE event_type = 'auth.succeeded') AS success_method,
                 bool_or(event_type = 'auth.succeeded') AS succeeded,
                 max(error_name) FILTER (WHERE event_type = 'auth.failed') AS error_name,
                 max(fallback_reason) AS fallback_reason,
                 max(concat(fallback_from, '→', fallback_to))
                     FILTER (WHERE event_type = 'auth.fallback') AS fallback_path,
                 coalesce(bool_or(cross_device), false) AS cross_device";

/// One ceremony per row, from the events of `e`: the `auth.*` events of one
/// relying party sharing an `attempt_id` (without one, an event is a
/// ceremony of its own), with `heads` and `first`, its first event's time.
/// Grouped by the two columns rather than a key made of them: building a
/// string per event cost more than the grouping.
pub(super) fn ceremony(heads: &str) -> String {
    format!(
        "SELECT {heads}, min(occurred_at) AS first, {CEREMONY_KINDS}
          FROM e WHERE event_type LIKE 'auth.%'
          GROUP BY rp_id, coalesce(attempt_id, event_id)"
    )
}

/// The kinds of event `c` is counted by.
pub(super) const COUNTED: &str = "event_type, recovery_channel, kind";

/// The events that KPIs count one by one: recovery starts (by channel),
/// support contacts and passkeys created (`kind`: `synced` or
/// `device_bound`, the BE flag).
pub(super) const COUNTED_EVENTS: &str =
    "event_type IN ('recovery.started', 'support.contacted', 'enrollment.succeeded')";

/// The [`COUNTED`] columns of an event (`kind` made from the BE flag).
pub(super) const COUNTED_COLUMNS: &str = "event_type, recovery_channel,
                 CASE WHEN event_type <> 'enrollment.succeeded' THEN NULL
                      WHEN credential_backup_eligible THEN 'synced'
                      ELSE 'device_bound' END AS kind";

/// The breakdowns a rollup row carries as columns `g_<by>`; the relying
/// party is its `rp_id`.
pub(super) const DIMS: [By; 5] = [
    By::Platform,
    By::Browser,
    By::FormFactor,
    By::Variant,
    By::RolloutId,
];

/// The breakdown value of a ceremony by `by`: the smallest its events
/// carry (they come from one client, as a rule), `unknown` (`none` for the
/// variant) when none does. Taken over the columns as stored: a breakdown
/// value made for every event first made a day's rollup a third slower.
pub(super) fn ceremony_breakdown(by: By) -> String {
    let (column, missing) = match by {
        By::Variant => ("rollout_variant", "none"),
        by => (by.column(), "unknown"),
    };
    format!("coalesce(CAST(min({column}) AS VARCHAR), '{missing}')")
}

fn dim(by: By) -> String {
    format!("g_{}", by.as_str())
}

/// `f` of every breakdown column, comma-separated.
fn dims(f: impl Fn(By) -> String) -> String {
    DIMS.map(f).join(", ")
}

/// One of the two tables made from rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    /// `a`: sign-in ceremonies by kind.
    Ceremonies,
    /// `c`: events counted by kind.
    Counts,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Ceremonies => "a",
            Self::Counts => "c",
        }
    }

    fn kinds(self) -> &'static str {
        match self {
            Self::Ceremonies => KINDS,
            Self::Counts => COUNTED,
        }
    }

    /// How far around `[x, y)` its statement reads.
    fn margin(self) -> Duration {
        match self {
            Self::Ceremonies => Duration::hours(1),
            Self::Counts => Duration::zero(),
        }
    }

    /// The rows of `[x, y)` (ceremonies whose first event, events that
    /// fall in it) of the relying party `rp` (a filter, or all), by hour,
    /// relying party, every breakdown and kind; `whole` says whether they
    /// are a whole day's.
    fn rows(self, x: DateTime<Utc>, y: DateTime<Utc>, rp: &str, whole: bool) -> String {
        let (lo, hi) = (x - self.margin(), y + self.margin());
        let (d0, d1) = read_days(lo, hi);
        let read = format!(
            "occurred_at >= {} AND occurred_at < {}
               AND event_date >= CAST({} AS DATE) AND event_date <= CAST({} AS DATE)",
            ts(lo),
            ts(hi),
            quote(&d0.to_string()),
            quote(&d1.to_string())
        );
        let hour = bucket_of(Interval::Hour, "occurred_at");
        let cols = dims(dim);
        let kinds = self.kinds();
        match self {
            Self::Ceremonies => format!(
                "WITH e AS (SELECT *, {hour} AS b FROM auth_events
                            WHERE {rp}event_type LIKE 'auth.%' AND {read})
                 SELECT b AS hour, rp_id, {cols}, {kinds}, count(*) AS n, {whole} AS whole
                 FROM ({})
                 WHERE first >= {} AND first < {}
                 GROUP BY b, rp_id, {cols}, {kinds}",
                ceremony(&format!(
                    "min(b) AS b, rp_id, {}",
                    dims(|by| format!("{} AS {}", ceremony_breakdown(by), dim(by)))
                )),
                ts(x),
                ts(y)
            ),
            Self::Counts => format!(
                "WITH e AS (SELECT {hour} AS hour, rp_id, {}, {COUNTED_COLUMNS}
                            FROM auth_events WHERE {rp}{COUNTED_EVENTS} AND {read})
                 SELECT hour, rp_id, {cols}, {kinds}, count(*) AS n, {whole} AS whole
                 FROM e GROUP BY hour, rp_id, {cols}, {kinds}",
                dims(|by| format!("{} AS {}", breakdown(by), dim(by)))
            ),
        }
    }

    /// The statement of `[x, y)`'s rows, with the days it reads.
    fn part(self, x: DateTime<Utc>, y: DateTime<Utc>, rp: &str, whole: bool) -> Part {
        let (from, to) = read_days(x - self.margin(), y + self.margin());
        Part {
            sql: self.rows(x, y, rp, whole),
            from: Some(from),
            to,
            shared: false,
            reads_h: false,
        }
    }

    /// `day`'s rollup: the same statement in every report.
    ///
    /// One statement for the day's ceremonies, also for those that end in
    /// the next day: so a commit to today makes yesterday's again as well.
    /// Made in two (the first 23 hours; the last, which reads the next
    /// day), only yesterday's last hour would be made again, but each of
    /// the two scans its days' whole files (the rows of a day are not in
    /// time order), and making a month took 14.0 s instead of 8.1 s.
    pub(super) fn day(self, day: NaiveDate) -> Part {
        let x = day_start(day);
        self.part(x, x + Duration::days(1), "", true)
    }

    /// The statements of `req`'s rows: the rollups of the days its whole
    /// hours fall in, and its hours that are not whole from their events.
    pub(super) fn parts(self, req: &KpiRequest) -> Vec<Part> {
        let rp = rp_filter(req);
        let (h0, h1) = whole_hours(req);
        if h0 >= h1 {
            return vec![self.part(req.from, req.to, &rp, false)];
        }
        let mut out = Vec::new();
        if req.from < h0 {
            out.push(self.part(req.from, h0, &rp, false));
        }
        let (mut day, last) = read_days(h0, h1);
        while day <= last {
            out.push(self.day(day));
            day += Duration::days(1);
        }
        if h1 < req.to {
            out.push(self.part(h1, req.to, &rp, false));
        }
        out
    }

    /// The statement over the parts' rows (`a0` or `c0`) making the table
    /// for `req`: the relying party's rows of its range, bucketed into its
    /// intervals, counted by its breakdown, as series and totals.
    pub(super) fn merge(self, req: &KpiRequest) -> String {
        let (h0, h1) = whole_hours(req);
        let g = match req.by {
            None => NO_BREAKDOWN.to_owned(),
            Some(By::RpId) => breakdown(By::RpId),
            Some(by) => dim(by),
        };
        let kinds = self.kinds();
        statement(
            req,
            &format!(
                "SELECT b, g, {kinds}, sum(n) AS n
                 FROM (SELECT {} AS b, {g} AS g, {kinds}, n FROM {}0
                       WHERE {}(NOT whole OR (hour >= {} AND hour < {})))
                 GROUP BY {{SETS({kinds})}}",
                bucket_of(req.interval, "hour"),
                self.name(),
                rp_filter(req),
                ts(h0),
                ts(h1)
            ),
        )
    }
}

/// What one pass of [`make_recent`] did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Rollup statements run (and kept).
    pub made: usize,
    /// The days whose rollups could not be made, with why; the other days
    /// were still made.
    pub failed: Vec<(NaiveDate, keyshift_store::StoreError)>,
}

/// Makes the rollups (`a`, `c`, and `u`'s and `q`'s, see `user_days.rs` and
/// `quantile_days.rs`) of the table's `days` most recent days that the
/// result cache lacks, the newest first, each day in its own query slot of
/// the ad-hoc lane. Without a result cache there is nowhere to keep them:
/// nothing to do. Only listing the days can fail the pass as a whole.
pub async fn make_recent(engine: &QueryEngine, days: usize) -> keyshift_store::Result<Pass> {
    let mut pass = Pass::default();
    let Some(cache) = engine.result_cache().cloned() else {
        return Ok(pass);
    };
    // The days that lack a rollup, looked up in one slot: a pass after a
    // commit has one or two to make, not a slot and a session for each
    // of the recent days.
    let lacking = cache.clone();
    let listed = engine
        .run_with_tables(Lane::Adhoc, move |_, tables| async move {
            let cache = Cache::new(Some(lacking), &tables);
            let missing = |day: &NaiveDate| day_parts(*day).any(|(_, p)| cache.get(&p).is_none());
            Ok(cache
                .days()
                .into_iter()
                .rev()
                .take(days)
                .filter(missing)
                .collect::<Vec<_>>())
        })
        .await?;
    for day in listed {
        let cache = cache.clone();
        let made = engine
            .run_with_tables(Lane::Adhoc, move |ctx, tables| async move {
                kpi_session(&ctx)?;
                let cache = Cache::new(Some(cache), &tables);
                // `u`'s rollup reads every relying party's history up to
                // the day's end.
                let mut history = Reading::every_rp(day_start(day) + Duration::days(1));
                let mut made = 0;
                for (name, part) in day_parts(day) {
                    if cache.get(&part).is_none() {
                        if part.reads_h {
                            history.ensure(&ctx).await?;
                        }
                        cache.compute(&ctx, name, &part).await?;
                        made += 1;
                    }
                }
                Ok(made)
            })
            .await;
        match made {
            Ok(n) => pass.made += n,
            Err(e) => pass.failed.push((day, e)),
        }
    }
    Ok(pass)
}

/// The rollups of `day`, named by the table they make.
fn day_parts(day: NaiveDate) -> impl Iterator<Item = (&'static str, Part)> {
    [Table::Ceremonies, Table::Counts]
        .into_iter()
        .map(move |t| (t.name(), t.day(day)))
        .chain([
            ("u", super::user_days::day(day)),
            ("q", super::quantile_days::day(day)),
        ])
}

/// Midnight UTC starting `day`.
pub(super) fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The first and last day of `[lo, hi)`.
fn read_days(lo: DateTime<Utc>, hi: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let last = (hi - Duration::microseconds(1)).max(lo);
    (lo.date_naive(), last.date_naive())
}

/// The whole hours of `req`'s range: from the first hour boundary at or
/// after `from` to the last at or before `to` (empty when they cross).
fn whole_hours(req: &KpiRequest) -> (DateTime<Utc>, DateTime<Utc>) {
    let hour = Duration::hours(1);
    let floor = |t: DateTime<Utc>| t.duration_trunc(hour).unwrap_or(t);
    let f = floor(req.from);
    let h0 = if f == req.from { f } else { f + hour };
    (h0, floor(req.to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::request::checked;

    fn spans(req: &str, table: Table) -> Vec<(bool, Option<String>, String)> {
        table
            .parts(&checked(req))
            .into_iter()
            .map(|p| {
                let whole = p.sql.contains("true AS whole");
                (whole, p.from.map(|d| d.to_string()), p.to.to_string())
            })
            .collect()
    }

    #[test]
    fn a_range_is_whole_days_from_rollups_and_its_odd_hours_from_events() {
        let got = spans(
            "from=2026-11-02T06:30:00Z&to=2026-11-04T00:00:00Z",
            Table::Counts,
        );
        assert_eq!(
            got,
            [
                (false, Some("2026-11-02".into()), "2026-11-02".into()),
                (true, Some("2026-11-02".into()), "2026-11-02".into()),
                (true, Some("2026-11-03".into()), "2026-11-03".into()),
            ]
        );
        // Ceremonies read an hour either side: a day's rollup depends on
        // the days around it.
        let got = spans(
            "from=2026-11-02T00:00:00Z&to=2026-11-03T12:15:00Z",
            Table::Ceremonies,
        );
        assert_eq!(
            got,
            [
                (true, Some("2026-11-01".into()), "2026-11-03".into()),
                (true, Some("2026-11-02".into()), "2026-11-04".into()),
                (false, Some("2026-11-03".into()), "2026-11-03".into()),
            ]
        );
        // Inside one hour: from the events only.
        let got = spans(
            "from=2026-11-02T06:10:00Z&to=2026-11-02T06:50:00Z",
            Table::Counts,
        );
        assert_eq!(
            got,
            [(false, Some("2026-11-02".into()), "2026-11-02".into())]
        );
    }

    #[test]
    fn a_days_rollup_is_the_same_statement_in_every_report() {
        let one = Table::Ceremonies.parts(&checked(
            "rp_id=x.example&from=2026-11-01T00:00:00Z&to=2026-11-04T00:00:00Z&by=platform",
        ));
        let two = Table::Ceremonies.parts(&checked(
            "from=2026-11-02T00:00:00Z&to=2026-11-03T07:00:00Z&interval=hour",
        ));
        assert_eq!(one[1].sql, two[0].sql);
        assert!(!one[1].sql.contains("x.example"));
        // Hours that are not whole are the relying party's only.
        let edge = Table::Ceremonies.parts(&checked(
            "rp_id=x.example&from=2026-11-01T00:00:00Z&to=2026-11-01T00:30:00Z",
        ));
        assert!(edge[0].sql.contains("rp_id = 'x.example'"));
    }

    #[test]
    fn whole_hours_round_inwards() {
        let r = checked("from=2026-11-02T06:30:00Z&to=2026-11-02T09:45:00Z");
        let (h0, h1) = whole_hours(&r);
        assert_eq!(h0.to_rfc3339(), "2026-11-02T07:00:00+00:00");
        assert_eq!(h1.to_rfc3339(), "2026-11-02T09:00:00+00:00");
    }
}
