//! `keyshift report`: the adoption report of a data dir, written as
//! Markdown, CSV and PNG files (the numbers are computed by
//! [`keyshift_report`], with polars, over one snapshot of `auth_events`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use keyshift_report::{Report, ReportRequest, Source};
use keyshift_store::Tables;

use crate::config::Config;

/// What to report on and where to write it.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Relying party [default: all].
    #[arg(long)]
    pub rp_id: Option<String>,
    /// Start of the range: RFC 3339 or a date (00:00 UTC)
    /// [default: the Monday 12 weeks before `to`].
    #[arg(long)]
    pub from: Option<String>,
    /// End of the range (excluded): RFC 3339 or a date (00:00 UTC)
    /// [default: the end of the UTC day of the latest event].
    #[arg(long)]
    pub to: Option<String>,
    /// Directory for report.md, the CSV files and the charts (created if
    /// missing; files of the same names are replaced).
    #[arg(long)]
    pub out: PathBuf,
}

/// Default range: this many weeks back from its end.
const DEFAULT_WEEKS: i64 = 12;

fn time(name: &str, value: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .with_context(|| format!("--{name} {value:?}: expected RFC 3339 or YYYY-MM-DD"))
}

fn midnight_after(t: DateTime<Utc>) -> DateTime<Utc> {
    (t.date_naive() + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
}

/// `[from, to)` from the arguments, with the defaults filled in.
pub fn range(
    args: &ReportArgs,
    last_event: Option<DateTime<Utc>>,
) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let to = match &args.to {
        Some(t) => time("to", t)?,
        None => midnight_after(last_event.unwrap_or_else(Utc::now)),
    };
    let from = match &args.from {
        Some(f) => time("from", f)?,
        None => {
            let back = (to - Duration::weeks(DEFAULT_WEEKS)).date_naive();
            let monday = back - Duration::days(i64::from(back.weekday().num_days_from_monday()));
            monday.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
        }
    };
    if from >= to {
        bail!("--from ({from}) must be before --to ({to})");
    }
    Ok((from, to))
}

/// A local path from a file URI of the table (`file://…` or a plain path).
fn local(uri: &str) -> anyhow::Result<PathBuf> {
    if Path::new(uri).is_absolute() {
        return Ok(PathBuf::from(uri));
    }
    match url::Url::parse(uri) {
        Ok(u) if u.scheme() == "file" => u
            .to_file_path()
            .map_err(|()| anyhow::anyhow!("{uri} is not a local file path")),
        _ => bail!(
            "{uri} is not on local disk: keyshift report reads tables on local disk only \
             (for object storage, query with `keyshift kpis` or a Delta reader)"
        ),
    }
}

/// Reads the data dir of `config` and computes the report.
pub async fn build(config: &Config, args: &ReportArgs) -> anyhow::Result<Report> {
    let root = config.store_root();
    let tables = Tables::open(&root, &config.store.storage_options)
        .await
        .with_context(|| format!("opening the store at {root}"))?;
    let files = tables
        .events
        .get_file_uris()
        .context("listing the files of auth_events")?
        .map(|u| local(&u))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (last, rp) = (files.clone(), args.rp_id.clone());
    let last_event =
        tokio::task::spawn_blocking(move || keyshift_report::last_event(&last, rp.as_deref()))
            .await
            .context("the report task failed")??;
    let (from, to) = range(args, last_event)?;
    let source = Source {
        table: format!("{root}/auth_events"),
        version: tables.events.version(),
        files,
    };
    let request = ReportRequest {
        rp_id: args.rp_id.clone(),
        from,
        to,
    };
    // polars runs its own thread pool: keep it off the async workers.
    let report = tokio::task::spawn_blocking(move || keyshift_report::build(&source, request))
        .await
        .context("the report task failed")??;
    Ok(report)
}

/// `keyshift report`: computes and writes; returns what to print.
pub async fn run_report(config: &Config, args: &ReportArgs) -> anyhow::Result<String> {
    let report = build(config, args).await?;
    let out = args.out.clone();
    let written = tokio::task::spawn_blocking(move || report.write(&out).map(|w| (report, w)))
        .await
        .context("the report task failed")??;
    let (report, written) = written;
    let c = &report.cohorts;
    Ok(format!(
        "{} events from {} to {} ({} files); {} cohorts, {} users first offered, {} enrolled; \
         {} files written to {}",
        report.events,
        report.request.from.format("%Y-%m-%d %H:%M"),
        report.request.to.format("%Y-%m-%d %H:%M"),
        report.files,
        c.cohorts.len(),
        c.cohorts.iter().map(|x| x.users).sum::<u64>(),
        c.cohorts.iter().map(|x| x.enrolled).sum::<u64>(),
        written.len(),
        args.out.display(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(from: Option<&str>, to: Option<&str>) -> ReportArgs {
        ReportArgs {
            rp_id: None,
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            out: PathBuf::from("out"),
        }
    }

    #[test]
    fn the_default_range_is_twelve_weeks_from_a_monday_to_the_end_of_the_latest_event_day() {
        let last = time("to", "2026-10-21T13:00:00Z").expect("time");
        let (from, to) = range(&args(None, None), Some(last)).expect("range");
        assert_eq!(to.to_rfc3339(), "2026-10-22T00:00:00+00:00");
        assert_eq!(from.to_rfc3339(), "2026-07-27T00:00:00+00:00");
        assert_eq!(from.weekday(), chrono::Weekday::Mon);
    }

    #[test]
    fn dates_and_times_are_accepted_and_an_empty_range_is_refused() {
        let (from, to) = range(
            &args(Some("2026-10-05"), Some("2026-10-26T00:00:00Z")),
            None,
        )
        .expect("range");
        assert_eq!((to - from).num_days(), 21);
        let err = range(&args(Some("2026-10-26"), Some("2026-10-05")), None).expect_err("refused");
        assert!(err.to_string().contains("must be before"), "{err}");
        assert!(range(&args(Some("yesterday"), None), None).is_err());
    }

    #[test]
    fn file_uris_become_local_paths_and_object_storage_is_refused() {
        assert_eq!(
            local("file:///data/auth_events/event_date%3D2026-10-05/part-0.parquet").expect("path"),
            PathBuf::from("/data/auth_events/event_date=2026-10-05/part-0.parquet")
        );
        assert_eq!(
            local("/d/x.parquet").expect("path"),
            PathBuf::from("/d/x.parquet")
        );
        let err = local("s3://bucket/auth_events/x.parquet").expect_err("refused");
        assert!(err.to_string().contains("local disk only"), "{err}");
    }
}
