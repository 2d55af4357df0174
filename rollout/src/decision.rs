//! Decisions and the state they fold into.
//!
//! The decision log is the controller's only state: every change of a
//! rollout (step, phase, breach counters, group id, config hash) is a
//! [`Decision`], and [`RolloutState::apply`] folds decisions in order. A
//! controller that starts reads the log and folds it; replaying the same log
//! gives the same state, and replaying the same data and clock gives the
//! same decisions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyshift_store::DecisionRecord;
use serde::{Deserialize, Serialize};

use crate::assign::Basis;
use crate::config::RolloutConfig;

/// Where a rollout is in its life, after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Evaluated every interval; may advance.
    Running,
    /// Not advanced automatically (after a rollback, or by an operator);
    /// exposure stays where it is.
    Paused,
    /// At its last step, done.
    Completed,
    /// At 0 %, stopped.
    Aborted,
}

impl Phase {
    /// The snake_case name recorded in the decision log and shown by the API.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Completed => "completed",
            Phase::Aborted => "aborted",
        }
    }

    fn parse(s: &str) -> Phase {
        match s {
            "paused" => Phase::Paused,
            "completed" => Phase::Completed,
            "aborted" => Phase::Aborted,
            _ => Phase::Running,
        }
    }
}

/// What a decision did to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The rollout appeared in the configuration.
    Start,
    /// The evaluation passed: on to the next step (to the first, after a resume at 0 %).
    Advance,
    /// Stay at the current step; the decision's reason says why.
    Hold,
    /// Back to the previous step (0 % from the first), then paused; by a confirmed
    /// guardrail breach or an operator.
    Rollback,
    /// To 0 %, aborted; by a confirmed guardrail breach or an operator.
    Abort,
    /// The last step passed its checks (or was promoted past): completed at its exposure.
    Complete,
    /// An operator paused a running rollout; exposure stays.
    Pause,
    /// An operator set a paused or aborted rollout running again, at the same step.
    Resume,
    /// Manual advance to the next step, guardrails notwithstanding.
    Promote,
    /// The configuration differs from the one last recorded.
    ConfigChanged,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 10] = [
        Action::Start,
        Action::Advance,
        Action::Hold,
        Action::Rollback,
        Action::Abort,
        Action::Complete,
        Action::Pause,
        Action::Resume,
        Action::Promote,
        Action::ConfigChanged,
    ];

    /// The snake_case name recorded in the decision log and used as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Advance => "advance",
            Action::Hold => "hold",
            Action::Rollback => "rollback",
            Action::Abort => "abort",
            Action::Complete => "complete",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Promote => "promote",
            Action::ConfigChanged => "config_changed",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// Why a rollout holds. Each cause has its own name so that missing data is
/// never mistaken for a regression or for health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// The store's ingest watermark is older than the freshness requirement.
    StaleData,
    /// No events of this rollout in the window.
    NoTraffic,
    /// A guardrail (or the step's exposure) lacks its minimum sample.
    InsufficientSample,
    /// Enough data, but an interval straddles a threshold.
    Inconclusive,
    /// The users per variant are far from the configured split.
    Srm,
    /// A guardrail breached, fewer times in a row than it requires.
    BreachUnconfirmed,
    /// A guardrail of severity `hold` breached, confirmed.
    Guardrail,
    /// The step's minimum dwell time has not passed.
    Dwell,
    /// Paused by an operator (or after a rollback).
    Manual,
    /// The store did not answer the evaluation's queries (no query slot,
    /// time or memory limit): nothing was judged.
    Starved,
}

impl HoldReason {
    /// The snake_case name recorded as the decision's reason and used as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            HoldReason::StaleData => "stale_data",
            HoldReason::NoTraffic => "no_traffic",
            HoldReason::InsufficientSample => "insufficient_sample",
            HoldReason::Inconclusive => "inconclusive",
            HoldReason::Srm => "srm",
            HoldReason::BreachUnconfirmed => "breach_unconfirmed",
            HoldReason::Guardrail => "guardrail",
            HoldReason::Dwell => "dwell",
            HoldReason::Manual => "manual",
            HoldReason::Starved => "starved",
        }
    }
}

/// One decision with everything it was based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The rollout decided on.
    pub rollout_id: String,
    /// 1, 2, 3… per rollout; the log's order.
    pub seq: i64,
    /// When the decision was made (the controller's clock).
    pub decided_at: DateTime<Utc>,
    /// What the decision did.
    pub action: Action,
    /// A hold reason, an operator's reason, or what triggered the action.
    pub reason: Option<String>,
    /// `controller`, or the operator (`admin`, `open`).
    pub actor: String,
    /// The phase after this decision.
    pub phase: Phase,
    /// Index of the step before the decision; `None` is 0 %.
    pub from_step: Option<usize>,
    /// Index of the step after the decision; `None` is 0 %.
    pub to_step: Option<usize>,
    /// In JSON, a percentage (`12.5`); in memory, hundredths of a percent.
    #[serde(with = "percent")]
    pub from_percent: Basis,
    /// Exposure after the decision, in the same units as `from_percent`.
    #[serde(with = "percent")]
    pub to_percent: Basis,
    /// Hash of the rollout's configuration the decision was made under.
    pub config_hash: String,
    /// The hashing salt in force, fixed when the rollout started.
    pub group_id: String,
    /// The ingest watermark the evaluation saw; None when the decision came from no
    /// evaluation (operation, start, configuration change, advance from 0 % after a
    /// resume) or no watermark was known yet.
    pub watermark: Option<DateTime<Utc>>,
    /// Start of the evaluated window (when the step began); None when nothing was
    /// evaluated.
    pub window_start: Option<DateTime<Utc>>,
    /// End of the evaluated window (the watermark, at most now); None when nothing
    /// was evaluated.
    pub window_end: Option<DateTime<Utc>>,
    /// Consecutive breaches per guardrail and segment, after this decision.
    pub breaches: BTreeMap<String, u32>,
    /// What the decision was based on, as JSON: per guardrail and segment the counts,
    /// rates, interval, limit and verdict, the sample-ratio test, dwell and exposure;
    /// for operations, the operation and reason.
    pub evidence: serde_json::Value,
}

impl Decision {
    /// The row for the `rollout_decisions` table (percentages as percent, breaches and
    /// evidence as JSON text).
    pub fn to_record(&self) -> DecisionRecord {
        let pct = |b: Basis| f64::from(b) / 100.0;
        let step = |s: Option<usize>| s.and_then(|s| i32::try_from(s).ok());
        DecisionRecord {
            rollout_id: self.rollout_id.clone(),
            seq: self.seq,
            decided_at: self.decided_at,
            action: self.action.name().to_owned(),
            reason: self.reason.clone(),
            actor: self.actor.clone(),
            phase: self.phase.name().to_owned(),
            from_percent: pct(self.from_percent),
            to_percent: pct(self.to_percent),
            from_step: step(self.from_step),
            to_step: step(self.to_step),
            config_hash: self.config_hash.clone(),
            group_id: self.group_id.clone(),
            watermark: self.watermark,
            window_start: self.window_start,
            window_end: self.window_end,
            breaches: serde_json::to_string(&self.breaches).unwrap_or_else(|_| "{}".to_owned()),
            evidence: self.evidence.to_string(),
        }
    }

    /// Reads a row of `rollout_decisions` back. Never fails: an unknown action reads
    /// as `hold`, an unknown phase as `running`, unreadable JSON as empty.
    pub fn from_record(r: &DecisionRecord) -> Decision {
        let basis = |p: f64| (p * 100.0).round().clamp(0.0, 10_000.0) as Basis;
        let step = |s: Option<i32>| s.and_then(|s| usize::try_from(s).ok());
        Decision {
            rollout_id: r.rollout_id.clone(),
            seq: r.seq,
            decided_at: r.decided_at,
            action: Action::parse(&r.action).unwrap_or(Action::Hold),
            reason: r.reason.clone(),
            actor: r.actor.clone(),
            phase: Phase::parse(&r.phase),
            from_step: step(r.from_step),
            to_step: step(r.to_step),
            from_percent: basis(r.from_percent),
            to_percent: basis(r.to_percent),
            config_hash: r.config_hash.clone(),
            group_id: r.group_id.clone(),
            watermark: r.watermark,
            window_start: r.window_start,
            window_end: r.window_end,
            breaches: serde_json::from_str(&r.breaches).unwrap_or_default(),
            evidence: serde_json::from_str(&r.evidence).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// [`Basis`] in memory, a percentage with two decimals in JSON.
pub(crate) mod percent {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::assign::Basis;

    pub fn serialize<S: Serializer>(b: &Basis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(*b) / 100.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Basis, D::Error> {
        let p = f64::deserialize(d)?;
        Ok((p * 100.0).round().clamp(0.0, 10_000.0) as Basis)
    }
}

/// A rollout's state: the fold of its decisions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutState {
    /// The rollout.
    pub rollout_id: String,
    /// The phase after the last decision.
    pub phase: Phase,
    /// Index into the configured steps; `None` is 0 %.
    pub step: Option<usize>,
    /// Current exposure in hundredths of a percent (a percentage in JSON).
    #[serde(serialize_with = "percent::serialize")]
    pub percent: Basis,
    /// When the current step (or 0 %) began: the start of its window.
    pub step_started_at: DateTime<Utc>,
    /// The salt users are hashed with, fixed when the rollout started.
    pub group_id: String,
    /// Hash of the configuration last recorded; a different one at start-up is
    /// recorded as `config_changed`.
    pub config_hash: String,
    /// Consecutive breaches per guardrail and segment, as of the last decision.
    pub breaches: BTreeMap<String, u32>,
    /// The last decision's sequence number (0 before any).
    pub seq: i64,
}

impl RolloutState {
    /// The state before the first decision.
    pub fn initial(cfg: &RolloutConfig, at: DateTime<Utc>) -> Self {
        Self {
            rollout_id: cfg.id.clone(),
            phase: Phase::Running,
            step: None,
            percent: 0,
            step_started_at: at,
            group_id: cfg.group_id().to_owned(),
            config_hash: cfg.hash(),
            breaches: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Folds one decision in.
    pub fn apply(&mut self, d: &Decision) {
        if d.to_step != self.step || d.to_percent != self.percent {
            self.step_started_at = d.decided_at;
        }
        self.phase = d.phase;
        self.step = d.to_step;
        self.percent = d.to_percent;
        self.group_id = d.group_id.clone();
        self.config_hash = d.config_hash.clone();
        self.breaches = d.breaches.clone();
        self.seq = d.seq;
    }

    /// The state after `decisions`, in order; `None` when there are none.
    pub fn fold(cfg: &RolloutConfig, decisions: &[Decision]) -> Option<Self> {
        let first = decisions.first()?;
        let mut s = Self::initial(cfg, first.decided_at);
        for d in decisions {
            s.apply(d);
        }
        Some(s)
    }
}
