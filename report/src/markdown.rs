//! `report.md`: the report as a reader sees it, charts inline.

use std::fmt::Write;

use polars::prelude::*;

use crate::Report;
use crate::render::date;

/// How a cell of column `name` reads.
fn cell(name: &str, v: &AnyValue<'_>) -> String {
    match v {
        AnyValue::Null => "–".to_owned(),
        AnyValue::Float64(x) if is_share(name) => format!("{:.1} %", x * 100.0),
        AnyValue::Float64(x) => format!("{x:.1}"),
        AnyValue::Boolean(b) => if *b { "yes" } else { "no" }.to_owned(),
        AnyValue::String(s) => (*s).replace('|', "\\|"),
        other => other.to_string(),
    }
}

fn is_share(name: &str) -> bool {
    name.ends_with("_rate") || name.ends_with("_share") || name == "adoption"
}

/// `df` as a Markdown table.
fn table(df: &DataFrame) -> String {
    let names: Vec<&str> = df.columns().iter().map(|c| c.name().as_str()).collect();
    let mut out = format!(
        "| {} |\n|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for i in 0..df.height() {
        let cells: Vec<String> = df
            .columns()
            .iter()
            .map(|c| c.get(i).map(|v| cell(c.name(), &v)).unwrap_or_default())
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    if df.height() == 0 {
        out.push_str("\n*No events of this kind in the range.*\n");
    }
    out
}

/// Cohorts as rows and weeks since offer as columns; `*` marks a week that
/// had not ended by the end of the range.
fn cohort_grid(report: &Report) -> String {
    let to = report.request.to.timestamp_micros();
    let cohorts = &report.cohorts.cohorts;
    let longest = cohorts
        .iter()
        .map(|c| c.enrolled_by.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("| cohort | users |");
    for k in 0..longest {
        let _ = write!(out, " week {k} |");
    }
    let _ = writeln!(out, "\n|---|---|{}", "---|".repeat(longest));
    for c in cohorts {
        let _ = write!(out, "| {} | {} |", date(c.week), c.users);
        for k in 0..longest {
            match c.enrolled_by.get(k) {
                Some(&n) if c.users > 0 => {
                    let mark = if c.complete(k, to) { "" } else { "*" };
                    let _ = write!(out, " {:.1} %{mark} |", n as f64 * 100.0 / c.users as f64);
                }
                _ => out.push_str(" |"),
            }
        }
        out.push('\n');
    }
    out
}

fn hours(h: Option<f64>) -> String {
    match h {
        None => "–".to_owned(),
        Some(h) if h < 1.0 / 60.0 => format!("{:.0} s", h * 3600.0),
        Some(h) if h < 1.0 => format!("{:.0} min", h * 60.0),
        Some(h) if h < 48.0 => format!("{h:.1} h"),
        Some(h) => format!("{:.1} days", h / 24.0),
    }
}

fn pct(n: u64, d: u64) -> String {
    if d == 0 {
        "–".to_owned()
    } else {
        format!("{:.1} %", n as f64 * 100.0 / d as f64)
    }
}

/// The whole `report.md`; `tables` are the CSV tables (see
/// [`crate::render::tables`]).
pub fn render(report: &Report, tables: &[(&'static str, DataFrame)]) -> String {
    let r = &report.request;
    let c = &report.cohorts;
    let get = |name: &str| {
        tables
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, df)| table(df))
            .unwrap_or_default()
    };
    let offered: u64 = c.cohorts.iter().map(|x| x.users).sum();
    let enrolled: u64 = c.cohorts.iter().map(|x| x.enrolled).sum();
    let (holders, at_risk) = report.at_risk_total;
    let mix = &report.credential_mix;
    let sum = |name: &str| -> u64 {
        crate::render::floats(mix, name)
            .into_iter()
            .flatten()
            .sum::<f64>() as u64
    };
    let (created, synced) = (sum("passkeys"), sum("synced"));
    let mut md = String::new();
    let _ = writeln!(md, "# Passkey adoption report\n");
    let _ = writeln!(
        md,
        "- Relying party: {}\n- Range: {} to {} (UTC, end excluded)\n- Source: `{}`, version {}, {} Parquet files; {} events in the range\n",
        r.rp_id.as_deref().unwrap_or("all"),
        r.from.format("%Y-%m-%d %H:%M"),
        r.to.format("%Y-%m-%d %H:%M"),
        report.table,
        report
            .version
            .map_or_else(|| "–".to_owned(), |v| v.to_string()),
        report.files,
        report.events,
    );
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "- **{offered}** users were first offered a passkey in the range, in {} weekly cohorts; **{enrolled}** of them ({}) have one. Median time from first offer to enrolment: **{}**.",
        c.cohorts.len(),
        pct(enrolled, offered),
        hours(c.median_hours),
    );
    let _ = writeln!(
        md,
        "- {} {} already held a passkey when first offered (in no cohort).",
        c.already_holders,
        crate::render::plural(c.already_holders, "user"),
    );
    let _ = writeln!(
        md,
        "- Passkeys created in the range: {created}, of which {synced} synced ({}).",
        pct(synced, created)
    );
    let _ = writeln!(
        md,
        "- At-risk holders at the end of the range: **{at_risk}** of {holders} holders seen ({}): one device-bound passkey and no recovery method; losing that device means account recovery.\n",
        pct(at_risk, holders)
    );
    let _ = writeln!(md, "## Cohorts by week of first offer\n");
    let _ = writeln!(md, "![Cumulative adoption](cohort_adoption.png)\n");
    let _ = writeln!(md, "{}", get("cohorts.csv"));
    let _ = writeln!(
        md,
        "Cumulative adoption by week since first offer (week 0 is the cohort's own week; `*`: the week had not ended by the end of the range):\n"
    );
    let _ = writeln!(md, "{}", cohort_grid(report));
    let _ = writeln!(md, "## Platforms\n\n{}", get("platforms.csv"));
    let _ = writeln!(md, "## Browsers\n\n{}", get("browsers.csv"));
    let _ = writeln!(md, "## Synced vs device-bound passkeys\n");
    let _ = writeln!(
        md,
        "![Credential mix](credential_mix.png)\n\n{}",
        get("credential_mix.csv")
    );
    let _ = writeln!(md, "## At-risk holders\n");
    let _ = writeln!(
        md,
        "![At-risk holders](at_risk.png)\n\n{}",
        get("at_risk.csv")
    );
    let _ = writeln!(md, "## Recoveries\n");
    let _ = writeln!(
        md,
        "![Recovery starts](recovery.png)\n\n{}",
        get("recovery.csv")
    );
    let _ = writeln!(md, "## Support contacts\n");
    let _ = writeln!(
        md,
        "![Support contacts](support.png)\n\n{}",
        get("support.csv")
    );
    md.push_str(DEFINITIONS);
    md
}

const DEFINITIONS: &str = "## How these are counted

- Weeks are ISO weeks, Monday 00:00 UTC; the first and last may be partial.
- **Cohort**: the users whose first `enrollment.offered` (all history) falls in that week of the range. **Enrolled**: their first `enrollment.succeeded` at or after that offer. Users with a passkey from before their first offer are in no cohort.
- **Platforms, browsers** (KPIs `enrollment_rate` and `credential_mix` with `by=platform` / `by=browser`): `offered` are users offered in the range, `enrolled` those of them who created a passkey in the range, `active` users with a successful sign-in; a user counts under every value their events carry.
- **Synced** (KPI `credential_mix`): the passkey is backup eligible (BE = 1); otherwise device-bound.
- **At-risk holders** (KPI `at_risk_holders`): among users with an event in the week, those holding passkeys at its end (created minus revoked, all history) — at risk if they hold exactly one, never created a synced one, and have no recovery method seen (no completed recovery, no recovery-code sign-in).
- **Recoveries** (KPI `recovery_per_1k_users`): `recovery.started` events per 1,000 users with a successful sign-in that week.
- **Support contacts** (KPI `support_per_1k_signins`): `support.contacted` events per 1,000 successful sign-in ceremonies (a ceremony is the events of one `attempt_id`, in the week of its first event).
- An undefined ratio (nothing to divide by) is shown as – (an empty CSV cell), never 0.
";
