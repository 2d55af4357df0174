//! The controller's read side: assignments (answered from memory, no
//! query), snapshots of each rollout for the API, and the recorded decisions.

use serde::Serialize;

use super::{Controller, Entry, load_log};
use crate::assign::{self, Basis};
use crate::decision::{Decision, RolloutState};
use crate::{Result, RolloutError};

/// One user's assignment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Assignment {
    /// The rollout id.
    pub rollout: String,
    /// The user id as given.
    pub user: String,
    /// The user's fine bucket, 0..10_000, fixed by the rollout's group id.
    pub bucket: u32,
    /// The rollout's current exposure in percent (0 to 100, two decimals).
    pub percent: f64,
    /// Whether the user is exposed: `bucket < percent × 100`.
    pub enabled: bool,
    /// `"treatment"` when enabled, otherwise `"control"`.
    pub variant: &'static str,
}

/// What the API shows about a rollout.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The rollout id.
    pub id: String,
    /// The relying party the rollout belongs to.
    pub rp_id: String,
    /// The migration stage it moves.
    pub stage: crate::config::Stage,
    /// Phase, step, exposure and counters, as folded from the decision log.
    pub state: RolloutState,
    /// Current exposure in percent (0 to 100).
    pub percent: f64,
    /// The configured steps, in percent.
    pub steps: Vec<f64>,
    /// The latest recorded decision; None only if nothing has been recorded yet.
    pub last_decision: Option<Decision>,
    /// The latest evaluation, recorded or not (a repeated hold is not).
    pub last_evaluation: Option<Decision>,
}

impl Controller {
    /// The assignment of `user` in rollout `id`.
    pub fn assign(&self, id: &str, user: &str) -> Result<Assignment> {
        let (group, percent) = self.exposure(id)?;
        self.metrics.assigned(1);
        Ok(assignment(id, user, &group, percent))
    }

    /// The assignments of many users (one lock, one lookup).
    pub fn assign_many(&self, id: &str, users: &[String]) -> Result<Vec<Assignment>> {
        let (group, percent) = self.exposure(id)?;
        self.metrics.assigned(users.len());
        Ok(users
            .iter()
            .map(|u| assignment(id, u, &group, percent))
            .collect())
    }

    fn exposure(&self, id: &str) -> Result<(String, Basis)> {
        let entries = self.read_entries();
        let e = entries
            .get(id)
            .ok_or_else(|| RolloutError::NotFound(id.to_owned()))?;
        Ok((e.state.group_id.clone(), e.state.percent))
    }

    /// The rp_id a rollout belongs to (for RP-token scoping).
    pub fn rp_id(&self, id: &str) -> Option<String> {
        self.read_entries().get(id).map(|e| e.cfg.rp_id.clone())
    }

    /// What the API shows about rollout `id`; None when no such rollout is configured.
    pub fn snapshot(&self, id: &str) -> Option<Snapshot> {
        let entries = self.read_entries();
        entries.get(id).map(snapshot_of)
    }

    /// Snapshots of every configured rollout, ordered by id.
    pub fn list(&self) -> Vec<Snapshot> {
        self.read_entries().values().map(snapshot_of).collect()
    }

    /// The recorded decisions of a rollout, oldest first.
    pub async fn decisions(&self, id: &str) -> Result<Vec<Decision>> {
        if self.read_entries().get(id).is_none() {
            return Err(RolloutError::NotFound(id.to_owned()));
        }
        Ok(load_log(&self.engine).await?.remove(id).unwrap_or_default())
    }
}

fn assignment(id: &str, user: &str, group: &str, percent: Basis) -> Assignment {
    let bucket = assign::bucket(group, user);
    let enabled = assign::enabled(bucket, percent);
    Assignment {
        rollout: id.to_owned(),
        user: user.to_owned(),
        bucket,
        percent: f64::from(percent) / 100.0,
        enabled,
        variant: if enabled { "treatment" } else { "control" },
    }
}

fn snapshot_of(e: &Entry) -> Snapshot {
    Snapshot {
        id: e.cfg.id.clone(),
        rp_id: e.cfg.rp_id.clone(),
        stage: e.cfg.stage,
        state: e.state.clone(),
        percent: f64::from(e.state.percent) / 100.0,
        steps: e
            .cfg
            .steps
            .iter()
            .map(|s| f64::from(s.percent) / 100.0)
            .collect(),
        last_decision: e.last_decision.clone(),
        last_evaluation: e.last_evaluation.clone(),
    }
}
