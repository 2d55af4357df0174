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

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::assign::format_percent;
use crate::config::RolloutConfig;
use crate::decision::RolloutState;
use crate::observe::Observation;
pub use crate::outcome::Outcome;

mod checks;
mod guardrail;
pub use guardrail::{Arm, Check, Verdict};

/// Everything an evaluation looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The rollout's configuration.
    pub cfg: &'a RolloutConfig,
    /// Its state, folded from the decision log.
    pub state: &'a RolloutState,
    /// The evaluation's clock.
    pub now: DateTime<Utc>,
    /// The store's ingest watermark; `None` when unknown, which counts as stale.
    pub watermark: Option<DateTime<Utc>>,
    /// `None` when the data is stale (not queried).
    pub observation: Option<&'a Observation>,
    /// Why the store could not be read, when it could not (see
    /// [`keyshift_store::StoreError::is_starved`]).
    pub starved: Option<&'a str>,
    /// One-sided significance of the guardrail tests ([`RolloutSettings::alpha`]).
    ///
    /// [`RolloutSettings::alpha`]: crate::RolloutSettings::alpha
    pub alpha: f64,
    /// A sample-ratio mismatch is declared below this p-value.
    pub srm_p_value: f64,
}

/// Whether the watermark is recent enough to judge on.
pub fn is_fresh(cfg: &RolloutConfig, watermark: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let freshness = chrono::Duration::from_std(cfg.freshness).unwrap_or(chrono::Duration::MAX);
    watermark.is_some_and(|w| now - w <= freshness)
}

/// Judges one evaluation: the six checks of the module docs, in order; the
/// first that decides is the outcome.
pub fn judge(i: Inputs<'_>) -> Outcome {
    let mut evidence = base_evidence(&i);
    let obs = match checks::data(&i, &mut evidence) {
        Ok(obs) => obs,
        Err(hold) => return hold,
    };
    if let Some(hold) = checks::traffic(&i, obs, &mut evidence) {
        return hold;
    }
    if let Some(hold) = checks::sample_ratio(&i, obs, &mut evidence) {
        return hold;
    }
    let mut judged = checks::guardrails(&i, obs, &mut evidence);
    if let Some(outcome) = checks::breaches(&i, &mut judged, &mut evidence) {
        return outcome;
    }
    if let Some(hold) = checks::certainty(&i, &mut judged, &mut evidence) {
        return hold;
    }
    checks::progress(&i, obs, judged.breaches, evidence)
}

/// What every decision's evidence starts with: where the rollout stands
/// and what the evaluation was given.
fn base_evidence(i: &Inputs<'_>) -> Value {
    let (cfg, st) = (i.cfg, i.state);
    json!({
        "step": st.step.map(|s| s + 1),
        "steps": cfg.steps.len(),
        "percent": format_percent(st.percent),
        "window_start": st.step_started_at,
        "now": i.now,
        "watermark": i.watermark,
        "freshness_s": cfg.freshness.as_secs(),
        "config_hash": cfg.hash(),
        "alpha": i.alpha,
    })
}

#[cfg(test)]
mod tests;
