//! The parameters of a KPI report, parsed and checked once: the query
//! string of `GET /v1/kpis` and `GET /v1/funnel`, and the flags of
//! `keyshift kpis`.

use chrono::{DateTime, Duration, Utc};

use super::catalog::{self, Kpi};
use crate::{MetricsError, Result};

/// Most series points one report may return.
pub const MAX_POINTS: usize = 10_000;
/// Default range: this far back from its end.
pub const DEFAULT_RANGE_DAYS: i64 = 7;

/// Width of one point of a series. Intervals start at UTC boundaries; a
/// week starts on Monday (ISO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    /// One hour, from the start of a UTC hour.
    Hour,
    /// One day, from UTC midnight; the default.
    Day,
    /// One ISO week, from Monday 00:00 UTC.
    Week,
}

impl Interval {
    /// The accepted `interval=` values.
    pub const ALL: [&str; 3] = ["hour", "day", "week"];

    /// The interval named `hour`, `day` or `week`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            _ => None,
        }
    }

    /// The name, as in `interval=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
        }
    }

    /// The length of one interval.
    pub fn duration(self) -> Duration {
        match self {
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
            Self::Week => Duration::weeks(1),
        }
    }

    /// The SQL interval literal of one step.
    pub fn sql_interval(self) -> &'static str {
        match self {
            Self::Hour => "INTERVAL '1 hour'",
            Self::Day => "INTERVAL '1 day'",
            Self::Week => "INTERVAL '7 days'",
        }
    }

    /// Intervals that `[from, to)` touches (an upper bound for a week: its
    /// boundaries fall on Mondays).
    pub fn buckets(self, from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
        let span = (to - from).num_seconds().max(0);
        let step = self.duration().num_seconds();
        usize::try_from(span / step + 2).unwrap_or(usize::MAX)
    }
}

/// A breakdown dimension: the column whose values split every series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// The client's operating system (`client.os`).
    Platform,
    /// The client's browser (`client.browser`).
    Browser,
    /// The client's form factor (`client.form_factor`).
    FormFactor,
    /// The rollout variant the RP recorded: `treatment`, `control`, or `none`.
    Variant,
    /// The rollout the event was recorded under.
    RolloutId,
    /// The relying party.
    RpId,
}

impl By {
    /// The accepted `by=` values, in declaration order.
    pub const ALL: [&str; 6] = [
        "platform",
        "browser",
        "form_factor",
        "variant",
        "rollout_id",
        "rp_id",
    ];

    /// The breakdown named as in `by=`; `None` for an unknown name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "platform" => Self::Platform,
            "browser" => Self::Browser,
            "form_factor" => Self::FormFactor,
            "variant" => Self::Variant,
            "rollout_id" => Self::RolloutId,
            "rp_id" => Self::RpId,
            _ => return None,
        })
    }

    /// The name, as in `by=` and in reports.
    pub fn as_str(self) -> &'static str {
        Self::ALL[self as usize]
    }

    /// The `auth_events` column.
    pub fn column(self) -> &'static str {
        match self {
            Self::Platform => "client_os",
            Self::Browser => "client_browser",
            Self::FormFactor => "client_form_factor",
            Self::Variant => "rollout_variant",
            Self::RolloutId => "rollout_id",
            Self::RpId => "rp_id",
        }
    }
}

/// One checked KPI or funnel request.
#[derive(Debug, Clone)]
pub struct KpiRequest {
    /// `None`: every relying party (admin only).
    pub rp_id: Option<String>,
    /// Start of the range, inclusive.
    pub from: DateTime<Utc>,
    /// End of the range, exclusive; defaults to the ingest watermark.
    pub to: DateTime<Utc>,
    /// Width of each series point.
    pub interval: Interval,
    /// The breakdown; `None` reports every event under one value.
    pub by: Option<By>,
    /// The KPIs to compute, no duplicates, in the order asked; every KPI when none asked.
    pub kpis: Vec<&'static Kpi>,
}

/// The raw parameters, as strings, before any check.
#[derive(Debug, Clone, Default)]
pub struct RawParams {
    /// `rp_id=`: the relying party; `None` for every one.
    pub rp_id: Option<String>,
    /// `from=`: RFC 3339 start of the range; `None` for seven days before `to`.
    pub from: Option<String>,
    /// `to=`: RFC 3339 end of the range; `None` for the ingest watermark.
    pub to: Option<String>,
    /// `interval=`: `hour`, `day` or `week`; `None` for a day.
    pub interval: Option<String>,
    /// `by=`: the breakdown name; `None` or empty for none.
    pub by: Option<String>,
    /// Names, from repeated `kpi=` and comma-separated lists.
    pub kpis: Vec<String>,
}

impl RawParams {
    /// Adds KPI names from one `kpi` value (a name or a comma-separated list).
    pub fn add_kpis(&mut self, value: &str) {
        self.kpis.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }

    /// Parses a query string; an unknown or repeated parameter is an error.
    pub fn from_query(query: &str) -> Result<Self> {
        let mut p = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            let slot = match key.as_ref() {
                "kpi" => {
                    p.add_kpis(&value);
                    continue;
                }
                "rp_id" => &mut p.rp_id,
                "from" => &mut p.from,
                "to" => &mut p.to,
                "interval" => &mut p.interval,
                "by" => &mut p.by,
                other => {
                    return Err(MetricsError::BadRequest(format!(
                        "unknown parameter {other:?}; valid: rp_id, from, to, interval, by, kpi"
                    )));
                }
            };
            if slot.replace(value).is_some() {
                return Err(MetricsError::BadRequest(format!(
                    "parameter {key:?} given twice"
                )));
            }
        }
        Ok(p)
    }

    /// Checks every parameter and fills in the defaults: `to` is the ingest
    /// watermark, `from` seven days before `to`, `interval` a day, every KPI.
    pub fn check(self, watermark: DateTime<Utc>) -> Result<KpiRequest> {
        let time = |name: &str, v: &Option<String>| -> Result<Option<DateTime<Utc>>> {
            v.as_deref()
                .map(|s| {
                    DateTime::parse_from_rfc3339(s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| {
                            MetricsError::BadRequest(format!(
                                "{name}: {s:?} is not an RFC 3339 time \
                                 (like 2026-11-01T00:00:00Z): {e}"
                            ))
                        })
                })
                .transpose()
        };
        let to = time("to", &self.to)?.unwrap_or(watermark);
        let from =
            time("from", &self.from)?.unwrap_or_else(|| to - Duration::days(DEFAULT_RANGE_DAYS));
        if from > to {
            return Err(MetricsError::BadRequest(format!(
                "from ({}) is after to ({})",
                from.to_rfc3339(),
                to.to_rfc3339()
            )));
        }
        let interval = match self.interval.as_deref() {
            None => Interval::Day,
            Some(s) => Interval::parse(s).ok_or_else(|| {
                MetricsError::BadRequest(format!(
                    "unknown interval {s:?}; valid: {}",
                    Interval::ALL.join(", ")
                ))
            })?,
        };
        let by = match self.by.as_deref() {
            None | Some("") => None,
            Some(s) => Some(By::parse(s).ok_or_else(|| {
                MetricsError::BadRequest(format!(
                    "unknown breakdown by={s:?}; valid: {}",
                    By::ALL.join(", ")
                ))
            })?),
        };
        let mut kpis = Vec::new();
        for name in &self.kpis {
            let kpi = catalog::find(name).ok_or_else(|| {
                MetricsError::BadRequest(format!(
                    "unknown kpi {name:?}; valid: {}",
                    catalog::names().join(", ")
                ))
            })?;
            if !kpis.iter().any(|k: &&Kpi| k.name == kpi.name) {
                kpis.push(kpi);
            }
        }
        if kpis.is_empty() {
            kpis = catalog::CATALOG.iter().collect();
        }
        if let Some(rp) = &self.rp_id
            && rp.is_empty()
        {
            return Err(MetricsError::BadRequest("rp_id is empty".into()));
        }
        let req = KpiRequest {
            rp_id: self.rp_id,
            from,
            to,
            interval,
            by,
            kpis,
        };
        // Every KPI has at least one point per interval: refuse early what
        // is sure to be too large.
        let least = req
            .interval
            .buckets(from, to)
            .saturating_mul(req.kpis.len());
        if least > MAX_POINTS {
            return Err(too_many_points(least));
        }
        Ok(req)
    }
}

/// The bad-request error for a report of `n` series points, over [`MAX_POINTS`].
pub fn too_many_points(n: usize) -> MetricsError {
    MetricsError::BadRequest(format!(
        "the report would have {n} or more series points, more than the limit of {MAX_POINTS}: \
         use a wider interval, a shorter range, fewer KPIs or no breakdown"
    ))
}

/// `query` checked against the present, for tests of the statements made
/// from a request.
#[cfg(test)]
pub(crate) fn checked(query: &str) -> KpiRequest {
    RawParams::from_query(query)
        .expect("params")
        .check(Utc::now())
        .expect("request")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: &str) -> Result<KpiRequest> {
        let wm = DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        RawParams::from_query(q)?.check(wm)
    }

    fn err(q: &str) -> String {
        check(q).expect_err(q).to_string()
    }

    #[test]
    fn defaults_are_seven_days_to_the_watermark_by_day_every_kpi() {
        let r = check("").expect("defaults");
        assert_eq!(r.to.to_rfc3339(), "2026-11-28T12:00:00+00:00");
        assert_eq!(r.from.to_rfc3339(), "2026-11-21T12:00:00+00:00");
        assert_eq!(r.interval, Interval::Day);
        assert_eq!(r.kpis.len(), catalog::CATALOG.len());
        assert!(r.by.is_none() && r.rp_id.is_none());
    }

    #[test]
    fn kpis_come_repeated_or_comma_separated_and_once_each() {
        let r = check("kpi=coverage,enrollment_rate&kpi=coverage&by=platform&rp_id=a.example")
            .expect("ok");
        let names: Vec<_> = r.kpis.iter().map(|k| k.name).collect();
        assert_eq!(names, ["coverage", "enrollment_rate"]);
        assert_eq!(r.by, Some(By::Platform));
        assert_eq!(r.rp_id.as_deref(), Some("a.example"));
    }

    #[test]
    fn bad_values_are_refused_naming_the_valid_ones() {
        assert!(err("kpi=nope").contains("valid: enrollment_rate, coverage"));
        assert!(err("by=os").contains("valid: platform, browser"));
        assert!(err("interval=month").contains("valid: hour, day, week"));
        assert!(err("from=2026-11-01").contains("RFC 3339"));
        assert!(err("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z").contains("after"));
        assert!(err("limit=3").contains("unknown parameter"));
        assert!(err("by=platform&by=browser").contains("twice"));
        assert!(err("rp_id=").contains("empty"));
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let r = check("from=2026-11-01T01:00:00%2B02:00&to=2026-11-02T00:00:00Z").expect("ok");
        assert_eq!(r.from.to_rfc3339(), "2026-10-31T23:00:00+00:00");
    }

    #[test]
    fn reports_sure_to_exceed_the_point_limit_are_refused_early() {
        let e = err("from=2025-01-01T00:00:00Z&to=2026-11-01T00:00:00Z&interval=hour");
        assert!(e.contains("10000"), "{e}");
        check("from=2026-01-01T00:00:00Z&to=2026-11-01T00:00:00Z&kpi=coverage").expect("304 days");
    }
}
