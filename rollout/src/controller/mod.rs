//! The running controller: folds the decision log at start-up, evaluates
//! each rollout every interval, applies manual operations, and answers
//! assignments from memory.
//!
//! Decisions are made one at a time (a mutex) and recorded before they take
//! effect: a decision the log refused (another controller recorded that
//! sequence number first) stops this controller instead of diverging.
//! Consecutive holds that change nothing (same reason, same counters) are
//! not recorded again; the latest evaluation is still kept for the API.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use keyshift_store::decisions::decisions_from_batches;
use keyshift_store::{QueryEngine, StoreError, WriterHandle};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::assign;
use crate::config::{RolloutConfig, RolloutSettings};
use crate::decision::{Action, Decision, Phase, RolloutState};
use crate::kafka::DecisionPublisher;
use crate::metrics::RolloutMetrics;
use crate::outcome::Outcome;
pub use crate::transition::Operation;
use crate::transition::transition;
use crate::{Result, RolloutError};

mod evaluation;
mod reads;
pub use reads::{Assignment, Snapshot};

/// The ingest watermark: data before it is complete in the store.
pub type Watermark = Arc<dyn Fn() -> Option<DateTime<Utc>> + Send + Sync>;

struct Entry {
    cfg: RolloutConfig,
    state: RolloutState,
    last_decision: Option<Decision>,
    last_evaluation: Option<Decision>,
    next_due: DateTime<Utc>,
}

/// The running rollout controller: state of every configured rollout, its evaluations,
/// manual operations and assignments. Shared behind an `Arc`.
pub struct Controller {
    settings: RolloutSettings,
    writer: WriterHandle,
    engine: QueryEngine,
    watermark: Watermark,
    metrics: RolloutMetrics,
    entries: RwLock<BTreeMap<String, Entry>>,
    deciding: tokio::sync::Mutex<()>,
    /// Kafka mode: the decisions topic.
    publisher: Option<DecisionPublisher>,
    /// Set once another controller fenced this one; it then stops.
    fenced: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("rollouts", &self.settings.rollouts.len())
            .finish_non_exhaustive()
    }
}

/// Reads every recorded decision, per rollout, in order.
pub async fn load_log(engine: &QueryEngine) -> Result<BTreeMap<String, Vec<Decision>>> {
    let out = engine
        .internal("SELECT * FROM rollout_decisions ORDER BY rollout_id, seq")
        .await
        .map_err(|e| RolloutError::Load(Box::new(e)))?;
    let records =
        decisions_from_batches(&out.batches).map_err(|e| RolloutError::Load(Box::new(e)))?;
    let mut by_rollout: BTreeMap<String, Vec<Decision>> = BTreeMap::new();
    for r in &records {
        by_rollout
            .entry(r.rollout_id.clone())
            .or_default()
            .push(Decision::from_record(r));
    }
    Ok(by_rollout)
}

impl Controller {
    /// Folds the log, then records a `start` for new rollouts and a
    /// `config_changed` for rollouts whose configuration changed.
    pub async fn start(
        settings: RolloutSettings,
        writer: WriterHandle,
        engine: QueryEngine,
        watermark: Watermark,
        metrics: RolloutMetrics,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        Self::start_with(settings, writer, engine, watermark, metrics, None, now).await
    }

    /// Like [`Controller::start`], publishing decisions to Kafka too.
    pub async fn start_with(
        settings: RolloutSettings,
        writer: WriterHandle,
        engine: QueryEngine,
        watermark: Watermark,
        metrics: RolloutMetrics,
        publisher: Option<DecisionPublisher>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let log = load_log(&engine).await?;
        let controller = Self {
            settings: settings.clone(),
            writer,
            engine,
            watermark,
            metrics,
            entries: RwLock::new(BTreeMap::new()),
            deciding: tokio::sync::Mutex::new(()),
            publisher,
            fenced: std::sync::atomic::AtomicBool::new(false),
        };
        for (id, decisions) in &log {
            if settings.get(id).is_none() {
                warn!(rollout = %id, decisions = decisions.len(), "rollout in the decision log but not in the configuration: not served");
            }
        }
        for cfg in &settings.rollouts {
            let past = log.get(&cfg.id).map(Vec::as_slice).unwrap_or_default();
            let state = RolloutState::fold(cfg, past);
            let last = past.last().cloned();
            let entry = Entry {
                cfg: cfg.clone(),
                state: state
                    .clone()
                    .unwrap_or_else(|| RolloutState::initial(cfg, now)),
                last_decision: last,
                last_evaluation: None,
                next_due: now,
            };
            controller.write_entries().insert(cfg.id.clone(), entry);
            match state {
                None => {
                    let outcome = Outcome::move_to(
                        cfg,
                        Action::Start,
                        Phase::Running,
                        Some(0),
                        json!({"config": cfg, "config_hash": cfg.hash()}),
                    )
                    .with_detail("new rollout");
                    controller
                        .record(&cfg.id, outcome, now, "controller", None, None)
                        .await?;
                }
                Some(s) if s.config_hash != cfg.hash() => {
                    controller.config_changed(cfg, &s, now).await?;
                }
                Some(s) => {
                    info!(rollout = %cfg.id, seq = s.seq, phase = s.phase.name(), percent = %assign::format_percent(s.percent), "rollout resumed from the decision log");
                }
            }
            controller.publish_metrics(&cfg.id);
        }
        controller.metrics.up(true);
        Ok(controller)
    }

    fn read_entries(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_entries(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn config_changed(
        &self,
        cfg: &RolloutConfig,
        s: &RolloutState,
        now: DateTime<Utc>,
    ) -> Result<()> {
        // The step index keeps its meaning only if the step still exists;
        // otherwise the last step (never more exposure than configured).
        let to_step = s.step.map(|i| i.min(cfg.steps.len() - 1));
        let mut notes = Vec::new();
        if cfg.group_id() != s.group_id {
            error!(rollout = %cfg.id, recorded = %s.group_id, configured = %cfg.group_id(), "group_id change refused: it would reshuffle exposed users; keeping the recorded one");
            notes.push(format!(
                "group_id change to {:?} refused; {:?} stays",
                cfg.group_id(),
                s.group_id
            ));
        }
        if to_step != s.step {
            notes.push("the current step no longer exists; moved to the last step".to_owned());
        }
        warn!(rollout = %cfg.id, from = %s.config_hash, to = %cfg.hash(), "rollout configuration changed; recorded");
        let evidence = json!({
            "previous_hash": s.config_hash,
            "config_hash": cfg.hash(),
            "config": cfg,
            "notes": notes,
        });
        // At 0 % (no step) the rollout stays at 0 %.
        let outcome = Outcome::move_to(cfg, Action::ConfigChanged, s.phase, to_step, evidence)
            .with_detail(format!("{} → {}", s.config_hash, cfg.hash()));
        self.record(&cfg.id, outcome, now, "controller", None, None)
            .await
            .map(|_| ())
    }

    /// Builds the decision for `outcome` from the entry's current state,
    /// records it in the log, then applies it.
    async fn record(
        &self,
        id: &str,
        outcome: Outcome,
        now: DateTime<Utc>,
        actor: &str,
        watermark: Option<DateTime<Utc>>,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Decision> {
        let decision = self.decision_for(id, &outcome, now, actor, watermark, window)?;
        self.commit(&decision).await?;
        Ok(decision)
    }

    /// Records a decision in the log, then lets it take effect.
    async fn commit(&self, decision: &Decision) -> Result<()> {
        self.append(decision).await?;
        self.apply(decision);
        Ok(())
    }

    fn decision_for(
        &self,
        id: &str,
        outcome: &Outcome,
        now: DateTime<Utc>,
        actor: &str,
        watermark: Option<DateTime<Utc>>,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Decision> {
        let entries = self.read_entries();
        let e = entries
            .get(id)
            .ok_or_else(|| RolloutError::NotFound(id.to_owned()))?;
        let reason = match (outcome.hold, &outcome.detail) {
            (Some(h), _) => Some(h.name().to_owned()),
            (None, Some(d)) => Some(d.clone()),
            (None, None) => None,
        };
        let mut evidence = outcome.evidence.clone();
        if let (Some(h), Some(d)) = (outcome.hold, &outcome.detail) {
            evidence["detail"] = json!(d);
            evidence["hold"] = json!(h.name());
        }
        Ok(Decision {
            rollout_id: id.to_owned(),
            seq: e.state.seq + 1,
            decided_at: now,
            action: outcome.action,
            reason,
            actor: actor.to_owned(),
            phase: outcome.phase,
            from_step: e.state.step,
            to_step: outcome.to_step,
            from_percent: e.state.percent,
            to_percent: outcome.to_percent,
            config_hash: e.cfg.hash(),
            // Fixed at the rollout's start (see `config_changed`).
            group_id: if e.state.seq == 0 {
                e.cfg.group_id().to_owned()
            } else {
                e.state.group_id.clone()
            },
            watermark,
            window_start: window.map(|w| w.0),
            window_end: window.map(|w| w.1),
            breaches: outcome.breaches.clone(),
            evidence,
        })
    }

    async fn append(&self, d: &Decision) -> Result<()> {
        if self.fenced.load(std::sync::atomic::Ordering::Acquire) {
            return Err(RolloutError::Fenced {
                rollout_id: d.rollout_id.clone(),
                seq: d.seq,
            });
        }
        if let Some(p) = &self.publisher
            && let Err(e) = p.publish(d).await
        {
            if matches!(e, RolloutError::Kafka { fenced: true, .. }) {
                self.fence();
                return Err(RolloutError::Fenced {
                    rollout_id: d.rollout_id.clone(),
                    seq: d.seq,
                });
            }
            return Err(e);
        }
        match self.writer.append_decision(d.to_record()).await {
            Ok(_) => Ok(()),
            Err(StoreError::Fenced { .. }) => {
                self.fence();
                Err(RolloutError::Fenced {
                    rollout_id: d.rollout_id.clone(),
                    seq: d.seq,
                })
            }
            Err(source) => Err(RolloutError::Record {
                rollout_id: d.rollout_id.clone(),
                seq: d.seq,
                source: Box::new(source),
            }),
        }
    }

    fn fence(&self) {
        self.fenced
            .store(true, std::sync::atomic::Ordering::Release);
        self.metrics.up(false);
        error!("another rollout controller took over: this one is fenced and stops");
    }

    fn apply(&self, d: &Decision) {
        {
            let mut entries = self.write_entries();
            if let Some(e) = entries.get_mut(&d.rollout_id) {
                e.state.apply(d);
                e.last_decision = Some(d.clone());
                e.last_evaluation = Some(d.clone());
            }
        }
        self.metrics.decided(d);
        self.publish_metrics(&d.rollout_id);
    }

    fn publish_metrics(&self, id: &str) {
        let entries = self.read_entries();
        if let Some(e) = entries.get(id) {
            self.metrics.state(
                id,
                e.state.phase,
                e.state.percent,
                e.state.step,
                e.cfg.evaluation_interval,
            );
        }
    }

    /// Applies an operator's operation. `reason` is required.
    pub async fn operate(
        &self,
        id: &str,
        op: Operation,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Decision> {
        let _one_at_a_time = self.deciding.lock().await;
        let invalid = |message: String| RolloutError::Invalid {
            rollout_id: id.to_owned(),
            message,
        };
        if reason.trim().is_empty() {
            return Err(invalid("a reason is required".to_owned()));
        }
        let (cfg, state) = {
            let entries = self.read_entries();
            let e = entries
                .get(id)
                .ok_or_else(|| RolloutError::NotFound(id.to_owned()))?;
            (e.cfg.clone(), e.state.clone())
        };
        let t = transition(op, state.phase, state.step, cfg.steps.len())
            .map_err(|refusal| invalid(refusal.to_string()))?;
        let reason = reason.trim();
        let evidence = json!({"operation": op.name(), "reason": reason});
        let outcome = Outcome::operation(&cfg, t, evidence).with_detail(reason);
        self.record(id, outcome, now, actor, None, None).await
    }

    /// Evaluates every rollout whose interval has come round.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<()> {
        let due: Vec<String> = self
            .read_entries()
            .iter()
            .filter(|(_, e)| e.next_due <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let result = self.evaluate(&id, now).await;
            if let Some(e) = self.write_entries().get_mut(&id) {
                let every = chrono::Duration::from_std(e.cfg.evaluation_interval)
                    .unwrap_or(chrono::Duration::minutes(5));
                e.next_due = now + every;
            }
            match result {
                Ok(_) => {}
                Err(e) if e.is_retryable() => {
                    warn!(rollout = %id, error = %e, "evaluation failed; retrying next interval");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Evaluates on schedule until `shutdown`; returns the first fatal error
    /// (fenced by another controller, say).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<()> {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.metrics.up(false);
                    return Ok(());
                }
                _ = tick.tick() => {
                    if self.fenced.load(std::sync::atomic::Ordering::Acquire) {
                        return Err(RolloutError::Fenced { rollout_id: "*".to_owned(), seq: 0 });
                    }
                    if let Err(e) = self.tick(Utc::now()).await {
                        self.metrics.up(false);
                        error!(error = %e, "rollout controller stopped");
                        return Err(e);
                    }
                }
            }
        }
    }
}
