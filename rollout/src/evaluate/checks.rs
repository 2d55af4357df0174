//! The six checks of an evaluation, in the order `judge` applies them. Each
//! adds what it looked at to the evidence and returns an outcome when it
//! decides; otherwise the next check runs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::guardrail::{Check, Verdict, check};
use super::{Inputs, Outcome, is_fresh};
use crate::assign::FULL;
use crate::config::{GuardrailKind, Severity};
use crate::decision::{Action, HoldReason, Phase};
use crate::observe::{Observation, Variant};
use crate::stats;

/// Holds with the state's own breach counters (nothing was judged).
fn hold_as_is(i: &Inputs<'_>, reason: HoldReason, evidence: &mut Value) -> Outcome {
    Outcome::hold(
        i.state,
        reason,
        i.state.breaches.clone(),
        std::mem::take(evidence),
    )
}

/// 1. Is there data to judge? A starved store or a stale watermark holds:
///    nothing is judged on missing data, and the counters are kept.
pub(super) fn data<'a>(i: &Inputs<'a>, evidence: &mut Value) -> Result<&'a Observation, Outcome> {
    if let Some(error) = i.starved {
        evidence["error"] = json!(error);
        return Err(hold_as_is(i, HoldReason::Starved, evidence));
    }
    match i.observation {
        Some(o) if is_fresh(i.cfg, i.watermark, i.now) => Ok(o),
        _ => Err(hold_as_is(i, HoldReason::StaleData, evidence)),
    }
}

/// 2. Any events in the window at all?
pub(super) fn traffic(i: &Inputs<'_>, obs: &Observation, evidence: &mut Value) -> Option<Outcome> {
    evidence["events"] = json!(obs.events());
    evidence["users"] = json!({
        "treatment": obs.users(Variant::Treatment),
        "control": obs.users(Variant::Control),
    });
    (obs.events() == 0).then(|| hold_as_is(i, HoldReason::NoTraffic, evidence))
}

/// 3. Sample-ratio mismatch: users per variant against the split, once
///    there are enough of them.
pub(super) fn sample_ratio(
    i: &Inputs<'_>,
    obs: &Observation,
    evidence: &mut Value,
) -> Option<Outcome> {
    let st = i.state;
    let share = f64::from(st.percent) / f64::from(FULL);
    let (ut, uc) = (obs.users(Variant::Treatment), obs.users(Variant::Control));
    if st.percent == 0 || st.percent >= FULL || ut + uc < i.cfg.srm_min_users {
        return None;
    }
    let p = stats::srm_p_value(ut, uc, share);
    evidence["srm"] = json!({
        "expected_share": share,
        "observed_share": ut as f64 / (ut + uc) as f64,
        "p_value": p,
        "threshold": i.srm_p_value,
    });
    (p < i.srm_p_value).then(|| hold_as_is(i, HoldReason::Srm, evidence))
}

/// Every guardrail on every segment, with the updated breach counters.
#[derive(Debug)]
pub(super) struct Judged {
    pub checks: Vec<Check>,
    pub breaches: BTreeMap<String, u32>,
    /// The whole population's verdicts, which alone gate an advance.
    pub insufficient: bool,
    pub inconclusive: bool,
}

/// Judges every guardrail (the input of checks 4 and 5).
pub(super) fn guardrails(i: &Inputs<'_>, obs: &Observation, evidence: &mut Value) -> Judged {
    let st = i.state;
    let z = stats::normal_quantile(1.0 - i.alpha);
    let mut judged = Judged {
        checks: Vec::new(),
        breaches: BTreeMap::new(),
        insufficient: false,
        inconclusive: false,
    };
    for g in &i.cfg.guardrails {
        let mut segments = vec![None];
        if let Some(b) = g.breakdown {
            segments.extend(obs.segments(b).into_iter().map(|v| Some((b, v))));
        }
        for seg in segments {
            let seg_ref = seg.as_ref().map(|(b, v)| (*b, v.as_str()));
            let mut c = check(g, obs, seg_ref, st.percent, z, i.alpha);
            if c.verdict == Verdict::Breach {
                let key = format!("{}@{}", g.key(), c.segment);
                let n = st.breaches.get(&key).copied().unwrap_or(0) + 1;
                judged.breaches.insert(key, n);
                c.consecutive = n;
            }
            if seg.is_none() {
                judged.insufficient |= c.verdict == Verdict::InsufficientSample;
                judged.inconclusive |= c.verdict == Verdict::Inconclusive;
            }
            judged.checks.push(c);
        }
    }
    evidence["guardrails"] = serde_json::to_value(&judged.checks).unwrap_or(Value::Null);
    judged
}

/// 4. Breaches: confirmed ones (`consecutive_breaches` in a row) act by
///    the gravest severity among them; unconfirmed ones hold.
pub(super) fn breaches(
    i: &Inputs<'_>,
    judged: &mut Judged,
    evidence: &mut Value,
) -> Option<Outcome> {
    let worst = judged
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Breach && c.consecutive >= c.required)
        .max_by_key(|c| c.severity);
    let Some(worst) = worst else {
        let breaches = std::mem::take(&mut judged.breaches);
        return (!breaches.is_empty()).then(|| {
            Outcome::hold(
                i.state,
                HoldReason::BreachUnconfirmed,
                breaches,
                std::mem::take(evidence),
            )
        });
    };
    let detail = format!(
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
    );
    evidence["trigger"] = serde_json::to_value(worst).unwrap_or(Value::Null);
    let evidence = std::mem::take(evidence);
    let (cfg, st) = (i.cfg, i.state);
    let outcome = match worst.severity {
        Severity::Hold => Outcome::hold(
            st,
            HoldReason::Guardrail,
            std::mem::take(&mut judged.breaches),
            evidence,
        ),
        Severity::Rollback => {
            let to_step = st.step.and_then(|s| s.checked_sub(1));
            Outcome::move_to(cfg, Action::Rollback, Phase::Paused, to_step, evidence)
        }
        Severity::Abort => Outcome::move_to(cfg, Action::Abort, Phase::Aborted, None, evidence),
    };
    Some(outcome.with_detail(detail))
}

/// 5. Enough data, and a clear answer? A guardrail short of its minimum
///    sample, or whose interval straddles its bound, holds (never an
///    advance).
pub(super) fn certainty(
    i: &Inputs<'_>,
    judged: &mut Judged,
    evidence: &mut Value,
) -> Option<Outcome> {
    let reason = if judged.insufficient {
        HoldReason::InsufficientSample
    } else if judged.inconclusive {
        HoldReason::Inconclusive
    } else {
        return None;
    };
    let breaches = std::mem::take(&mut judged.breaches);
    Some(Outcome::hold(
        i.state,
        reason,
        breaches,
        std::mem::take(evidence),
    ))
}

/// 6. Healthy: dwell time, then exposed users, then advance (or complete
///    at the last step).
pub(super) fn progress(
    i: &Inputs<'_>,
    obs: &Observation,
    breaches: BTreeMap<String, u32>,
    mut evidence: Value,
) -> Outcome {
    let (cfg, st) = (i.cfg, i.state);
    let Some(step) = st.step else {
        return Outcome::hold(st, HoldReason::Manual, breaches, evidence);
    };
    let step_cfg = &cfg.steps[step.min(cfg.steps.len() - 1)];
    let dwelt = i.now - st.step_started_at;
    evidence["dwell_s"] = json!(dwelt.num_seconds());
    evidence["min_dwell_s"] = json!(step_cfg.min_dwell.as_secs());
    evidence["min_exposed_users"] = json!(step_cfg.min_exposed_users);
    if dwelt < chrono::Duration::from_std(step_cfg.min_dwell).unwrap_or(chrono::Duration::MAX) {
        return Outcome::hold(st, HoldReason::Dwell, breaches, evidence);
    }
    if obs.users(Variant::Treatment) < step_cfg.min_exposed_users {
        return Outcome::hold(st, HoldReason::InsufficientSample, breaches, evidence);
    }
    if step + 1 >= cfg.steps.len() {
        return Outcome::complete(st, breaches, evidence);
    }
    Outcome::move_to(
        cfg,
        Action::Advance,
        Phase::Running,
        Some(step + 1),
        evidence,
    )
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
