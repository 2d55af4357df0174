//! The KPI and funnel reports: what `/v1/kpis`, `/v1/funnel` and
//! `keyshift kpis` return, built from the query rows.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use super::catalog::{Kpi, Unit};
use super::engine::{Row, StepRow};
use super::funnel::Funnel;
use super::request::{By, Interval, KpiRequest, MAX_POINTS, too_many_points};
use crate::Result;

/// What every report says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    /// `null`: every relying party.
    pub rp_id: Option<String>,
    /// Start of the range, inclusive (RFC 3339 in JSON).
    #[serde(serialize_with = "rfc3339")]
    pub from: DateTime<Utc>,
    /// End of the range, exclusive (RFC 3339 in JSON).
    #[serde(serialize_with = "rfc3339")]
    pub to: DateTime<Utc>,
    /// Width of each series point.
    pub interval: Interval,
    /// The breakdown; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<By>,
    /// Every event that occurred before this instant and reached keyshift
    /// is counted; events arriving later (late events, a lagging consumer)
    /// can still change intervals before it. `null`: not known yet.
    #[serde(serialize_with = "rfc3339_opt")]
    pub complete_to: Option<DateTime<Utc>>,
    /// `complete_to` is at or after `to`: the numbers are final unless late
    /// events arrive.
    pub complete: bool,
    /// Version of `auth_events` the report was computed at; `None` when unknown.
    pub table_version: Option<u64>,
    /// Day boundaries are UTC.
    pub timezone: &'static str,
}

impl Header {
    /// The header of a report on `req`, with the ingest `watermark` as `complete_to` and
    /// the events table's `version`.
    pub fn new(req: &KpiRequest, watermark: Option<DateTime<Utc>>, version: Option<u64>) -> Self {
        Self {
            rp_id: req.rp_id.clone(),
            from: req.from,
            to: req.to,
            interval: req.interval,
            by: req.by,
            complete_to: watermark,
            complete: watermark.is_some_and(|w| w >= req.to),
            table_version: version,
            timezone: "UTC",
        }
    }
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// One value of a KPI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Start of the interval; absent in totals.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    pub t: Option<DateTime<Utc>>,
    /// Breakdown value; absent without a breakdown and in the all-values total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The key (error name, reason, method, path…) for per-key KPIs; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `null` for quantiles (the value is the quantile itself).
    pub numerator: Option<Value>,
    /// Count below the line; for quantiles, the number of samples.
    pub denominator: i64,
    /// `null` when the denominator is 0: never 0 or NaN.
    pub value: Option<f64>,
}

impl Point {
    fn new(kpi: &Kpi, by: bool, row: Row) -> Self {
        let count = |n: f64| {
            // Counts leave SQL as floats (one cast for every KPI); they are
            // whole numbers well inside f64's exact range.
            #[allow(clippy::cast_possible_truncation)]
            Value::from(n.round() as i64)
        };
        let (numerator, value) = match kpi.unit {
            Unit::Milliseconds => (None, row.num.filter(|_| row.den > 0)),
            Unit::Ratio | Unit::PerThousand => {
                let num = row.num.unwrap_or(0.0);
                let scale = if kpi.unit == Unit::PerThousand {
                    1000.0
                } else {
                    1.0
                };
                #[allow(clippy::cast_precision_loss)]
                let v = (row.den > 0).then(|| scale * num / row.den as f64);
                (Some(count(num)), v)
            }
        };
        Self {
            t: row.t,
            // Without a breakdown every row's group is the constant "all".
            group: if by { row.group } else { None },
            key: row.key,
            numerator,
            denominator: row.den,
            value,
        }
    }
}

/// One KPI's definition and numbers.
#[derive(Debug, Clone, Serialize)]
pub struct KpiResult {
    /// The KPI's id (`passkey_usage`).
    pub kpi: &'static str,
    /// Its human-readable name.
    pub title: &'static str,
    /// What `value` is: a ratio, per thousand, or milliseconds.
    pub unit: Unit,
    /// What one counted thing is, in words.
    pub counts: &'static str,
    /// What the numerator counts, in words.
    pub numerator: &'static str,
    /// What the denominator counts, in words.
    pub denominator: &'static str,
    /// What a point's `key` is; absent for unkeyed KPIs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'static str>,
    /// Over the whole range: per breakdown value, then over all values.
    pub totals: Vec<Point>,
    /// Per interval (and breakdown value).
    pub series: Vec<Point>,
}

/// What `GET /v1/kpis` and `keyshift kpis` return.
#[derive(Debug, Clone, Serialize)]
pub struct KpiReport {
    /// Range, breakdown and completeness; flattened into the top-level JSON object.
    #[serde(flatten)]
    pub header: Header,
    /// One result per requested KPI, in request order.
    pub kpis: Vec<KpiResult>,
}

fn order(a: &Point, b: &Point) -> std::cmp::Ordering {
    (a.t, a.group.is_none(), &a.group, &a.key).cmp(&(b.t, b.group.is_none(), &b.group, &b.key))
}

/// Builds the report from each KPI's rows; refuses more than
/// [`MAX_POINTS`] series points.
pub fn kpi_report(header: Header, kpis: &[&'static Kpi], rows: Vec<Vec<Row>>) -> Result<KpiReport> {
    let by = header.by.is_some();
    let mut out = Vec::with_capacity(kpis.len());
    let mut points = 0usize;
    for (kpi, rows) in kpis.iter().zip(rows) {
        let (mut totals, mut series): (Vec<Point>, Vec<Point>) = rows
            .into_iter()
            .map(|r| Point::new(kpi, by, r))
            .partition(|p| p.t.is_none());
        totals.sort_by(order);
        series.sort_by(order);
        points += series.len();
        if points > MAX_POINTS {
            return Err(too_many_points(points));
        }
        out.push(KpiResult {
            kpi: kpi.name,
            title: kpi.title,
            unit: kpi.unit,
            counts: kpi.counts,
            numerator: kpi.numerator,
            denominator: kpi.denominator,
            key: kpi.key,
            totals,
            series,
        });
    }
    Ok(KpiReport { header, kpis: out })
}

/// One step of a funnel at one interval and breakdown value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The step's or way out's name (`started`, `fell_back`, `failed: NotAllowedError`).
    pub step: String,
    /// How many reached this step or left this way, in the funnel's unit.
    pub count: i64,
    /// On the main path: count / the previous step's count (`null` for the
    /// first step or a previous count of 0). For a way out: count / the
    /// first step's count.
    pub rate: Option<f64>,
}

/// A funnel at one interval (or over the range) and breakdown value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelPoint {
    /// Start of the interval; absent in totals.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    pub t: Option<DateTime<Utc>>,
    /// Breakdown value; absent without a breakdown and in the all-values total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The main path, in funnel order.
    pub steps: Vec<Step>,
    /// Ways out of the funnel, then failures by name (`failed: <name>`).
    pub exits: Vec<Step>,
}

/// One funnel's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct FunnelResult {
    /// The funnel's id (`enrollment`, `passkey_signin`).
    pub funnel: &'static str,
    /// What one counted thing is, in words.
    pub counts: &'static str,
    /// Over the whole range: per breakdown value, then over all values.
    pub totals: Vec<FunnelPoint>,
    /// Per interval (and breakdown value).
    pub series: Vec<FunnelPoint>,
}

/// What `GET /v1/funnel` returns.
#[derive(Debug, Clone, Serialize)]
pub struct FunnelReport {
    /// Range, breakdown and completeness; flattened into the top-level JSON object.
    #[serde(flatten)]
    pub header: Header,
    /// The enrollment and passkey sign-in funnels.
    pub funnels: Vec<FunnelResult>,
}

#[allow(clippy::cast_precision_loss)]
fn rate(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// One funnel's points from its step rows and exit rows.
pub fn funnel_result(
    f: &'static Funnel,
    by: bool,
    steps: Vec<StepRow>,
    exits: &[Row],
) -> Result<FunnelResult> {
    let mut totals = Vec::new();
    let mut series = Vec::new();
    for (t, group, counts) in steps {
        let first = counts.first().copied().unwrap_or(0);
        let main = f.steps.iter().enumerate().map(|(i, s)| Step {
            step: (*s).to_owned(),
            count: counts[i],
            rate: (i > 0).then(|| rate(counts[i], counts[i - 1])).flatten(),
        });
        let outs = f.outs.iter().enumerate().map(|(i, s)| {
            let c = counts[f.steps.len() + i];
            Step {
                step: (*s).to_owned(),
                count: c,
                rate: rate(c, first),
            }
        });
        let mut by_name: Vec<Step> = exits
            .iter()
            .filter(|r| r.t == t && r.group == group)
            .map(|r| {
                #[allow(clippy::cast_possible_truncation)]
                let c = r.num.unwrap_or(0.0).round() as i64;
                Step {
                    step: format!(
                        "{}: {}",
                        f.exits_label,
                        r.key.as_deref().unwrap_or("unknown")
                    ),
                    count: c,
                    rate: rate(c, first),
                }
            })
            .collect();
        by_name.sort_by(|a, b| b.count.cmp(&a.count).then(a.step.cmp(&b.step)));
        let point = FunnelPoint {
            t,
            group: if by { group } else { None },
            steps: main.collect(),
            exits: outs.chain(by_name).collect(),
        };
        if point.t.is_none() {
            totals.push(point);
        } else {
            series.push(point);
        }
    }
    let key = |p: &FunnelPoint| (p.t, p.group.is_none(), p.group.clone());
    totals.sort_by_key(key);
    series.sort_by_key(key);
    if series.len() > MAX_POINTS {
        return Err(too_many_points(series.len()));
    }
    Ok(FunnelResult {
        funnel: f.name,
        counts: f.counts,
        totals,
        series,
    })
}
