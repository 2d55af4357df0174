//! One guardrail judged on one segment: the interval of the treatment's
//! rate (absolute) or of treatment − control (relative) against its bound.

use serde::Serialize;

use crate::assign::{Basis, FULL};
use crate::config::{Breakdown, Direction, GuardrailConfig, GuardrailKind, Severity};
use crate::observe::{Observation, Variant};
use crate::stats;

/// What one guardrail check concluded on one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole interval is on the good side of the limit.
    Pass,
    /// The whole interval is beyond the limit.
    Breach,
    /// The interval straddles the limit; holds the rollout, never advances it.
    Inconclusive,
    /// Fewer than `min_events` denominator events in a variant, or no interval could
    /// be computed.
    InsufficientSample,
    /// A relative guardrail with no control group (at 100 %).
    NotApplicable,
}

/// One guardrail on one segment.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The guardrail's key, `metric:kind` (e.g. `fallback_rate:relative`).
    pub guardrail: String,
    /// The metric's name.
    pub metric: &'static str,
    /// Absolute or relative to control.
    pub kind: GuardrailKind,
    /// Which way is worse, as configured or the metric's default.
    pub direction: Direction,
    /// What a confirmed breach does.
    pub severity: Severity,
    /// `all`, or `platform=iOS`, `browser=Safari`.
    pub segment: String,
    /// The exposed users' counts and rate.
    pub treatment: Arm,
    /// The control group's counts and rate.
    pub control: Arm,
    /// The interval judged: the treatment's rate (absolute) or treatment −
    /// control (relative). `None` when too few events, not applicable, or not computable.
    pub interval: Option<(f64, f64)>,
    /// The bound the interval is judged against: the threshold (absolute)
    /// or the allowed difference, `threshold × control rate` (relative).
    pub limit: f64,
    /// The configured threshold.
    pub threshold: f64,
    /// Denominator events each variant needs before the guardrail is judged.
    pub min_events: u64,
    /// What this check concluded.
    pub verdict: Verdict,
    /// Breaches in a row on this segment, including this one; 0 unless it breached.
    pub consecutive: u32,
    /// Breaches in a row needed before the severity applies (`consecutive_breaches`).
    pub required: u32,
}

/// One variant's counts for a guardrail's metric.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Arm {
    /// Numerator events (e.g. passkey `auth.failed`).
    pub x: u64,
    /// Denominator events (e.g. passkey `auth.started`).
    pub n: u64,
    /// `x / n`; `None` when `n` is 0.
    pub rate: Option<f64>,
}

impl Arm {
    fn new(x: u64, n: u64) -> Self {
        Self {
            x,
            n,
            rate: (n > 0).then(|| x as f64 / n as f64),
        }
    }
}

/// Judges `g` on `seg` (`None`: the whole population).
pub(super) fn check(
    g: &GuardrailConfig,
    obs: &Observation,
    seg: Option<(Breakdown, &str)>,
    percent: Basis,
    z: f64,
    alpha: f64,
) -> Check {
    let (xt, nt) = obs.counts(Variant::Treatment, seg).ratio(g.metric);
    let (xc, nc) = obs.counts(Variant::Control, seg).ratio(g.metric);
    let segment = match seg {
        None => "all".to_owned(),
        Some((Breakdown::Platform, v)) => format!("platform={v}"),
        Some((Breakdown::Browser, v)) => format!("browser={v}"),
    };
    let dir = g.direction();
    let mut c = Check {
        guardrail: g.key(),
        metric: g.metric.name(),
        kind: g.kind,
        direction: dir,
        severity: g.severity,
        segment,
        treatment: Arm::new(xt, nt),
        control: Arm::new(xc, nc),
        interval: None,
        limit: g.threshold,
        threshold: g.threshold,
        min_events: g.min_events,
        verdict: Verdict::InsufficientSample,
        consecutive: 0,
        required: g.consecutive_breaches,
    };
    match g.kind {
        GuardrailKind::Absolute => {
            if nt < g.min_events {
                return c;
            }
            let Some((lo, hi)) = stats::wilson(xt, nt, z) else {
                return c;
            };
            c.interval = Some((lo, hi));
            c.verdict = match dir {
                Direction::HigherIsWorse if lo > g.threshold => Verdict::Breach,
                Direction::HigherIsWorse if hi <= g.threshold => Verdict::Pass,
                Direction::LowerIsWorse if hi < g.threshold => Verdict::Breach,
                Direction::LowerIsWorse if lo >= g.threshold => Verdict::Pass,
                _ => Verdict::Inconclusive,
            };
        }
        GuardrailKind::Relative => {
            if percent >= FULL {
                c.verdict = Verdict::NotApplicable;
                return c;
            }
            if nt < g.min_events || nc < g.min_events {
                return c;
            }
            let pc = xc as f64 / nc as f64;
            // The allowed worsening: a share of the control's rate, with a
            // floor so that a control at 0 does not make any event a breach.
            let margin = (g.threshold * pc).max(1.0 / nc as f64);
            c.limit = margin;
            let Some((lo, hi)) = stats::difference_sequence(xt, nt, xc, nc, margin, alpha) else {
                return c;
            };
            c.interval = Some((lo, hi));
            c.verdict = match dir {
                Direction::HigherIsWorse if lo > margin => Verdict::Breach,
                Direction::HigherIsWorse if hi <= margin => Verdict::Pass,
                Direction::LowerIsWorse if hi < -margin => Verdict::Breach,
                Direction::LowerIsWorse if lo >= -margin => Verdict::Pass,
                _ => Verdict::Inconclusive,
            };
        }
    }
    c
}
