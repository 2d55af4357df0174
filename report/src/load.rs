//! Reading the events: the Parquet files of one table snapshot, as one
//! polars scan, reduced to the columns the report needs.
//!
//! Times become integers (microseconds since the epoch, UTC) as soon as they
//! are read: week arithmetic on integers is exact and needs no time-zone
//! support, and every section buckets by the same ISO week (Monday 00:00
//! UTC) as the KPI API's `interval=week`.

use std::path::PathBuf;

use polars::prelude::*;

use crate::error::{ReportError, Result, polars};

/// Microseconds in a week.
pub const WEEK_US: i64 = 7 * 86_400_000_000;
/// Monday 1970-01-05 00:00 UTC: weeks are counted from here.
const FIRST_MONDAY_US: i64 = 4 * 86_400_000_000;

/// The Monday 00:00 UTC that starts the week of `t` (both in µs).
pub fn week_of(t: i64) -> i64 {
    (t - FIRST_MONDAY_US).div_euclid(WEEK_US) * WEEK_US + FIRST_MONDAY_US
}

/// [`week_of`] as a polars expression (the events are all after 1970, where
/// floor division and Euclidean division agree).
pub fn week(t: Expr) -> Expr {
    (t - lit(FIRST_MONDAY_US)).floor_div(lit(WEEK_US)) * lit(WEEK_US) + lit(FIRST_MONDAY_US)
}

/// The columns every section reads. `t` is `occurred_at` in µs; `ak` the
/// ceremony key as the KPI module defines it (`attempt_id`, else the event's
/// own id, within one relying party).
pub const COLUMNS: [&str; 11] = [
    "rp_id",
    "ak",
    "user_key",
    "event_type",
    "t",
    "client_os",
    "client_browser",
    "method",
    "recovery_channel",
    "credential_backup_eligible",
    "event_id",
];

/// The events of `files` (all of them: the history before the range matters
/// for first offers and for who holds a passkey), of `rp_id` if given.
pub fn events(files: &[PathBuf], rp_id: Option<&str>) -> Result<LazyFrame> {
    if files.is_empty() {
        return Ok(empty().lazy());
    }
    let paths = widest_first(files)?
        .iter()
        .map(|p| PlRefPath::try_from_path(p))
        .collect::<PolarsResult<Vec<_>>>()
        .map_err(polars("reading the table"))?;
    // The partition column (`event_date`) is in the directory names, not in
    // the files; nothing here needs it, and `occurred_at` bounds the rows.
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(false),
            ..HiveOptions::default()
        },
        // Files written before a column was added lack it: null there.
        allow_missing_columns: true,
        ..ScanArgsParquet::default()
    };
    let scan =
        LazyFrame::scan_parquet_files(paths.into(), args).map_err(polars("reading the table"))?;
    let scan = match rp_id {
        Some(rp) => scan.filter(col("rp_id").eq(lit(rp))),
        None => scan,
    };
    Ok(scan.select([
        col("rp_id"),
        when(col("attempt_id").is_null())
            .then(col("event_id"))
            .otherwise(col("attempt_id"))
            .alias("ak"),
        col("user_key"),
        col("event_type"),
        col("occurred_at")
            .cast(DataType::Datetime(TimeUnit::Microseconds, None))
            .cast(DataType::Int64)
            .alias("t"),
        col("client_os"),
        col("client_browser"),
        col("method"),
        col("recovery_channel"),
        col("credential_backup_eligible"),
        col("event_id"),
    ]))
}

/// `files` with one of the most columns first. polars takes the first
/// file's columns as the scan's and refuses a file with more, while a
/// table's schema only grows (columns are added, never removed: see the
/// store's migrations), so the widest file has every column.
fn widest_first(files: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut widest = (0, 0);
    for (i, path) in files.iter().enumerate() {
        let file = std::fs::File::open(path).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        let width = polars::prelude::ParquetReader::new(file)
            .schema()
            .map_err(polars("reading a file's schema"))?
            .len();
        if width > widest.1 {
            widest = (i, width);
        }
    }
    let mut out = files.to_vec();
    out.swap(0, widest.0);
    Ok(out)
}

/// No events, with the types [`events`] gives.
fn empty() -> DataFrame {
    let s = |n: &str| Column::new_empty(n.into(), &DataType::String);
    DataFrame::new_infer_height(vec![
        s("rp_id"),
        s("ak"),
        s("user_key"),
        s("event_type"),
        Column::new_empty("t".into(), &DataType::Int64),
        s("client_os"),
        s("client_browser"),
        s("method"),
        s("recovery_channel"),
        Column::new_empty("credential_backup_eligible".into(), &DataType::Boolean),
        s("event_id"),
    ])
    .unwrap_or_default()
}

/// Events with `from <= t < to`.
pub fn within(events: LazyFrame, from: i64, to: i64) -> LazyFrame {
    events.filter(col("t").gt_eq(lit(from)).and(col("t").lt(lit(to))))
}

/// `event_type = name`.
pub fn is(name: &str) -> Expr {
    col("event_type").eq(lit(name))
}

/// `num / den` as a float, null when `den` is 0 (never NaN).
pub fn ratio(num: Expr, den: Expr) -> Expr {
    when(den.clone().gt(lit(0)))
        .then(num.cast(DataType::Float64) / den.cast(DataType::Float64))
        .otherwise(lit(NULL).cast(DataType::Float64))
}

/// `1000 × num / den`, null when `den` is 0.
pub fn per_thousand(num: Expr, den: Expr) -> Expr {
    ratio(num, den) * lit(1000.0)
}

/// The columns `names` as counts: a null (no row on one side of a join)
/// is 0.
pub fn counts(names: &[&str]) -> Vec<Expr> {
    names
        .iter()
        .map(|c| col(*c).fill_null(lit(0)).cast(DataType::UInt64))
        .collect()
}

/// A full join that keeps one copy of the key columns.
pub fn full_join() -> JoinArgs {
    JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns)
}

/// Over `enrollment.succeeded` rows: `passkeys` created and how many are
/// `synced` (BE = 1; a missing flag counts as device-bound), as the KPI
/// `credential_mix` counts them.
pub fn passkey_counts() -> [Expr; 2] {
    [
        len().alias("passkeys"),
        col("credential_backup_eligible")
            .fill_null(lit(false))
            .sum()
            .alias("synced"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_utc() {
        // 2026-10-05 is a Monday.
        let monday = 1_791_158_400_000_000_i64;
        assert_eq!(week_of(monday), monday);
        assert_eq!(week_of(monday + WEEK_US - 1), monday);
        assert_eq!(week_of(monday - 1), monday - WEEK_US);
        assert_eq!(week_of(monday + 3 * 86_400_000_000 + 5), monday);
    }

    /// Files written before and after a schema change (a column added)
    /// read together, in either order.
    #[test]
    fn files_of_two_schema_versions_read_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let frame = |id: &str, extra: bool| {
            let s = |n: &str, v: &str| Column::new(n.into(), [v]);
            let mut cols = vec![
                s("event_id", id),
                s("event_type", "auth.succeeded"),
                Column::new("occurred_at".into(), [1_791_158_400_000_000_i64])
                    .cast(&DataType::Datetime(
                        TimeUnit::Microseconds,
                        Some(polars::prelude::TimeZone::UTC),
                    ))
                    .expect("cast"),
                s("rp_id", "example.com"),
                s("user_key", "k"),
                s("attempt_id", "a"),
                s("client_os", "iOS"),
                s("client_browser", "Safari"),
                s("method", "passkey"),
                s("recovery_channel", "email"),
                Column::new("credential_backup_eligible".into(), [true]),
            ];
            if extra {
                cols.push(s("signal", "unknown_credential"));
            }
            DataFrame::new_infer_height(cols).expect("frame")
        };
        let write = |name: &str, mut df: DataFrame| {
            let path = dir.path().join(name);
            let file = std::fs::File::create(&path).expect("create");
            polars::prelude::ParquetWriter::new(file)
                .finish(&mut df)
                .expect("write");
            path
        };
        let old = write("old.parquet", frame("e1", false));
        let new = write("new.parquet", frame("e2", true));
        for files in [[old.clone(), new.clone()], [new, old]] {
            let rows = events(&files, None)
                .and_then(|f| f.collect().map_err(polars("collect")))
                .expect("read");
            assert_eq!(rows.height(), 2);
        }
    }
}
