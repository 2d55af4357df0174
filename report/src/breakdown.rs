//! Enrollment by platform and by browser over the range.
//!
//! Per value of the breakdown column (`unknown` when an event lacks it),
//! counted as the KPI module counts `enrollment_rate` and `credential_mix`
//! with `by=platform` or `by=browser`: a user counts under every value their
//! events of the range carry.
//! - `offered`: users offered a passkey in the range;
//! - `enrolled`: those of them who created one in the range;
//! - `active`: users with a successful sign-in in the range;
//! - `passkeys`, `synced`: passkeys created in the range, and how many of
//!   them are backup eligible (BE = 1; a missing flag counts as device-bound).

use polars::prelude::*;

use crate::error::{Result, polars};
use crate::load::{counts, full_join, is, passkey_counts, ratio};

/// The breakdown of `[from, to)` (already filtered) by `column`, sorted by
/// offered users (most first), then by value.
pub fn breakdown(range: LazyFrame, column: &str) -> Result<DataFrame> {
    let section = "breakdown";
    let g = col(column).fill_null(lit("unknown")).alias("value");
    let ranged = range.with_column(g);
    let per_user = ranged
        .clone()
        .filter(col("user_key").is_not_null())
        .group_by([col("value"), col("user_key")])
        .agg([
            is("enrollment.offered").any(true).alias("o"),
            is("enrollment.succeeded").any(true).alias("s"),
            is("auth.succeeded").any(true).alias("a"),
        ])
        .group_by([col("value")])
        .agg([
            col("o").sum().alias("offered"),
            col("o").and(col("s")).sum().alias("enrolled"),
            col("a").sum().alias("active"),
        ]);
    let passkeys = ranged
        .filter(is("enrollment.succeeded"))
        .group_by([col("value")])
        .agg(passkey_counts());
    per_user
        .join(passkeys, [col("value")], [col("value")], full_join())
        .with_columns(counts(&[
            "offered", "enrolled", "active", "passkeys", "synced",
        ]))
        .select([
            col("value").alias(column_label(column)),
            col("offered"),
            col("enrolled"),
            ratio(col("enrolled"), col("offered")).alias("enrollment_rate"),
            col("active"),
            col("passkeys"),
            col("synced"),
            ratio(col("synced"), col("passkeys")).alias("synced_share"),
        ])
        .sort(
            ["offered", column_label(column)],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .collect()
        .map_err(polars(section))
}

/// The column's name in the report (the KPI API's breakdown name).
pub fn column_label(column: &str) -> &str {
    match column {
        "client_os" => "platform",
        "client_browser" => "browser",
        other => other,
    }
}
