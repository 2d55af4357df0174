//! The KPI gauges of `/metrics`: a few KPIs of the catalog, over a trailing
//! window, per relying party and per platform family, refreshed from the
//! store on an interval. The numbers come from the KPI module ([`crate::kpi`]);
//! this module only chooses what to ask and turns the answers into bounded
//! label sets ([`gauge_points`], pure).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keyshift_store::QueryEngine;
use keyshift_store::metrics::Registrar;
use prometheus::{Gauge, GaugeVec, IntCounter, Registry};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::kpi::{self, By, KpiReport, RawParams, Unit};
use crate::{MetricsError, Result};

/// The KPIs exported as gauges.
pub const GAUGE_KPIS: [&str; 6] = [
    "coverage",
    "enrollment_rate",
    "passkey_signin_success",
    "fallback_rate",
    "at_risk_holders",
    "recovery_per_1k_signins",
];

/// Platform families, the bounded form of `client.os`.
pub const PLATFORMS: [&str; 8] = [
    "windows", "macos", "ios", "android", "linux", "chromeos", "other", "unknown",
];

/// `[kpi_gauges]`: the KPI gauges' refresh.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpiGaugeConfig {
    /// Off: no KPI gauges (their queries cost a scan of `window`).
    pub enabled: bool,
    /// Time between refreshes (the first one, this long after start).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The trailing window every gauge covers, ending at the ingest watermark.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Relying parties with their own `rp_id` label, the largest first; the
    /// rest are summed under `other`.
    pub max_rp_labels: usize,
}

impl Default for KpiGaugeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(300),
            window: Duration::from_secs(7 * 24 * 3600),
            max_rp_labels: 32,
        }
    }
}

impl KpiGaugeConfig {
    /// One message per problem (interval under 1 s, window outside 1 h..92 d); empty
    /// when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.interval < Duration::from_secs(1) {
            errors.push("kpi_gauges.interval must be at least 1s".to_owned());
        }
        if self.window < Duration::from_secs(3600) || self.window > Duration::from_secs(92 * 86400)
        {
            errors.push("kpi_gauges.window must be between 1h and 92d".to_owned());
        }
        errors
    }
}

/// The platform family of a `client.os` value.
pub fn platform_family(os: Option<&str>) -> &'static str {
    let Some(os) = os else { return "unknown" };
    let os = os.to_ascii_lowercase();
    let os = os.trim();
    if os.is_empty() {
        "unknown"
    } else if os.starts_with("windows") {
        "windows"
    } else if os.starts_with("mac") || os == "os x" || os.starts_with("darwin") {
        "macos"
    } else if os.starts_with("ios") || os.starts_with("ipados") || os.starts_with("iphone") {
        "ios"
    } else if os.starts_with("android") {
        "android"
    } else if os.starts_with("chrome") {
        "chromeos"
    } else if os.starts_with("linux") || os == "ubuntu" || os == "fedora" || os == "debian" {
        "linux"
    } else {
        "other"
    }
}

/// One gauge value: `(kpi, rp_id, platform) → value`.
pub type Points = BTreeMap<(&'static str, String, &'static str), f64>;

/// Summed counts of one label set.
#[derive(Default)]
struct Sum {
    num: f64,
    den: i64,
}

/// The gauge values of two reports over the same window: `by_rp` broken
/// down by relying party, `by_platform` by `client.os`. Relying parties
/// beyond `known` and the `cap` largest are summed under `other`; values
/// with a zero denominator are left out.
pub fn gauge_points(
    by_rp: &KpiReport,
    by_platform: &KpiReport,
    known: &HashSet<String>,
    cap: usize,
) -> Points {
    let mut sums: BTreeMap<(&'static str, String, &'static str), Sum> = BTreeMap::new();
    let mut scale = BTreeMap::new();
    for r in &by_rp.kpis {
        scale.insert(r.kpi, r.unit);
        // Largest relying parties first, so the cap keeps the ones that matter.
        let mut groups: Vec<_> = r.totals.iter().filter(|p| p.group.is_some()).collect();
        groups.sort_by(|a, b| {
            b.denominator
                .cmp(&a.denominator)
                .then(a.group.cmp(&b.group))
        });
        let mut labelled = 0;
        for p in groups {
            let rp = p.group.clone().unwrap_or_default();
            let rp = if known.contains(&rp) || (labelled < cap && rp != "other" && rp != "all") {
                if !known.contains(&rp) {
                    labelled += 1;
                }
                rp
            } else {
                "other".to_owned()
            };
            add(&mut sums, (r.kpi, rp, "all"), p);
        }
        if let Some(p) = r.totals.iter().find(|p| p.group.is_none()) {
            add(&mut sums, (r.kpi, "all".to_owned(), "all"), p);
        }
    }
    for r in &by_platform.kpis {
        for p in r.totals.iter().filter(|p| p.group.is_some()) {
            let family = platform_family(p.group.as_deref());
            add(&mut sums, (r.kpi, "all".to_owned(), family), p);
        }
    }
    sums.into_iter()
        .filter(|(_, s)| s.den > 0)
        .map(|(k, s)| {
            let per = if scale.get(k.0) == Some(&Unit::PerThousand) {
                1000.0
            } else {
                1.0
            };
            #[allow(clippy::cast_precision_loss)]
            let v = per * s.num / s.den as f64;
            (k, v)
        })
        .collect()
}

fn add(
    sums: &mut BTreeMap<(&'static str, String, &'static str), Sum>,
    key: (&'static str, String, &'static str),
    p: &kpi::report::Point,
) {
    let s = sums.entry(key).or_default();
    s.num += p
        .numerator
        .as_ref()
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    s.den += p.denominator;
}

/// The gauges, registered once.
#[derive(Debug, Clone)]
pub struct KpiGauges {
    ratio: GaugeVec,
    per_thousand: GaugeVec,
    refreshed: Gauge,
    errors: IntCounter,
}

impl KpiGauges {
    /// Creates `keyshift_kpi_ratio`, `keyshift_kpi_per_thousand`, the refresh timestamp and
    /// the refresh error counter, and registers them; fails if any is already registered.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar::new(registry);
        let labels = &["kpi", "rp_id", "platform"];
        let ratio = r.gauge_vec(
            "keyshift_kpi_ratio",
            "KPI values over the trailing kpi_gauges.window (definitions: docs/kpis.md).",
            labels,
        )?;
        let per_thousand = r.gauge_vec(
            "keyshift_kpi_per_thousand",
            "KPI values per 1,000 over the trailing kpi_gauges.window.",
            labels,
        )?;
        let refreshed = r.gauge(
            "keyshift_kpi_refresh_timestamp_seconds",
            "Unix time of the last successful KPI gauge refresh.",
        )?;
        let errors = r.counter(
            "keyshift_kpi_refresh_errors_total",
            "KPI gauge refreshes that failed (retried next interval).",
        )?;
        Ok(Self {
            ratio,
            per_thousand,
            refreshed,
            errors,
        })
    }

    /// Logs and counts a refresh that failed (retried next interval).
    fn refresh_failed(&self, e: &MetricsError) {
        warn!(error = %e, "refreshing the KPI gauges failed; retrying next interval");
        self.errors.inc();
    }

    /// Replaces every gauge value by `points`: label sets that vanished
    /// (a relying party gone quiet) vanish from `/metrics` too.
    fn publish(&self, points: &Points) {
        self.ratio.reset();
        self.per_thousand.reset();
        for ((kpi, rp, platform), v) in points {
            let g = if kpi::catalog::find(kpi).map(|k| k.unit) == Some(Unit::PerThousand) {
                &self.per_thousand
            } else {
                &self.ratio
            };
            g.with_label_values(&[kpi, rp.as_str(), platform]).set(*v);
        }
        #[allow(clippy::cast_precision_loss)]
        self.refreshed
            .set(Utc::now().timestamp_millis() as f64 / 1000.0);
    }
}

/// Computes the gauge values once.
pub async fn refresh(
    engine: &QueryEngine,
    cfg: &KpiGaugeConfig,
    watermark: DateTime<Utc>,
    known: &HashSet<String>,
) -> Result<Points> {
    let window = chrono::Duration::from_std(cfg.window).unwrap_or(chrono::Duration::days(7));
    let report = |by: By| {
        let mut p = RawParams {
            from: Some((watermark - window).to_rfc3339()),
            to: Some(watermark.to_rfc3339()),
            interval: Some("week".to_owned()),
            by: Some(by.as_str().to_owned()),
            ..RawParams::default()
        };
        p.add_kpis(&GAUGE_KPIS.join(","));
        p.check(watermark)
    };
    let by_rp = kpi::kpis(engine, &report(By::RpId)?, Some(watermark)).await?;
    let by_platform = kpi::kpis(engine, &report(By::Platform)?, Some(watermark)).await?;
    Ok(gauge_points(&by_rp, &by_platform, known, cfg.max_rp_labels))
}

/// Refreshes the gauges every `cfg.interval` until `shutdown`. A failed
/// refresh is counted and logged; the previous values stay.
pub async fn run(
    engine: QueryEngine,
    cfg: KpiGaugeConfig,
    gauges: KpiGauges,
    watermark: crate::Watermark,
    known: HashSet<String>,
    shutdown: CancellationToken,
) {
    // The first refresh one interval after start, not during start-up. Each
    // refresh takes one ad-hoc query slot while it runs.
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + cfg.interval, cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = watermark().unwrap_or_else(Utc::now);
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = refresh(&engine, &cfg, now, &known) => r,
        };
        match result {
            Ok(points) => {
                debug!(values = points.len(), "KPI gauges refreshed");
                gauges.publish(&points);
            }
            Err(e) => gauges.refresh_failed(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_families_are_bounded() {
        for (os, family) in [
            (Some("iOS"), "ios"),
            (Some("iPadOS"), "ios"),
            (Some("Android"), "android"),
            (Some("Windows 11"), "windows"),
            (Some("macOS"), "macos"),
            (Some("Mac OS X"), "macos"),
            (Some("ChromeOS"), "chromeos"),
            (Some("Linux"), "linux"),
            (Some("PlayStation"), "other"),
            (Some(""), "unknown"),
            (None, "unknown"),
        ] {
            assert_eq!(platform_family(os), family, "{os:?}");
            assert!(PLATFORMS.contains(&family));
        }
    }

    #[test]
    fn the_gauge_kpis_are_in_the_catalog() {
        for k in GAUGE_KPIS {
            assert!(kpi::catalog::find(k).is_some(), "{k}");
        }
    }
}
