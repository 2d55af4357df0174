//! One evaluation of a running rollout: observe its window on the control
//! query lane, judge it (pure, [`crate::evaluate`]), record the decision
//! unless it repeats the last hold.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::warn;

use super::Controller;
use crate::decision::{Action, Decision, Phase};
use crate::evaluate::{Inputs, Outcome, is_fresh, judge};
use crate::observe::observe;
use crate::{Result, RolloutError};

impl Controller {
    /// Evaluates one rollout now. `None` when it is not running.
    pub async fn evaluate(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Decision>> {
        let _one_at_a_time = self.deciding.lock().await;
        let started = Instant::now();
        let result = self.evaluate_locked(id, now).await;
        self.metrics
            .evaluation(started.elapsed().as_secs_f64(), result.is_ok());
        result
    }

    async fn evaluate_locked(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Decision>> {
        let (cfg, state, last) = {
            let entries = self.read_entries();
            let e = entries
                .get(id)
                .ok_or_else(|| RolloutError::NotFound(id.to_owned()))?;
            (e.cfg.clone(), e.state.clone(), e.last_decision.clone())
        };
        if state.phase != Phase::Running {
            self.metrics.hold(id, None);
            return Ok(None);
        }
        if state.step.is_none() {
            // Resumed at 0 %: nobody is exposed, nothing to judge.
            let outcome =
                Outcome::move_to(&cfg, Action::Advance, Phase::Running, Some(0), json!({}))
                    .with_detail("resumed from 0%");
            return self
                .record(id, outcome, now, "controller", None, None)
                .await
                .map(Some);
        }
        let watermark = (self.watermark)();
        let window_end = watermark.map_or(now, |w| w.min(now));
        let window = (state.step_started_at, window_end);
        let mut starved = None;
        let observation = if is_fresh(&cfg, watermark, now) {
            match observe(&self.engine, &cfg.rp_id, &cfg.id, window.0, window.1).await {
                Ok(o) => Some(o),
                // The store was there but did not answer in time: recorded
                // as such, never taken for a pass.
                Err(e) if e.is_starved() => {
                    warn!(rollout = %id, error = %e, "evaluation starved of query resources");
                    starved = Some(e.to_string());
                    None
                }
                Err(source) => {
                    return Err(RolloutError::Observe {
                        rollout_id: id.to_owned(),
                        source: Box::new(source),
                    });
                }
            }
        } else {
            None
        };
        let outcome = judge(Inputs {
            cfg: &cfg,
            state: &state,
            now,
            watermark,
            observation: observation.as_ref(),
            alpha: self.settings.alpha,
            srm_p_value: self.settings.srm_p_value,
            starved: starved.as_deref(),
        });
        self.metrics.hold(id, outcome.hold);
        #[allow(clippy::cast_precision_loss)]
        let evaluated = || {
            self.metrics.evaluated(
                id,
                now.timestamp_millis() as f64 / 1000.0,
                &outcome.evidence,
            );
        };
        let decision =
            self.decision_for(id, &outcome, now, "controller", watermark, Some(window))?;
        let repeat = last.as_ref().is_some_and(|l| {
            decision.action == Action::Hold
                && l.action == Action::Hold
                && l.reason == decision.reason
                && l.breaches == decision.breaches
                && l.phase == decision.phase
        });
        if repeat {
            if let Some(e) = self.write_entries().get_mut(id) {
                let mut seen = decision.clone();
                seen.seq = e.state.seq;
                e.last_evaluation = Some(seen);
            }
            evaluated();
            return Ok(None);
        }
        self.commit(&decision).await?;
        evaluated();
        Ok(Some(decision))
    }
}
