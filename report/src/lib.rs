//! The passkey adoption report: what a product team takes to a meeting.
//!
//! [`build`] reads the Parquet files of one `auth_events` snapshot with
//! polars and computes, for a range `[from, to)` and optionally one relying
//! party:
//! - weekly cohorts by first enrollment offer, with cumulative adoption by
//!   week since offer and the median time from offer to enrolment
//!   ([`cohorts`]);
//! - enrollment by platform and by browser ([`breakdown`]);
//! - week by week: the synced vs device-bound mix, at-risk holders,
//!   recoveries and support contacts ([`trends`]).
//!
//! [`Report::write`] puts `report.md`, one CSV per table and PNG charts in a
//! directory. Where a figure is also a KPI of the KPI module, it is counted
//! the same way (each function's doc names the KPI) and a test checks that
//! both give the same numbers.
//!
//! This crate does no Delta Lake work: the caller lists the snapshot's
//! files, so the report reads exactly one committed version.

pub mod breakdown;
mod charts;
pub mod cohorts;
mod error;
pub mod load;
mod markdown;
mod render;
pub mod trends;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use polars::prelude::{DataFrame, IntoLazy};

pub use cohorts::{Cohort, Cohorts};
pub use error::{ReportError, Result};

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// One relying party, or all of them.
    pub rp_id: Option<String>,
    /// Start of the range, included.
    pub from: DateTime<Utc>,
    /// End of the range, excluded; must be after `from`.
    pub to: DateTime<Utc>,
}

/// Where the events came from, for the report's header.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The table's location.
    pub table: String,
    /// The snapshot's version.
    pub version: Option<u64>,
    /// The snapshot's Parquet files, all of which are read.
    pub files: Vec<PathBuf>,
}

/// Every section of the report, computed.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was asked for.
    pub request: ReportRequest,
    /// The table's location, from the [`Source`].
    pub table: String,
    /// The snapshot's version, when the source gave one.
    pub version: Option<u64>,
    /// How many Parquet files were read.
    pub files: usize,
    /// Events of the range.
    pub events: u64,
    /// Weekly cohorts by first enrollment offer ([`cohorts`]).
    pub cohorts: Cohorts,
    /// Enrollment by platform (`client_os`), from [`breakdown::breakdown`].
    pub platforms: DataFrame,
    /// Enrollment by browser (`client_browser`), from [`breakdown::breakdown`].
    pub browsers: DataFrame,
    /// Synced and device-bound passkeys created per week, from
    /// [`trends::credential_mix`].
    pub credential_mix: DataFrame,
    /// Holders and at-risk holders per week, from [`trends::at_risk`].
    pub at_risk: DataFrame,
    /// Holders and at-risk holders among the users seen in the range, as of
    /// its end.
    pub at_risk_total: (u64, u64),
    /// Recovery starts and completions per week and channel, from
    /// [`trends::recovery`].
    pub recovery: DataFrame,
    /// Support contacts and successful sign-ins per week, from [`trends::support`].
    pub support: DataFrame,
}

/// Computes the report over `source`'s files.
pub fn build(source: &Source, request: ReportRequest) -> Result<Report> {
    let (from, to) = (
        request.from.timestamp_micros(),
        request.to.timestamp_micros(),
    );
    if from >= to {
        return Err(ReportError::Invalid(format!(
            "the range is empty: from ({}) must be before to ({})",
            request.from, request.to
        )));
    }
    let events = load::events(&source.files, request.rp_id.as_deref())?;
    // Every section reads the same few columns of the same files: read them
    // once.
    let events = events
        .collect()
        .map_err(error::polars("reading the table"))?
        .lazy();
    let range = load::within(events.clone(), from, to);
    let count = range
        .clone()
        .select([polars::prelude::len()])
        .collect()
        .map_err(error::polars("reading the table"))?;
    let n = count
        .column("len")
        .ok()
        .and_then(|c| c.cast(&polars::prelude::DataType::UInt64).ok())
        .and_then(|c| c.u64().ok().and_then(|c| c.get(0)))
        .unwrap_or(0);
    let (at_risk, at_risk_total) = trends::at_risk(events.clone(), from, to)?;
    Ok(Report {
        table: source.table.clone(),
        version: source.version,
        files: source.files.len(),
        events: n,
        cohorts: cohorts::cohorts(events, from, to)?,
        platforms: breakdown::breakdown(range.clone(), "client_os")?,
        browsers: breakdown::breakdown(range.clone(), "client_browser")?,
        credential_mix: trends::credential_mix(range.clone())?,
        at_risk,
        at_risk_total,
        recovery: trends::recovery(range.clone())?,
        support: trends::support(range)?,
        request,
    })
}

/// The time of the latest event of `files` (of `rp_id`, if given), for a
/// default range that ends with the data.
pub fn last_event(files: &[PathBuf], rp_id: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    let section = "finding the latest event";
    let max = load::events(files, rp_id)?
        .select([polars::prelude::col("t").max()])
        .collect()
        .map_err(error::polars(section))?;
    let t = max
        .column("t")
        .map_err(error::polars(section))?
        .i64()
        .map_err(error::polars(section))?
        .get(0);
    Ok(t.and_then(DateTime::from_timestamp_micros))
}

impl Report {
    /// Writes `report.md`, the CSV files and the charts into `dir` (created
    /// if missing); returns the paths written.
    pub fn write(&self, dir: &std::path::Path) -> Result<Vec<PathBuf>> {
        render::write(self, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(from: &str, to: &str) -> ReportRequest {
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        ReportRequest {
            rp_id: None,
            from: t(from),
            to: t(to),
        }
    }

    #[test]
    fn a_table_without_files_gives_an_empty_report_with_every_file() {
        let report = build(
            &Source::default(),
            request("2026-10-05T00:00:00Z", "2026-10-26T00:00:00Z"),
        )
        .expect("report");
        assert_eq!(report.events, 0);
        assert!(report.cohorts.cohorts.is_empty());
        assert_eq!(report.cohorts.median_hours, None);
        assert_eq!(report.at_risk_total, (0, 0));
        let dir = tempfile::tempdir().expect("tempdir");
        let written = report.write(dir.path()).expect("write");
        assert_eq!(written.len(), 8 + render::CHARTS.len() + 1);
        let md = std::fs::read_to_string(dir.path().join("report.md")).expect("report.md");
        assert!(md.contains("**0** users were first offered"), "{md}");
        assert!(md.contains("No events of this kind"), "{md}");
        let csv = std::fs::read_to_string(dir.path().join("cohorts.csv")).expect("csv");
        assert_eq!(
            csv.trim(),
            "cohort,users,enrolled,adoption,median_hours_to_enroll"
        );
    }

    #[test]
    fn an_empty_range_is_refused() {
        let err = build(
            &Source::default(),
            request("2026-10-26T00:00:00Z", "2026-10-26T00:00:00Z"),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("the range is empty"), "{err}");
    }
}
