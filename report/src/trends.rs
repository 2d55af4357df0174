//! Week-by-week trends: the credential mix, recoveries, support contacts
//! and at-risk holders, each counted as the KPI module counts the KPI of the
//! same name with `interval=week` (the names are in each function's doc).
//!
//! Every frame has a `week` column: Monday 00:00 UTC of the week, in µs (the
//! first and last weeks of the range may be partial).

use polars::prelude::*;

use crate::error::{Result, polars};
use crate::load::{
    WEEK_US, counts, full_join, is, passkey_counts, per_thousand, ratio, week, within,
};

fn weekly(range: LazyFrame) -> LazyFrame {
    range.with_column(week(col("t")).alias("week"))
}

/// Passkeys created per week, synced (BE = 1) or device-bound — the KPI
/// `credential_mix`.
pub fn credential_mix(range: LazyFrame) -> Result<DataFrame> {
    weekly(range)
        .filter(is("enrollment.succeeded"))
        .group_by([col("week")])
        .agg(passkey_counts())
        .with_columns(counts(&["passkeys", "synced"]))
        .select([
            col("week"),
            col("passkeys"),
            col("synced"),
            (col("passkeys") - col("synced")).alias("device_bound"),
            ratio(col("synced"), col("passkeys")).alias("synced_share"),
        ])
        .sort(["week"], SortMultipleOptions::default())
        .collect()
        .map_err(polars("credential mix"))
}

/// Distinct users with a successful sign-in, per week.
fn active_users(range: LazyFrame) -> LazyFrame {
    range
        .filter(is("auth.succeeded").and(col("user_key").is_not_null()))
        .group_by([col("week")])
        .agg([col("user_key").n_unique().alias("active_users")])
}

/// Recovery starts and completions per week and channel, with the week's
/// active users — the KPI `recovery_per_1k_users`.
pub fn recovery(range: LazyFrame) -> Result<DataFrame> {
    let w = weekly(range);
    let channel = col("recovery_channel")
        .fill_null(lit("unknown"))
        .alias("channel");
    let flows = w
        .clone()
        .filter(col("event_type").str().starts_with(lit("recovery.")))
        .with_column(channel)
        .group_by([col("week"), col("channel")])
        .agg([
            is("recovery.started").sum().alias("starts"),
            is("recovery.completed").sum().alias("completions"),
        ]);
    flows
        .join(
            active_users(w),
            [col("week")],
            [col("week")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns(counts(&["starts", "completions", "active_users"]))
        .select([
            col("week"),
            col("channel"),
            col("starts"),
            col("completions"),
            col("active_users"),
            per_thousand(col("starts"), col("active_users")).alias("starts_per_1k_active"),
        ])
        .sort(["week", "channel"], SortMultipleOptions::default())
        .collect()
        .map_err(polars("recovery"))
}

/// Support contacts and successful sign-in ceremonies per week — the KPI
/// `support_per_1k_signins`. A ceremony is the `auth.*` events sharing a
/// ceremony key and belongs to the week of its first event.
pub fn support(range: LazyFrame) -> Result<DataFrame> {
    let signins = range
        .clone()
        .filter(col("event_type").str().starts_with(lit("auth.")))
        .group_by([col("rp_id"), col("ak")])
        .agg([
            col("t").min().alias("first"),
            is("auth.succeeded").any(true).alias("ok"),
        ])
        .filter(col("ok"))
        .group_by([week(col("first")).alias("week")])
        .agg([len().alias("signins")]);
    let contacts = weekly(range)
        .filter(is("support.contacted"))
        .group_by([col("week")])
        .agg([len().alias("contacts")]);
    contacts
        .join(signins, [col("week")], [col("week")], full_join())
        .with_columns(counts(&["contacts", "signins"]))
        .select([
            col("week"),
            col("contacts"),
            col("signins"),
            per_thousand(col("contacts"), col("signins")).alias("contacts_per_1k_signins"),
        ])
        .sort(["week"], SortMultipleOptions::default())
        .collect()
        .map_err(polars("support contacts"))
}

/// Passkey holders and at-risk holders among the users seen in `[from, to)`
/// — the KPI `at_risk_holders`: a holder has at least one active passkey
/// (created minus revoked, all history before `to`); an at-risk holder has
/// exactly one, never created a synced one, and has no recovery method seen
/// (no completed recovery, no recovery-code sign-in).
fn holders(events: LazyFrame, from: i64, to: i64) -> LazyFrame {
    let seen = within(events.clone(), from, to)
        .filter(col("user_key").is_not_null())
        .select([col("user_key")])
        .unique(None, UniqueKeepStrategy::Any);
    let created = is("enrollment.succeeded");
    let history = events
        .filter(col("t").lt(lit(to)).and(col("user_key").is_not_null()))
        .group_by([col("user_key")])
        .agg([
            (created.clone().sum().cast(DataType::Int64)
                - is("credential.revoked").sum().cast(DataType::Int64))
            .alias("held"),
            created
                .and(col("credential_backup_eligible").fill_null(lit(false)))
                .any(true)
                .alias("synced"),
            is("recovery.completed")
                .or(is("auth.succeeded").and(col("method").eq(lit("recovery_code"))))
                .any(true)
                .alias("recovery"),
        ]);
    seen.join(
        history,
        [col("user_key")],
        [col("user_key")],
        JoinArgs::new(JoinType::Left),
    )
    .select([
        col("held")
            .fill_null(lit(0))
            .gt(lit(0))
            .sum()
            .alias("holders"),
        col("held")
            .eq(lit(1))
            .and(col("synced").not())
            .and(col("recovery").not())
            .fill_null(lit(false))
            .sum()
            .alias("at_risk"),
    ])
}

/// At-risk holders per week of `[from, to)` (each week's holders as of its
/// end, or of `to` for the last), and over the whole range as of `to`.
pub fn at_risk(events: LazyFrame, from: i64, to: i64) -> Result<(DataFrame, (u64, u64))> {
    let mut weeks = Vec::new();
    let mut start = crate::load::week_of(from);
    while start < to {
        let (a, b) = (start.max(from), (start + WEEK_US).min(to));
        weeks.push(holders(events.clone(), a, b).with_column(lit(start).alias("week")));
        start += WEEK_US;
    }
    let section = "at-risk holders";
    let series = if weeks.is_empty() {
        DataFrame::empty()
    } else {
        concat(weeks, UnionArgs::default())
            .map_err(polars(section))?
            .with_columns(counts(&["holders", "at_risk"]))
            .filter(col("holders").gt(lit(0)))
            .select([
                col("week"),
                col("holders"),
                col("at_risk"),
                ratio(col("at_risk"), col("holders")).alias("at_risk_share"),
            ])
            .collect()
            .map_err(polars(section))?
    };
    let total = holders(events, from, to)
        .with_columns(counts(&["holders", "at_risk"]))
        .collect()
        .map_err(polars(section))?;
    let get = |name: &str| -> Result<u64> {
        Ok(total
            .column(name)
            .map_err(polars(section))?
            .u64()
            .map_err(polars(section))?
            .get(0)
            .unwrap_or(0))
    };
    Ok((series, (get("holders")?, get("at_risk")?)))
}
