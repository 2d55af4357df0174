//! Rollouts as configured (`[[rollout.rollouts]]` in the keyshift config).
//!
//! A running rollout's configuration is identified by a hash of its
//! canonical JSON form; a change is recorded as a `config_changed` decision
//! when the controller starts, never applied silently.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::assign::{Basis, FULL, format_percent, parse_percent};

/// The controller's settings and the rollouts it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSettings {
    /// Significance of every guardrail test (one-sided), and 1 − coverage of
    /// the intervals recorded as evidence.
    pub alpha: f64,
    /// A sample-ratio mismatch is declared below this p-value.
    pub srm_p_value: f64,
    /// Kafka mode (`kafka.brokers` set): decisions are also published here.
    pub decisions_topic: String,
    /// Kafka mode: the producer's fixed `transactional.id`; a second
    /// controller with the same id fences the first.
    pub transactional_id: String,
    /// The rollouts this controller runs; ids are unique.
    pub rollouts: Vec<RolloutConfig>,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            srm_p_value: 0.001,
            decisions_topic: "keyshift.rollout-decisions".to_owned(),
            transactional_id: "keyshift-rollout-controller".to_owned(),
            rollouts: Vec::new(),
        }
    }
}

/// The migration stage a rollout moves (one rollout per stage per RP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Offer (never impose) passkey creation after a password sign-in.
    EnrollmentPrompt,
    /// Passkey is the default sign-in for users who have one.
    PasskeyDefault,
    /// Password sign-in no longer required for users with ≥ 2 credentials or recovery codes.
    PasswordOptional,
    /// Campaign for users who did not adopt a passkey after some months.
    ProactiveMigration,
}

/// One rollout: a relying party's migration stage, its exposure steps and its guardrails.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// `[a-z0-9._-]`, at most 64 characters.
    pub id: String,
    /// The relying party whose events the rollout is judged on; its RP token may assign.
    pub rp_id: String,
    /// The migration stage this rollout moves.
    pub stage: Stage,
    /// The hashing salt (Unleash's groupId). Default: the id. Changing it
    /// would reshuffle who is exposed, so a running rollout keeps the one it
    /// started with.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Exposure steps, in strictly increasing percent; at least one.
    pub steps: Vec<StepConfig>,
    /// Checks judged at every evaluation; none means only freshness, traffic, sample
    /// ratio, dwell and exposure gate an advance.
    #[serde(default)]
    pub guardrails: Vec<GuardrailConfig>,
    /// Time between evaluations (at least 1 s; default 5 min).
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub evaluation_interval: Duration,
    /// The store's ingest watermark may lag the clock by at most this much;
    /// older data holds the rollout (`stale_data`).
    #[serde(with = "humantime_serde", default = "default_freshness")]
    pub freshness: Duration,
    /// Distinct users (both variants) before the sample-ratio test runs.
    #[serde(default = "default_srm_min_users")]
    pub srm_min_users: u64,
}

fn default_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_freshness() -> Duration {
    Duration::from_secs(900)
}

fn default_srm_min_users() -> u64 {
    1000
}

/// One exposure step of a rollout and what it needs before advancing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Exposure, 0.01 to 100, two decimals at most.
    #[serde(
        serialize_with = "crate::decision::percent::serialize",
        deserialize_with = "de_percent"
    )]
    pub percent: Basis,
    /// Time at this step before it may advance.
    #[serde(with = "humantime_serde", default)]
    pub min_dwell: Duration,
    /// Distinct exposed users seen in the step's window before it may
    /// advance.
    #[serde(default)]
    pub min_exposed_users: u64,
}

fn de_percent<'de, D: Deserializer<'de>>(d: D) -> Result<Basis, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        N(f64),
        S(String),
    }
    let text = match P::deserialize(d)? {
        P::N(n) => {
            // Back to text so 0.1 + rounding cannot smuggle in a third decimal.
            let s = format!("{n}");
            if s.contains('e') {
                format!("{n:.4}")
            } else {
                s
            }
        }
        P::S(s) => s,
    };
    match parse_percent(&text) {
        Some(b) if b > 0 => Ok(b),
        _ => Err(serde::de::Error::custom(format!(
            "percent {text:?} must be between 0.01 and 100 with at most two decimals"
        ))),
    }
}

/// What a guardrail measures. Each is a proportion of events of the
/// rollout in the step's window, per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Passkey `auth.failed` / passkey `auth.started`.
    PasskeyErrorRate,
    /// `auth.fallback` from passkey / passkey `auth.started`.
    FallbackRate,
    /// `recovery.started` / `auth.started` (per sign-in attempt).
    RecoveryRate,
    /// `auth.succeeded` / `auth.started`, all methods.
    SignInSuccess,
    /// `enrollment.failed` / `enrollment.started`.
    EnrollmentFailureRate,
    /// `support.contacted` / `auth.started`.
    SupportContactRate,
}

impl Metric {
    /// The snake_case name used in configuration, evidence and guardrail keys.
    pub fn name(self) -> &'static str {
        match self {
            Metric::PasskeyErrorRate => "passkey_error_rate",
            Metric::FallbackRate => "fallback_rate",
            Metric::RecoveryRate => "recovery_rate",
            Metric::SignInSuccess => "sign_in_success",
            Metric::EnrollmentFailureRate => "enrollment_failure_rate",
            Metric::SupportContactRate => "support_contact_rate",
        }
    }

    /// Which way is worse when a guardrail does not say: lower for sign-in success,
    /// higher for every other metric.
    pub fn default_direction(self) -> Direction {
        match self {
            Metric::SignInSuccess => Direction::LowerIsWorse,
            _ => Direction::HigherIsWorse,
        }
    }
}

/// How a guardrail's threshold is read: against a fixed rate or against the control group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailKind {
    /// The treatment's rate against `threshold` (a proportion, 0.05 = 5 %).
    Absolute,
    /// The treatment's rate against the control's: a breach when it is
    /// worse by more than `threshold` × the control's rate (0.2 = 20 %).
    Relative,
}

/// Which way a metric moves when things get worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A rise of the metric is a regression (error, fallback, recovery rates).
    HigherIsWorse,
    /// A fall of the metric is a regression (sign-in success).
    LowerIsWorse,
}

/// What a confirmed breach does. Ordered by gravity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Stay at the current step (hold reason `guardrail`) while the breach lasts.
    Hold,
    /// Back to the previous step (0 % from the first), then paused.
    Rollback,
    /// To 0 %, aborted.
    Abort,
}

/// A dimension a guardrail is also checked along, so that a shift in the
/// mix cannot hide a regression on one platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breakdown {
    /// `client.os`.
    Platform,
    /// `client.browser`.
    Browser,
}

/// A check on one metric that can hold, roll back or abort the rollout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    /// What is measured.
    pub metric: Metric,
    /// Whether `threshold` is an absolute rate or a margin relative to control.
    pub kind: GuardrailKind,
    /// Absolute: a proportion in 0..=1 (0.05 = 5 %). Relative: a fraction of the
    /// control's rate (0.2 = 20 % worse). Never negative.
    pub threshold: f64,
    /// Default: the metric's (higher is worse except for sign-in success).
    #[serde(default)]
    pub direction: Option<Direction>,
    /// What a confirmed breach does.
    pub severity: Severity,
    /// Denominator events per variant (per segment with a breakdown) before
    /// the guardrail is judged.
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    /// Evaluations in a row that must breach before the severity applies.
    #[serde(default = "default_consecutive")]
    pub consecutive_breaches: u32,
    /// Also judge every platform or browser segment; None judges the whole population only.
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
}

fn default_min_events() -> u64 {
    200
}

fn default_consecutive() -> u32 {
    2
}

impl GuardrailConfig {
    /// The configured direction, or the metric's default.
    pub fn direction(&self) -> Direction {
        self.direction
            .unwrap_or_else(|| self.metric.default_direction())
    }

    /// A stable name for counters and evidence.
    pub fn key(&self) -> String {
        let kind = match self.kind {
            GuardrailKind::Absolute => "absolute",
            GuardrailKind::Relative => "relative",
        };
        format!("{}:{kind}", self.metric.name())
    }
}

impl RolloutConfig {
    /// The hashing salt as configured: `group_id`, or the rollout id when unset.
    pub fn group_id(&self) -> &str {
        self.group_id.as_deref().unwrap_or(&self.id)
    }

    /// Hash of the canonical JSON form (serde field order is fixed).
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(&Sha256::digest(&json)[..8])
    }

    /// Exposure of a step, in [`Basis`] units; 0 for `None` (no step) or an index past
    /// the last step.
    pub fn step_percent(&self, step: Option<usize>) -> Basis {
        step.and_then(|i| self.steps.get(i))
            .map_or(0, |s| s.percent)
    }

    /// Appends one message per problem (id, rp_id, steps, interval, freshness,
    /// guardrail thresholds and counts) to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        let at = format!("rollout {:?}", self.id);
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !id_ok {
            errors.push(format!(
                "{at}: the id must be 1-64 characters of a-z, 0-9, '.', '_', '-'"
            ));
        }
        if self.rp_id.is_empty() {
            errors.push(format!("{at}: rp_id must not be empty"));
        }
        if self.steps.is_empty() {
            errors.push(format!("{at}: at least one step is needed"));
        }
        for w in self.steps.windows(2) {
            if w[1].percent <= w[0].percent {
                errors.push(format!(
                    "{at}: steps must increase ({}% then {}%)",
                    format_percent(w[0].percent),
                    format_percent(w[1].percent)
                ));
            }
        }
        if self.steps.last().is_some_and(|s| s.percent > FULL) {
            errors.push(format!("{at}: no step may exceed 100%"));
        }
        if self.evaluation_interval < Duration::from_secs(1) {
            errors.push(format!("{at}: evaluation_interval must be at least 1s"));
        }
        if self.freshness.is_zero() {
            errors.push(format!("{at}: freshness must be more than 0"));
        }
        for g in &self.guardrails {
            let name = g.key();
            if !(g.threshold.is_finite() && g.threshold >= 0.0) {
                errors.push(format!("{at}: guardrail {name}: threshold must be ≥ 0"));
            }
            if g.kind == GuardrailKind::Absolute && g.threshold > 1.0 {
                errors.push(format!(
                    "{at}: guardrail {name}: an absolute threshold is a proportion (0..1)"
                ));
            }
            if g.consecutive_breaches == 0 {
                errors.push(format!(
                    "{at}: guardrail {name}: consecutive_breaches must be at least 1"
                ));
            }
            if g.min_events == 0 {
                errors.push(format!(
                    "{at}: guardrail {name}: min_events must be at least 1"
                ));
            }
        }
    }
}

impl RolloutSettings {
    /// Every problem with the settings and each rollout, as messages; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            errors.push("rollout.alpha must be in (0, 0.5)".to_owned());
        }
        if !(self.srm_p_value > 0.0 && self.srm_p_value < 0.5) {
            errors.push("rollout.srm_p_value must be in (0, 0.5)".to_owned());
        }
        if self.decisions_topic.is_empty() {
            errors.push("rollout.decisions_topic must not be empty".to_owned());
        }
        if self.transactional_id.is_empty() {
            errors.push("rollout.transactional_id must not be empty".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        for r in &self.rollouts {
            if !seen.insert(&r.id) {
                errors.push(format!("rollout {:?} is defined twice", r.id));
            }
            r.validate(&mut errors);
        }
        errors
    }

    /// The configured rollout with this id, if any.
    pub fn get(&self, id: &str) -> Option<&RolloutConfig> {
        self.rollouts.iter().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<RolloutConfig, String> {
        #[derive(Deserialize)]
        struct W {
            r: RolloutConfig,
        }
        let v: serde_json::Value = serde_json::from_str(toml_text).map_err(|e| e.to_string())?;
        serde_json::from_value::<W>(v)
            .map(|w| w.r)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn percents_take_two_decimals_and_no_more() {
        let ok = parse(
            r#"{"r": {"id": "a", "rp_id": "x", "stage": "passkey_default",
                "steps": [{"percent": 0.01}, {"percent": "12.5"}, {"percent": 100}]}}"#,
        )
        .expect("valid");
        assert_eq!(
            ok.steps.iter().map(|s| s.percent).collect::<Vec<_>>(),
            vec![1, 1250, 10_000]
        );
        for bad in ["0.001", "0", "100.5", "-1"] {
            let text = format!(
                r#"{{"r": {{"id": "a", "rp_id": "x", "stage": "passkey_default", "steps": [{{"percent": "{bad}"}}]}}}}"#
            );
            assert!(parse(&text).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn validation_reports_every_problem() {
        let r = parse(
            r#"{"r": {"id": "Bad Id", "rp_id": "", "stage": "passkey_default",
                "steps": [{"percent": 5}, {"percent": 1}],
                "guardrails": [{"metric": "fallback_rate", "kind": "absolute", "threshold": 2,
                                "severity": "hold", "consecutive_breaches": 0}]}}"#,
        )
        .expect("parses");
        let mut errors = Vec::new();
        r.validate(&mut errors);
        assert_eq!(errors.len(), 5, "{errors:#?}");
    }

    #[test]
    fn the_hash_changes_with_the_config() {
        let a = parse(
            r#"{"r": {"id": "a", "rp_id": "x", "stage": "passkey_default", "steps": [{"percent": 1}]}}"#,
        )
        .expect("valid");
        let mut b = a.clone();
        assert_eq!(a.hash(), b.hash());
        b.steps[0].percent = 2;
        assert_ne!(a.hash(), b.hash());
    }
}
