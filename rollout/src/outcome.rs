//! What an evaluation or an operation concluded, before it becomes a
//! recorded [`Decision`](crate::decision::Decision). Built through the
//! constructors here, so that a hold always keeps the exposure and a move
//! always takes its step's percentage.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::assign::Basis;
use crate::config::RolloutConfig;
use crate::decision::{Action, HoldReason, Phase, RolloutState};
use crate::transition::Transition;

/// What an evaluation concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// What the decision will do.
    pub action: Action,
    /// Why it holds; `None` unless the action is a hold.
    pub hold: Option<HoldReason>,
    /// What triggered a rollback / abort / advance, for the log.
    pub detail: Option<String>,
    /// The phase after the decision.
    pub phase: Phase,
    /// The step after the decision; `None` is 0 %.
    pub to_step: Option<usize>,
    /// Exposure after the decision, in hundredths of a percent.
    pub to_percent: Basis,
    /// Consecutive breaches per guardrail and segment after the decision (empty for moves
    /// and operations).
    pub breaches: BTreeMap<String, u32>,
    /// What the conclusion was based on, recorded as the decision's evidence.
    pub evidence: Value,
}

impl Outcome {
    /// Nothing moves: the phase, step and exposure stay as they are.
    pub fn hold(
        state: &RolloutState,
        reason: HoldReason,
        breaches: BTreeMap<String, u32>,
        evidence: Value,
    ) -> Self {
        Self {
            action: Action::Hold,
            hold: Some(reason),
            detail: None,
            phase: state.phase,
            to_step: state.step,
            to_percent: state.percent,
            breaches,
            evidence,
        }
    }

    /// A move to `to_step` at its configured percentage (0 % for `None`).
    /// A new step is a new window: the breach counters start over.
    pub fn move_to(
        cfg: &RolloutConfig,
        action: Action,
        phase: Phase,
        to_step: Option<usize>,
        evidence: Value,
    ) -> Self {
        Self {
            action,
            hold: None,
            detail: None,
            phase,
            to_step,
            to_percent: cfg.step_percent(to_step),
            breaches: BTreeMap::new(),
            evidence,
        }
    }

    /// An operator's operation, as the transition table allows it.
    pub fn operation(cfg: &RolloutConfig, t: Transition, evidence: Value) -> Self {
        Self::move_to(cfg, t.action, t.phase, t.to_step, evidence)
    }

    /// The last step passed its checks: done, at the exposure it has.
    pub fn complete(
        state: &RolloutState,
        breaches: BTreeMap<String, u32>,
        evidence: Value,
    ) -> Self {
        Self {
            action: Action::Complete,
            hold: None,
            detail: None,
            phase: Phase::Completed,
            to_step: state.step,
            to_percent: state.percent,
            breaches,
            evidence,
        }
    }

    /// With what triggered it, for the log.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}
