//! Weekly cohorts by first enrollment offer, and how fast each adopts.
//!
//! A user's **first offer** is their earliest `enrollment.offered` of all
//! history (up to the end of the range); their **enrolment** is their first
//! `enrollment.succeeded` at or after it. A cohort is the users whose first
//! offer falls in one ISO week of the range. Users who already held a
//! passkey when first offered (an `enrollment.succeeded` before it) are in
//! no cohort: the offer did not make them adopt; the report counts them
//! apart. Week `k` since offer is calendar weeks: week 0 is the cohort's
//! own week, and a user who enrolled in the following week adopted in week 1.

use polars::prelude::*;

use crate::error::{Result, polars};
use crate::load::{WEEK_US, is, week};

/// One cohort.
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    /// Monday 00:00 UTC of the week of first offer (µs).
    pub week: i64,
    /// Users first offered in that week, less those who already held a passkey.
    pub users: u64,
    /// Users of the cohort who enrolled before the end of the range.
    pub enrolled: u64,
    /// Median hours from first offer to enrolment, over those who enrolled.
    pub median_hours: Option<f64>,
    /// `enrolled_by[k]`: users who enrolled by the end of week `k` since
    /// offer, for every week `k` that began before the end of the range.
    pub enrolled_by: Vec<u64>,
}

/// Cumulative adoption of every cohort, and the figures over all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Cohorts {
    /// One per week of the range with a first offer, oldest first.
    pub cohorts: Vec<Cohort>,
    /// Median hours from offer to enrolment over every cohort's enrolled users.
    pub median_hours: Option<f64>,
    /// Users first offered in the range who already held a passkey.
    pub already_holders: u64,
}

impl Cohort {
    /// Whether week `k` since offer had ended by `to` (µs).
    pub fn complete(&self, k: usize, to: i64) -> bool {
        self.week + (k as i64 + 1) * WEEK_US <= to
    }
}

const SECTION: &str = "cohorts";

/// One row per user first offered in `[from, to)`: `cohort`, `offered_at`,
/// `enrolled_at` (null if not yet), `held_before`.
fn offered_users(events: LazyFrame, from: i64, to: i64) -> LazyFrame {
    let history = events.filter(col("t").lt(lit(to)).and(col("user_key").is_not_null()));
    let offers = history
        .clone()
        .filter(is("enrollment.offered"))
        .group_by([col("user_key")])
        .agg([col("t").min().alias("offered_at")]);
    let enrolments = history
        .filter(is("enrollment.succeeded"))
        .select([col("user_key"), col("t").alias("enrolled_t")]);
    offers
        .join(
            enrolments,
            [col("user_key")],
            [col("user_key")],
            JoinArgs::new(JoinType::Left),
        )
        .group_by([col("user_key")])
        .agg([
            col("offered_at").first(),
            col("enrolled_t")
                .filter(col("enrolled_t").gt_eq(col("offered_at")))
                .min()
                .alias("enrolled_at"),
            col("enrolled_t")
                .lt(col("offered_at"))
                .any(true)
                .alias("held_before"),
        ])
        .filter(
            col("offered_at")
                .gt_eq(lit(from))
                .and(col("offered_at").lt(lit(to))),
        )
        .with_column(week(col("offered_at")).alias("cohort"))
}

/// The cohorts of `[from, to)`.
pub fn cohorts(events: LazyFrame, from: i64, to: i64) -> Result<Cohorts> {
    let users = offered_users(events, from, to)
        .collect()
        .map_err(polars(SECTION))?
        .lazy();
    let hours = ((col("enrolled_at") - col("offered_at")).cast(DataType::Float64)
        / lit(3_600_000_000.0))
    .alias("hours");
    let members = users.clone().filter(col("held_before").not());
    let summary = members
        .clone()
        .group_by([col("cohort")])
        .agg([
            len().alias("users"),
            col("enrolled_at").count().alias("enrolled"),
            hours.clone().median().alias("median_hours"),
        ])
        .sort(["cohort"], SortMultipleOptions::default())
        .collect()
        .map_err(polars(SECTION))?;
    // Users per cohort and week of enrolment since offer.
    let by_week = members
        .clone()
        .filter(col("enrolled_at").is_not_null())
        .select([
            col("cohort"),
            (week(col("enrolled_at")) - col("cohort"))
                .floor_div(lit(WEEK_US))
                .alias("k"),
        ])
        .group_by([col("cohort"), col("k")])
        .agg([len().alias("n")])
        .collect()
        .map_err(polars(SECTION))?;
    let overall = members
        .select([hours.median()])
        .collect()
        .map_err(polars(SECTION))?;
    let already = users
        .filter(col("held_before"))
        .select([len()])
        .collect()
        .map_err(polars(SECTION))?;

    let get = |df: &DataFrame, name: &str| -> Result<Column> {
        df.column(name).cloned().map_err(polars(SECTION))
    };
    let (week_col, users_col, enrolled_col, median_col) = (
        get(&summary, "cohort")?,
        get(&summary, "users")?
            .cast(&DataType::UInt64)
            .map_err(polars(SECTION))?,
        get(&summary, "enrolled")?
            .cast(&DataType::UInt64)
            .map_err(polars(SECTION))?,
        get(&summary, "median_hours")?,
    );
    let (weeks, n_users, n_enrolled, medians) = (
        week_col.i64().map_err(polars(SECTION))?,
        users_col.u64().map_err(polars(SECTION))?,
        enrolled_col.u64().map_err(polars(SECTION))?,
        median_col.f64().map_err(polars(SECTION))?,
    );
    let (bw_cohort, bw_k, bw_n) = (
        get(&by_week, "cohort")?,
        get(&by_week, "k")?,
        get(&by_week, "n")?
            .cast(&DataType::UInt64)
            .map_err(polars(SECTION))?,
    );
    let counts: Vec<(i64, i64, u64)> = bw_cohort
        .i64()
        .map_err(polars(SECTION))?
        .iter()
        .zip(bw_k.i64().map_err(polars(SECTION))?.iter())
        .zip(bw_n.u64().map_err(polars(SECTION))?.iter())
        .filter_map(|((c, k), n)| Some((c?, k?, n?)))
        .collect();
    let mut out = Vec::with_capacity(summary.height());
    for i in 0..summary.height() {
        let Some(week) = weeks.get(i) else { continue };
        out.push(Cohort {
            week,
            users: n_users.get(i).unwrap_or(0),
            enrolled: n_enrolled.get(i).unwrap_or(0),
            median_hours: medians.get(i),
            enrolled_by: curve(week, to, &counts),
        });
    }
    let median_hours = get(&overall, "hours")?
        .f64()
        .map_err(polars(SECTION))?
        .get(0);
    let already_holders = get(&already, "len")?
        .cast(&DataType::UInt64)
        .map_err(polars(SECTION))?
        .u64()
        .map_err(polars(SECTION))?
        .get(0)
        .unwrap_or(0);
    Ok(Cohorts {
        cohorts: out,
        median_hours,
        already_holders,
    })
}

/// Cumulative enrolments of the cohort of `week` by week since offer, for
/// every week that began before `to`, from `(cohort, k, users)` counts.
pub fn curve(week: i64, to: i64, counts: &[(i64, i64, u64)]) -> Vec<u64> {
    let weeks = usize::try_from((to - week + WEEK_US - 1) / WEEK_US).unwrap_or(0);
    let mut total = 0;
    (0..weeks)
        .map(|k| {
            total += counts
                .iter()
                .filter(|&&(c, kk, _)| c == week && kk == k as i64)
                .map(|&(_, _, n)| n)
                .sum::<u64>();
            total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_curve_accumulates_and_stops_at_the_range_end() {
        let w = 10 * WEEK_US;
        let counts = [(w, 0, 2), (w, 2, 1), (w + WEEK_US, 0, 5)];
        // The range ends half-way through week 3 since offer: weeks 0–3 shown.
        assert_eq!(curve(w, w + 3 * WEEK_US + 1, &counts), vec![2, 2, 3, 3]);
        assert_eq!(curve(w, w + 3 * WEEK_US, &counts), vec![2, 2, 3]);
        assert_eq!(curve(w + WEEK_US, w + 2 * WEEK_US, &counts), vec![5]);
    }
}
