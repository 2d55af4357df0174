//! Manual operations: which operation is allowed in which phase, and where
//! it takes the rollout. A pure table; the controller records what it
//! returns.

use crate::decision::{Action, Phase};

/// A manual operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Stop automatic evaluation of a running rollout; exposure stays.
    Pause,
    /// Run a paused or aborted rollout again, at the step it is at.
    Resume,
    /// Move to the next step regardless of guardrails; complete from the last step.
    Promote,
    /// Back to the previous step (0 % from the first), then paused.
    Rollback,
    /// To 0 %, aborted.
    Abort,
}

impl Operation {
    /// Every operation, in API order.
    pub const ALL: [Operation; 5] = [
        Operation::Pause,
        Operation::Resume,
        Operation::Promote,
        Operation::Rollback,
        Operation::Abort,
    ];

    /// The operation named in the API path (`/v1/rollouts/{id}/{op}`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pause" => Operation::Pause,
            "resume" => Operation::Resume,
            "promote" => Operation::Promote,
            "rollback" => Operation::Rollback,
            "abort" => Operation::Abort,
            _ => return None,
        })
    }

    /// The operation's name, as in the API path.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Pause => "pause",
            Operation::Resume => "resume",
            Operation::Promote => "promote",
            Operation::Rollback => "rollback",
            Operation::Abort => "abort",
        }
    }
}

/// Where an allowed operation takes the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The action recorded for the operation (a promote at the last step is `complete`).
    pub action: Action,
    /// The phase after the operation.
    pub phase: Phase,
    /// The step after the operation (`None`: 0 %).
    pub to_step: Option<usize>,
}

/// Why an operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not in this phase.
    NotIn(Operation, Phase),
    /// A rollback at 0 %.
    AlreadyAtZero,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotIn(op, phase) => {
                write!(f, "cannot {op:?} a rollout that is {}", phase.name())
            }
            Refusal::AlreadyAtZero => f.write_str("already at 0%"),
        }
    }
}

/// The transition table: `op` on a rollout in `phase` at `step` (of
/// `steps`, at least one).
pub fn transition(
    op: Operation,
    phase: Phase,
    step: Option<usize>,
    steps: usize,
) -> Result<Transition, Refusal> {
    use Phase::{Aborted, Completed, Paused, Running};
    let last = steps.saturating_sub(1);
    let to = |action, phase, to_step| {
        Ok(Transition {
            action,
            phase,
            to_step,
        })
    };
    match (op, phase) {
        (Operation::Pause, Running) => to(Action::Pause, Paused, step),
        (Operation::Resume, Paused | Aborted) => to(Action::Resume, Running, step),
        (Operation::Promote, Running | Paused) => match step {
            Some(s) if s >= last => to(Action::Complete, Completed, Some(last)),
            Some(s) => to(Action::Promote, phase, Some(s + 1)),
            None => to(Action::Promote, phase, Some(0)),
        },
        (Operation::Rollback, Running | Paused | Completed) => match step {
            None => Err(Refusal::AlreadyAtZero),
            Some(s) => to(Action::Rollback, Paused, s.checked_sub(1)),
        },
        (Operation::Abort, Running | Paused | Completed) => to(Action::Abort, Aborted, None),
        (op, phase) => Err(Refusal::NotIn(op, phase)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::{Aborted, Completed, Paused, Running};

    const STEPS: usize = 3;

    fn ok(action: Action, phase: Phase, to_step: Option<usize>) -> Result<Transition, Refusal> {
        Ok(Transition {
            action,
            phase,
            to_step,
        })
    }

    fn refused(op: Operation, phase: Phase) -> Result<Transition, Refusal> {
        Err(Refusal::NotIn(op, phase))
    }

    /// Every (operation, phase) cell, at a middle step.
    #[test]
    fn every_cell_of_the_table() {
        use Operation::*;
        let mid = Some(1);
        let cells = [
            (Pause, Running, ok(Action::Pause, Paused, mid)),
            (Pause, Paused, refused(Pause, Paused)),
            (Pause, Completed, refused(Pause, Completed)),
            (Pause, Aborted, refused(Pause, Aborted)),
            (Resume, Running, refused(Resume, Running)),
            (Resume, Paused, ok(Action::Resume, Running, mid)),
            (Resume, Completed, refused(Resume, Completed)),
            (Resume, Aborted, ok(Action::Resume, Running, mid)),
            (Promote, Running, ok(Action::Promote, Running, Some(2))),
            (Promote, Paused, ok(Action::Promote, Paused, Some(2))),
            (Promote, Completed, refused(Promote, Completed)),
            (Promote, Aborted, refused(Promote, Aborted)),
            (Rollback, Running, ok(Action::Rollback, Paused, Some(0))),
            (Rollback, Paused, ok(Action::Rollback, Paused, Some(0))),
            (Rollback, Completed, ok(Action::Rollback, Paused, Some(0))),
            (Rollback, Aborted, refused(Rollback, Aborted)),
            (Abort, Running, ok(Action::Abort, Aborted, None)),
            (Abort, Paused, ok(Action::Abort, Aborted, None)),
            (Abort, Completed, ok(Action::Abort, Aborted, None)),
            (Abort, Aborted, refused(Abort, Aborted)),
        ];
        assert_eq!(cells.len(), Operation::ALL.len() * 4);
        for (op, phase, want) in cells {
            assert_eq!(
                transition(op, phase, mid, STEPS),
                want,
                "{op:?} in {phase:?}"
            );
        }
    }

    #[test]
    fn promote_completes_at_the_last_step_and_starts_from_zero() {
        assert_eq!(
            transition(Operation::Promote, Running, Some(2), STEPS),
            ok(Action::Complete, Completed, Some(2))
        );
        assert_eq!(
            transition(Operation::Promote, Paused, None, STEPS),
            ok(Action::Promote, Paused, Some(0))
        );
    }

    #[test]
    fn rollback_goes_one_step_down_and_not_below_zero() {
        assert_eq!(
            transition(Operation::Rollback, Running, Some(0), STEPS),
            ok(Action::Rollback, Paused, None)
        );
        assert_eq!(
            transition(Operation::Rollback, Paused, None, STEPS),
            Err(Refusal::AlreadyAtZero)
        );
    }

    #[test]
    fn refusals_read_as_before() {
        assert_eq!(
            Refusal::NotIn(Operation::Pause, Aborted).to_string(),
            "cannot Pause a rollout that is aborted"
        );
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.name()), Some(op));
        }
    }
}
