//! The KPIs the demo shows, read from its own `GET /v1/kpis` (every number
//! comes from the KPI catalogue's definitions, as a user would get it).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// The KPIs shown while the demo runs and in its summary.
pub const HEADLINE: [&str; 5] = [
    "coverage",
    "enrollment_rate",
    "passkey_signin_success",
    "passkey_errors",
    "recovery_per_1k_signins",
];

async fn get(
    client: &reqwest::Client,
    base: &str,
    rp: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    by: Option<&str>,
    kpis: &[&str],
) -> anyhow::Result<Value> {
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut query = vec![
        ("rp_id", rp.to_owned()),
        ("from", ts(from)),
        ("to", ts(to)),
        ("interval", "day".to_owned()),
        ("kpi", kpis.join(",")),
    ];
    if let Some(b) = by {
        query.push(("by", b.to_owned()));
    }
    let resp = client
        .get(format!("{base}/v1/kpis"))
        .query(&query)
        .send()
        .await
        .context("GET /v1/kpis")?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("GET /v1/kpis: {status} {v}");
    }
    Ok(v)
}

/// One KPI's value over `points` (of one group and interval): the point
/// without a key, else the keys summed (per-key KPIs share a denominator).
fn value(unit: &str, points: &[&Value]) -> Option<f64> {
    if let Some(p) = points.iter().find(|p| p.get("key").is_none()) {
        return p["value"].as_f64();
    }
    let num: f64 = points.iter().filter_map(|p| p["numerator"].as_f64()).sum();
    let den = points
        .iter()
        .filter_map(|p| p["denominator"].as_f64())
        .fold(0.0, f64::max);
    let scale = if unit == "per_thousand" { 1000.0 } else { 1.0 };
    (den > 0.0).then(|| scale * num / den)
}

/// `(kpi, group)` → value over the range; group `all` for the total.
fn totals(report: &Value) -> BTreeMap<(String, String), Option<f64>> {
    let mut out = BTreeMap::new();
    for k in report["kpis"].as_array().into_iter().flatten() {
        let name = k["kpi"].as_str().unwrap_or_default().to_owned();
        let unit = k["unit"].as_str().unwrap_or_default();
        let mut groups: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        for p in k["totals"].as_array().into_iter().flatten() {
            let g = p["group"].as_str().unwrap_or("all").to_owned();
            groups.entry(g).or_default().push(p);
        }
        for (g, points) in groups {
            out.insert((name.clone(), g), value(unit, &points));
        }
    }
    out
}

/// The headline KPIs over `[from, to)`, for the progress line. Errors are
/// shown, not fatal: the demo goes on.
pub async fn headline(
    client: &reqwest::Client,
    base: &str,
    rp: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<BTreeMap<String, Option<f64>>, String> {
    let report = get(client, base, rp, from, to, None, &HEADLINE)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(totals(&report)
        .into_iter()
        .map(|((k, _), v)| (k, v))
        .collect())
}

/// The headline KPIs over the whole run, per variant and overall.
pub async fn by_variant(
    client: &reqwest::Client,
    base: &str,
    rp: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<BTreeMap<(String, String), Option<f64>>> {
    let mut out = totals(&get(client, base, rp, from, to, Some("variant"), &HEADLINE).await?);
    out.extend(totals(
        &get(client, base, rp, from, to, None, &HEADLINE).await?,
    ));
    Ok(out)
}

/// Recovery starts per 1,000 sign-ins, per day of the run.
pub async fn recovery_by_day(
    client: &reqwest::Client,
    base: &str,
    rp: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<(DateTime<Utc>, Option<f64>)>> {
    let kpi = "recovery_per_1k_signins";
    let report = get(client, base, rp, from, to, None, &[kpi]).await?;
    let mut days: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    let mut unit = "";
    for k in report["kpis"].as_array().into_iter().flatten() {
        unit = k["unit"].as_str().unwrap_or_default();
        for p in k["series"].as_array().into_iter().flatten() {
            if let Some(t) = p["t"].as_str() {
                days.entry(t.to_owned()).or_default().push(p);
            }
        }
    }
    Ok(days
        .into_iter()
        .filter_map(|(t, points)| {
            let t = DateTime::parse_from_rfc3339(&t).ok()?.with_timezone(&Utc);
            Some((t, value(unit, &points)))
        })
        .collect())
}
