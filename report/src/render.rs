//! Writing a computed [`Report`]: CSV files, charts and `report.md`.
//!
//! Week columns (µs since the epoch inside the report) become ISO dates;
//! CSV floats carry four decimals; an undefined ratio (zero denominator) is
//! an empty CSV cell and "–" in the Markdown, never 0.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::DateTime;
use polars::prelude::*;

use crate::charts::{self, LineChart, Series};
use crate::error::{ReportError, Result, polars};
use crate::{Cohorts, Report, markdown};
use plotters::chart::SeriesLabelPosition;

/// `YYYY-MM-DD` of a time in µs.
pub fn date(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.date_naive().to_string())
        .unwrap_or_default()
}

/// `df` with its `week` column as ISO dates.
pub fn dated(df: &DataFrame) -> Result<DataFrame> {
    let mut df = df.clone();
    if let Ok(week) = df.column("week") {
        let days: Vec<Option<String>> = week
            .i64()
            .map_err(polars("dates"))?
            .iter()
            .map(|w| w.map(date))
            .collect();
        df.with_column(Column::new("week".into(), days))
            .map_err(polars("dates"))?;
    }
    Ok(df)
}

/// The cohort table: one row per cohort.
pub fn cohort_frame(c: &Cohorts) -> Result<DataFrame> {
    let rows = &c.cohorts;
    df!(
        "cohort" => rows.iter().map(|r| date(r.week)).collect::<Vec<_>>(),
        "users" => rows.iter().map(|r| r.users).collect::<Vec<_>>(),
        "enrolled" => rows.iter().map(|r| r.enrolled).collect::<Vec<_>>(),
        "adoption" => rows.iter().map(|r| share(r.enrolled, r.users)).collect::<Vec<_>>(),
        "median_hours_to_enroll" => rows.iter().map(|r| r.median_hours).collect::<Vec<_>>(),
    )
    .map_err(polars("cohorts"))
}

/// The adoption curves: one row per cohort and week since offer.
pub fn curve_frame(c: &Cohorts, to: i64) -> Result<DataFrame> {
    let mut cohort = Vec::new();
    let mut week = Vec::new();
    let mut enrolled = Vec::new();
    let mut adoption = Vec::new();
    let mut complete = Vec::new();
    for r in &c.cohorts {
        for (k, &n) in r.enrolled_by.iter().enumerate() {
            cohort.push(date(r.week));
            week.push(k as u32);
            enrolled.push(n);
            adoption.push(share(n, r.users));
            complete.push(r.complete(k, to));
        }
    }
    df!(
        "cohort" => cohort,
        "week_since_offer" => week,
        "enrolled" => enrolled,
        "adoption" => adoption,
        "complete" => complete,
    )
    .map_err(polars("cohorts"))
}

/// `word` for one, `words` otherwise.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

fn share(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn write_csv(dir: &Path, name: &str, df: &DataFrame, out: &mut Vec<PathBuf>) -> Result<()> {
    let path = dir.join(name);
    let io = |source| ReportError::Io {
        path: path.clone(),
        source,
    };
    let mut file = fs::File::create(&path).map_err(io)?;
    let mut df = df.clone();
    CsvWriter::new(&mut file)
        .include_header(true)
        .with_float_precision(Some(4))
        .finish(&mut df)
        .map_err(polars("writing CSV"))?;
    out.push(path);
    Ok(())
}

/// Every table of the report under its CSV file name, dates resolved.
pub fn tables(report: &Report) -> Result<Vec<(&'static str, DataFrame)>> {
    let to = report.request.to.timestamp_micros();
    Ok(vec![
        ("cohorts.csv", cohort_frame(&report.cohorts)?),
        ("cohort_adoption.csv", curve_frame(&report.cohorts, to)?),
        ("platforms.csv", report.platforms.clone()),
        ("browsers.csv", report.browsers.clone()),
        ("credential_mix.csv", dated(&report.credential_mix)?),
        ("at_risk.csv", dated(&report.at_risk)?),
        ("recovery.csv", dated(&report.recovery)?),
        ("support.csv", dated(&report.support)?),
    ])
}

/// Values of a numeric column as floats (nulls kept).
pub fn floats(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name)
        .ok()
        .and_then(|c| c.cast(&DataType::Float64).ok())
        .and_then(|c| c.f64().ok().map(|c| c.iter().collect()))
        .unwrap_or_default()
}

/// Values of a string column.
pub fn strings(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    df.column(name)
        .ok()
        .and_then(|c| {
            c.str()
                .ok()
                .map(|c| c.iter().map(|v| v.map(str::to_owned)).collect())
        })
        .unwrap_or_default()
}

fn charts(report: &Report, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let c = &report.cohorts.cohorts;
    let longest = c.iter().map(|r| r.enrolled_by.len()).max().unwrap_or(0);
    let mut list = vec![LineChart {
        name: "cohort adoption",
        title: "Cumulative adoption by weeks since first offer",
        y_label: "cohort users with a passkey",
        x_labels: (0..longest).map(|k| format!("week {k}")).collect(),
        series: c
            .iter()
            .map(|r| Series {
                name: format!("{} ({} {})", date(r.week), r.users, plural(r.users, "user")),
                values: r.enrolled_by.iter().map(|&n| share(n, r.users)).collect(),
            })
            .collect(),
        y_max: Some(1.0),
        percent: true,
        legend: SeriesLabelPosition::LowerRight,
    }];
    let weeks = |df: &DataFrame| -> Vec<String> {
        df.column("week")
            .ok()
            .and_then(|w| {
                w.i64()
                    .ok()
                    .map(|w| w.iter().map(|v| v.map(date).unwrap_or_default()).collect())
            })
            .unwrap_or_default()
    };
    let mix = &report.credential_mix;
    list.push(LineChart {
        name: "credential mix",
        title: "Passkeys created per week: synced vs device-bound",
        y_label: "passkeys created",
        x_labels: weeks(mix),
        series: vec![
            Series {
                name: "synced (BE = 1)".into(),
                values: floats(mix, "synced"),
            },
            Series {
                name: "device-bound".into(),
                values: floats(mix, "device_bound"),
            },
        ],
        y_max: None,
        percent: false,
        legend: SeriesLabelPosition::UpperRight,
    });
    let risk = &report.at_risk;
    list.push(LineChart {
        name: "at-risk holders",
        title: "At-risk passkey holders (one device-bound passkey, no recovery method)",
        y_label: "share of holders seen that week",
        x_labels: weeks(risk),
        series: vec![Series {
            name: "at-risk share".into(),
            values: floats(risk, "at_risk_share"),
        }],
        y_max: Some(1.0),
        percent: true,
        legend: SeriesLabelPosition::UpperRight,
    });
    let rec = &report.recovery;
    // Rows are sorted by week: one entry per week.
    let rec_weeks: Vec<String> = {
        let mut w = weeks(rec);
        w.dedup();
        w
    };
    let channels = {
        let mut c: Vec<String> = strings(rec, "channel").into_iter().flatten().collect();
        c.sort();
        c.dedup();
        c
    };
    let (rw, rc, rv) = (
        weeks(rec),
        strings(rec, "channel"),
        floats(rec, "starts_per_1k_active"),
    );
    list.push(LineChart {
        name: "recovery",
        title: "Recovery starts per 1,000 active users, by channel",
        y_label: "starts per 1,000 active users",
        x_labels: rec_weeks.clone(),
        series: channels
            .iter()
            .map(|ch| Series {
                name: ch.clone(),
                values: rec_weeks
                    .iter()
                    .map(|w| {
                        (0..rw.len())
                            .find(|&i| rw[i] == *w && rc[i].as_deref() == Some(ch))
                            .and_then(|i| rv[i])
                    })
                    .collect(),
            })
            .collect(),
        y_max: None,
        percent: false,
        legend: SeriesLabelPosition::UpperRight,
    });
    let sup = &report.support;
    list.push(LineChart {
        name: "support",
        title: "Support contacts per 1,000 successful sign-ins",
        y_label: "contacts per 1,000 sign-ins",
        x_labels: weeks(sup),
        series: vec![Series {
            name: "support contacts".into(),
            values: floats(sup, "contacts_per_1k_signins"),
        }],
        y_max: None,
        percent: false,
        legend: SeriesLabelPosition::UpperRight,
    });
    for (chart, file) in list.iter().zip(CHARTS) {
        let path = dir.join(file);
        charts::draw(&path, chart)?;
        out.push(path);
    }
    Ok(())
}

/// The chart files, in the order `report.md` shows them.
pub const CHARTS: [&str; 5] = [
    "cohort_adoption.png",
    "credential_mix.png",
    "at_risk.png",
    "recovery.png",
    "support.png",
];

/// Writes everything into `dir`.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    let tables = tables(report)?;
    for (name, df) in &tables {
        write_csv(dir, name, df, &mut out)?;
    }
    charts(report, dir, &mut out)?;
    let path = dir.join("report.md");
    fs::write(&path, markdown::render(report, &tables)).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    out.push(path);
    Ok(out)
}
