//! One evaluation of one rollout: a pure function of its configuration, its
//! state, the observation of its window, the watermark and the clock.
//!
//! Order of checks (the first that applies decides):
//! 1. stale data (watermark older than `freshness`) → hold `stale_data`;
//!    nothing is judged on missing data;
//!    the store did not answer the evaluation's queries (no query slot, the
//!    time or memory limit) → hold `starved`, likewise judging nothing;
//! 2. no events in the window → hold `no_traffic`;
//! 3. sample-ratio mismatch → hold `srm`;
//! 4. guardrails, per segment: confirmed breaches (`consecutive_breaches`
//!    in a row) act by their gravest severity (abort > rollback > hold);
//!    unconfirmed ones hold `breach_unconfirmed`;
//! 5. any guardrail short of its minimum sample → hold `insufficient_sample`;
//!    any interval straddling its threshold → hold `inconclusive` (never an
//!    advance);
//! 6. dwell time, then exposed users, then advance (or complete at the last
//!    step).
//!
//! With a breakdown, a guardrail is judged on the whole population and on
//! every segment (platform or browser) that has its minimum sample: any of
//! them may breach; only the whole population gates an advance, so a rare
//! platform cannot stall a rollout forever.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::assign::{Basis, FULL, format_percent};
use crate::config::{Direction, GuardrailConfig, GuardrailKind, RolloutConfig, Severity};
use crate::decision::{Action, HoldReason, Phase, RolloutState};
use crate::observe::{Observation, Variant};
use crate::stats;

/// What an evaluation concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub action: Action,
    pub hold: Option<HoldReason>,
    /// What triggered a rollback / abort / advance, for the log.
    pub detail: Option<String>,
    pub phase: Phase,
    pub to_step: Option<usize>,
    pub to_percent: Basis,
    pub breaches: BTreeMap<String, u32>,
    pub evidence: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Breach,
    Inconclusive,
    InsufficientSample,
    /// A relative guardrail with no control group (at 100 %).
    NotApplicable,
}

/// One guardrail on one segment.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub guardrail: String,
    pub metric: &'static str,
    pub kind: GuardrailKind,
    pub direction: Direction,
    pub severity: Severity,
    /// `all`, or `platform=iOS`, `browser=Safari`.
    pub segment: String,
    pub treatment: Arm,
    pub control: Arm,
    /// The interval judged: the treatment's rate (absolute) or treatment −
    /// control (relative).
    pub interval: Option<(f64, f64)>,
    /// The bound the interval is judged against: the threshold (absolute)
    /// or the allowed difference, `threshold × control rate` (relative).
    pub limit: f64,
    pub threshold: f64,
    pub min_events: u64,
    pub verdict: Verdict,
    pub consecutive: u32,
    pub required: u32,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Arm {
    pub x: u64,
    pub n: u64,
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

/// Everything an evaluation looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub cfg: &'a RolloutConfig,
    pub state: &'a RolloutState,
    pub now: DateTime<Utc>,
    pub watermark: Option<DateTime<Utc>>,
    /// `None` when the data is stale (not queried).
    pub observation: Option<&'a Observation>,
    /// Why the store could not be read, when it could not (see
    /// [`keyshift_store::StoreError::is_starved`]).
    pub starved: Option<&'a str>,
    pub alpha: f64,
    pub srm_p_value: f64,
}

/// Whether the watermark is recent enough to judge on.
pub fn is_fresh(cfg: &RolloutConfig, watermark: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let freshness = chrono::Duration::from_std(cfg.freshness).unwrap_or(chrono::Duration::MAX);
    watermark.is_some_and(|w| now - w <= freshness)
}

pub fn judge(i: Inputs<'_>) -> Outcome {
    let cfg = i.cfg;
    let st = i.state;
    let base = json!({
        "step": st.step.map(|s| s + 1),
        "steps": cfg.steps.len(),
        "percent": format_percent(st.percent),
        "window_start": st.step_started_at,
        "now": i.now,
        "watermark": i.watermark,
        "freshness_s": cfg.freshness.as_secs(),
        "config_hash": cfg.hash(),
        "alpha": i.alpha,
    });
    let hold = |reason: HoldReason, breaches: BTreeMap<String, u32>, evidence: Value| Outcome {
        action: Action::Hold,
        hold: Some(reason),
        detail: None,
        phase: st.phase,
        to_step: st.step,
        to_percent: st.percent,
        breaches,
        evidence,
    };
    if let Some(error) = i.starved {
        let mut evidence = base;
        evidence["error"] = json!(error);
        return hold(HoldReason::Starved, st.breaches.clone(), evidence);
    }
    let obs = match i.observation {
        Some(o) if is_fresh(cfg, i.watermark, i.now) => o,
        // Never advance nor roll back on missing data; keep the counters.
        _ => return hold(HoldReason::StaleData, st.breaches.clone(), base),
    };
    let mut evidence = base;
    evidence["events"] = json!(obs.events());
    evidence["users"] = json!({
        "treatment": obs.users(Variant::Treatment),
        "control": obs.users(Variant::Control),
    });
    if obs.events() == 0 {
        return hold(HoldReason::NoTraffic, st.breaches.clone(), evidence);
    }

    // Sample-ratio mismatch: users per variant against the split.
    let share = f64::from(st.percent) / f64::from(FULL);
    let (ut, uc) = (obs.users(Variant::Treatment), obs.users(Variant::Control));
    if st.percent > 0 && st.percent < FULL && ut + uc >= cfg.srm_min_users {
        let p = stats::srm_p_value(ut, uc, share);
        evidence["srm"] = json!({
            "expected_share": share,
            "observed_share": ut as f64 / (ut + uc) as f64,
            "p_value": p,
            "threshold": i.srm_p_value,
        });
        if p < i.srm_p_value {
            return hold(HoldReason::Srm, st.breaches.clone(), evidence);
        }
    }

    // Guardrails.
    let z = stats::normal_quantile(1.0 - i.alpha);
    let mut checks = Vec::new();
    let mut breaches = BTreeMap::new();
    let mut gate_insufficient = false;
    let mut gate_inconclusive = false;
    for g in &cfg.guardrails {
        let mut segments = vec![None];
        if let Some(b) = g.breakdown {
            segments.extend(obs.segments(b).into_iter().map(|v| Some((b, v))));
        }
        for seg in segments {
            let seg_ref = seg.as_ref().map(|(b, v)| (*b, v.as_str()));
            let mut c = check(g, obs, seg_ref, st.percent, z, i.alpha);
            let key = format!("{}@{}", g.key(), c.segment);
            if c.verdict == Verdict::Breach {
                let n = st.breaches.get(&key).copied().unwrap_or(0) + 1;
                breaches.insert(key, n);
                c.consecutive = n;
            }
            if seg.is_none() {
                gate_insufficient |= c.verdict == Verdict::InsufficientSample;
                gate_inconclusive |= c.verdict == Verdict::Inconclusive;
            }
            checks.push(c);
        }
    }
    evidence["guardrails"] = serde_json::to_value(&checks).unwrap_or(Value::Null);

    let confirmed: Vec<&Check> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Breach && c.consecutive >= c.required)
        .collect();
    if let Some(worst) = confirmed.iter().max_by_key(|c| c.severity) {
        let detail = Some(format!(
            "{} {} on {}: interval [{:.4}, {:.4}] beyond {:.4} ({} evaluations in a row)",
            worst.metric,
            match worst.kind {
                GuardrailKind::Absolute => "absolute",
                GuardrailKind::Relative => "relative to control",
            },
            worst.segment,
            worst.interval.map_or(f64::NAN, |x| x.0),
            worst.interval.map_or(f64::NAN, |x| x.1),
            worst.limit,
            worst.consecutive,
        ));
        evidence["trigger"] = serde_json::to_value(worst).unwrap_or(Value::Null);
        return match worst.severity {
            Severity::Hold => Outcome {
                detail,
                ..hold(HoldReason::Guardrail, breaches, evidence)
            },
            Severity::Rollback => {
                let to_step = st.step.and_then(|s| s.checked_sub(1));
                Outcome {
                    action: Action::Rollback,
                    hold: None,
                    detail,
                    phase: Phase::Paused,
                    to_step,
                    to_percent: cfg.step_percent(to_step),
                    // A new step, a new window: the counters start over.
                    breaches: BTreeMap::new(),
                    evidence,
                }
            }
            Severity::Abort => Outcome {
                action: Action::Abort,
                hold: None,
                detail,
                phase: Phase::Aborted,
                to_step: None,
                to_percent: 0,
                breaches: BTreeMap::new(),
                evidence,
            },
        };
    }
    if !breaches.is_empty() {
        return hold(HoldReason::BreachUnconfirmed, breaches, evidence);
    }
    if gate_insufficient {
        return hold(HoldReason::InsufficientSample, breaches, evidence);
    }
    if gate_inconclusive {
        return hold(HoldReason::Inconclusive, breaches, evidence);
    }

    // Healthy: dwell, exposure, then move on.
    let Some(step) = st.step else {
        return hold(HoldReason::Manual, breaches, evidence);
    };
    let step_cfg = &cfg.steps[step.min(cfg.steps.len() - 1)];
    let dwelt = i.now - st.step_started_at;
    evidence["dwell_s"] = json!(dwelt.num_seconds());
    evidence["min_dwell_s"] = json!(step_cfg.min_dwell.as_secs());
    evidence["min_exposed_users"] = json!(step_cfg.min_exposed_users);
    if dwelt < chrono::Duration::from_std(step_cfg.min_dwell).unwrap_or(chrono::Duration::MAX) {
        return hold(HoldReason::Dwell, breaches, evidence);
    }
    if ut < step_cfg.min_exposed_users {
        return hold(HoldReason::InsufficientSample, breaches, evidence);
    }
    if step + 1 >= cfg.steps.len() {
        return Outcome {
            action: Action::Complete,
            hold: None,
            detail: None,
            phase: Phase::Completed,
            to_step: st.step,
            to_percent: st.percent,
            breaches,
            evidence,
        };
    }
    let next = step + 1;
    Outcome {
        action: Action::Advance,
        hold: None,
        detail: None,
        phase: Phase::Running,
        to_step: Some(next),
        to_percent: cfg.steps[next].percent,
        breaches: BTreeMap::new(),
        evidence,
    }
}

fn check(
    g: &GuardrailConfig,
    obs: &Observation,
    seg: Option<(crate::config::Breakdown, &str)>,
    percent: Basis,
    z: f64,
    alpha: f64,
) -> Check {
    let (xt, nt) = obs.counts(Variant::Treatment, seg).ratio(g.metric);
    let (xc, nc) = obs.counts(Variant::Control, seg).ratio(g.metric);
    let segment = match seg {
        None => "all".to_owned(),
        Some((crate::config::Breakdown::Platform, v)) => format!("platform={v}"),
        Some((crate::config::Breakdown::Browser, v)) => format!("browser={v}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Cell, Counts};

    fn cfg(kind: &str, threshold: f64, percents: &[f64]) -> RolloutConfig {
        let steps: Vec<Value> = percents.iter().map(|p| json!({"percent": p})).collect();
        serde_json::from_value(json!({
            "id": "r", "rp_id": "x", "stage": "passkey_default", "steps": steps,
            "guardrails": [{"metric": "fallback_rate", "kind": kind, "threshold": threshold,
                            "severity": "hold", "min_events": 100, "consecutive_breaches": 1}],
            "srm_min_users": 1_000_000
        }))
        .expect("config")
    }

    fn obs(t: (u64, u64), c: (u64, u64)) -> Observation {
        let cell = |variant, (x, n): (u64, u64)| Cell {
            variant,
            platform: "iOS".into(),
            browser: "Safari".into(),
            counts: Counts {
                events: 2 * n,
                passkey_started: n,
                passkey_fallback: x,
                ..Counts::default()
            },
        };
        Observation {
            cells: vec![cell(Variant::Treatment, t), cell(Variant::Control, c)],
            users: [t.1, c.1],
        }
    }

    fn run(cfg: &RolloutConfig, step: usize, o: &Observation) -> Outcome {
        let now = Utc::now();
        let mut state = RolloutState::initial(cfg, now - chrono::Duration::hours(1));
        state.step = Some(step);
        state.percent = cfg.steps[step].percent;
        judge(Inputs {
            cfg,
            state: &state,
            now,
            watermark: Some(now),
            observation: Some(o),
            alpha: 0.05,
            srm_p_value: 0.001,
            starved: None,
        })
    }

    #[test]
    fn relative_guardrails_breach_pass_or_wait_for_data() {
        let c = cfg("relative", 0.2, &[10.0, 50.0, 100.0]);
        // 15 % against 10 %: 50 % worse, far beyond 20 %.
        let out = run(&c, 0, &obs((1500, 10_000), (10_000, 100_000)));
        assert_eq!(out.hold, Some(HoldReason::Guardrail), "{}", out.evidence);
        // Equal rates, lots of data: passes (and advances).
        let out = run(&c, 0, &obs((1000, 10_000), (10_000, 100_000)));
        assert_eq!(out.action, Action::Advance, "{}", out.evidence);
        // Equal rates, little data: inconclusive, which never advances.
        let out = run(&c, 0, &obs((20, 200), (200, 2000)));
        assert_eq!(out.hold, Some(HoldReason::Inconclusive), "{}", out.evidence);
        // Below the minimum: insufficient.
        let out = run(&c, 0, &obs((5, 50), (200, 2000)));
        assert_eq!(out.hold, Some(HoldReason::InsufficientSample));
        // At 100 % there is no control: not applicable, the rollout completes.
        let out = run(&c, 2, &obs((1000, 10_000), (0, 0)));
        assert_eq!(out.action, Action::Complete, "{}", out.evidence);
    }

    #[test]
    fn stale_data_is_never_judged() {
        let c = cfg("absolute", 0.01, &[10.0, 100.0]);
        let now = Utc::now();
        let state = RolloutState::initial(&c, now);
        let o = obs((900, 1000), (0, 1000));
        let out = judge(Inputs {
            cfg: &c,
            state: &state,
            now,
            watermark: Some(now - chrono::Duration::hours(2)),
            observation: Some(&o),
            alpha: 0.05,
            srm_p_value: 0.001,
            starved: None,
        });
        assert_eq!(out.hold, Some(HoldReason::StaleData));
    }

    #[test]
    fn a_starved_evaluation_holds_and_keeps_the_breach_counters() {
        let c = cfg("absolute", 0.01, &[10.0, 100.0]);
        let now = Utc::now();
        let mut state = RolloutState::initial(&c, now);
        state.breaches.insert("g@all".to_owned(), 1);
        let out = judge(Inputs {
            cfg: &c,
            state: &state,
            now,
            watermark: Some(now),
            observation: None,
            alpha: 0.05,
            srm_p_value: 0.001,
            starved: Some("query exceeded its time limit of 30s"),
        });
        assert_eq!(out.action, Action::Hold);
        assert_eq!(out.hold, Some(HoldReason::Starved));
        assert_eq!(out.to_percent, state.percent);
        assert_eq!(out.breaches, state.breaches);
        assert_eq!(
            out.evidence["error"],
            "query exceeded its time limit of 30s"
        );
    }
}
