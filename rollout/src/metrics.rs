//! Rollout metrics. Labels: rollout ids (from the configuration, so
//! bounded), phases, actions and hold reasons (fixed sets).

use keyshift_store::metrics::Registrar;
use prometheus::{Gauge, GaugeVec, Histogram, IntCounter, IntCounterVec, IntGaugeVec, Registry};

use tracing::info;

use crate::assign::format_percent;
use crate::decision::{Action, Decision, HoldReason, Phase};

/// The controller's metrics: each rollout's exposure, phase, step, hold
/// reason, decisions, guardrail values and evaluation times.
#[derive(Debug, Clone)]
pub struct RolloutMetrics {
    percent: GaugeVec,
    step: IntGaugeVec,
    last_decision: IntGaugeVec,
    last_decision_at: GaugeVec,
    last_evaluation_at: GaugeVec,
    interval: GaugeVec,
    observed: GaugeVec,
    limit: GaugeVec,
    phase: IntGaugeVec,
    hold: IntGaugeVec,
    decisions: IntCounterVec,
    evaluation_seconds: Histogram,
    evaluation_errors: IntCounter,
    assignments: IntCounter,
    up: Gauge,
}

const PHASES: [Phase; 4] = [
    Phase::Running,
    Phase::Paused,
    Phase::Completed,
    Phase::Aborted,
];

const HOLDS: [HoldReason; 10] = [
    HoldReason::StaleData,
    HoldReason::NoTraffic,
    HoldReason::InsufficientSample,
    HoldReason::Inconclusive,
    HoldReason::Srm,
    HoldReason::BreachUnconfirmed,
    HoldReason::Guardrail,
    HoldReason::Dwell,
    HoldReason::Manual,
    HoldReason::Starved,
];

impl RolloutMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar::new(registry);
        let percent = r.gauge_vec(
            "keyshift_rollout_percent",
            "Current exposure of each rollout, in percent.",
            &["rollout"],
        )?;
        let phase = r.int_gauge_vec(
            "keyshift_rollout_state",
            "1 for the phase each rollout is in (running, paused, completed, aborted).",
            &["rollout", "state"],
        )?;
        let hold = r.int_gauge_vec("keyshift_rollout_hold", "1 for the reason each rollout's last evaluation held on (stale_data, no_traffic, srm, …).", &["rollout", "reason"])?;
        let decisions = r.counter_vec(
            "keyshift_rollout_decisions_total",
            "Decisions recorded, by action.",
            &["rollout", "action"],
        )?;
        let step = r.int_gauge_vec(
            "keyshift_rollout_step",
            "Current step index of each rollout (-1 before the first step).",
            &["rollout"],
        )?;
        let last_decision = r.int_gauge_vec(
            "keyshift_rollout_last_decision_info",
            "1, labelled with the last decision's action and reason (operator: by a person).",
            &["rollout", "action", "reason"],
        )?;
        let last_decision_at = r.gauge_vec(
            "keyshift_rollout_last_decision_timestamp_seconds",
            "Unix time of each rollout's last decision.",
            &["rollout"],
        )?;
        let last_evaluation_at = r.gauge_vec(
            "keyshift_rollout_last_evaluation_timestamp_seconds",
            "Unix time of each rollout's last completed evaluation (a repeated hold too).",
            &["rollout"],
        )?;
        let interval = r.gauge_vec(
            "keyshift_rollout_evaluation_interval_seconds",
            "Each rollout's configured evaluation interval.",
            &["rollout"],
        )?;
        let observed = r.gauge_vec(
            "keyshift_rollout_guardrail_observed_ratio",
            "What each guardrail judged at the last evaluation (all segments): the \
                 treatment rate (absolute) or treatment - control (relative).",
            &["rollout", "guardrail"],
        )?;
        let limit = r.gauge_vec(
            "keyshift_rollout_guardrail_limit_ratio",
            "The bound each guardrail was judged against: the threshold (absolute) or \
                 threshold x control rate (relative).",
            &["rollout", "guardrail"],
        )?;
        let evaluation_seconds = r.histogram(
            "keyshift_rollout_evaluation_seconds",
            "Time to evaluate one rollout (queries included).",
            &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        )?;
        let evaluation_errors = r.counter(
            "keyshift_rollout_evaluation_errors_total",
            "Evaluations that failed (store unavailable); retried next interval.",
        )?;
        let assignments = r.counter(
            "keyshift_rollout_assignments_total",
            "Users assigned through /v1/assign.",
        )?;
        let up = r.gauge(
            "keyshift_rollout_controller_up",
            "1 while this process is the active rollout controller.",
        )?;
        Ok(Self {
            percent,
            step,
            last_decision,
            last_decision_at,
            last_evaluation_at,
            interval,
            observed,
            limit,
            phase,
            hold,
            decisions,
            evaluation_seconds,
            evaluation_errors,
            assignments,
            up,
        })
    }

    /// Metrics bound to a private registry, for tests and tools.
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    pub(crate) fn state(
        &self,
        rollout: &str,
        phase: Phase,
        percent: u32,
        step: Option<usize>,
        interval: std::time::Duration,
    ) {
        self.percent
            .with_label_values(&[rollout])
            .set(f64::from(percent) / 100.0);
        self.step
            .with_label_values(&[rollout])
            .set(step.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX)));
        self.interval
            .with_label_values(&[rollout])
            .set(interval.as_secs_f64());
        for p in PHASES {
            self.phase
                .with_label_values(&[rollout, p.name()])
                .set(i64::from(p == phase));
        }
    }

    pub(crate) fn hold(&self, rollout: &str, reason: Option<HoldReason>) {
        for r in HOLDS {
            self.hold
                .with_label_values(&[rollout, r.name()])
                .set(i64::from(Some(r) == reason));
        }
    }

    /// Logs and counts a decision that took effect.
    pub(crate) fn decided(&self, d: &Decision) {
        info!(
            rollout = %d.rollout_id,
            seq = d.seq,
            action = d.action.name(),
            reason = d.reason.as_deref().unwrap_or(""),
            from = %format_percent(d.from_percent),
            to = %format_percent(d.to_percent),
            actor = %d.actor,
            "rollout decision"
        );
        let rollout = d.rollout_id.as_str();
        self.decisions
            .with_label_values(&[rollout, d.action.name()])
            .inc();
        // One series per rollout: the previous decision's labels go.
        for action in Action::ALL {
            for reason in REASONS {
                let _ = self
                    .last_decision
                    .remove_label_values(&[rollout, action.name(), reason]);
            }
        }
        self.last_decision
            .with_label_values(&[rollout, d.action.name(), reason_label(d)])
            .set(1);
        #[allow(clippy::cast_precision_loss)]
        self.last_decision_at
            .with_label_values(&[rollout])
            .set(d.decided_at.timestamp_millis() as f64 / 1000.0);
    }

    /// An evaluation completed at `at` (unix seconds); `evidence` is its
    /// outcome's, whose `guardrails` checks on the `all` segment are
    /// exported.
    pub(crate) fn evaluated(&self, rollout: &str, at: f64, evidence: &serde_json::Value) {
        self.last_evaluation_at
            .with_label_values(&[rollout])
            .set(at);
        let Some(checks) = evidence.get("guardrails").and_then(|g| g.as_array()) else {
            return;
        };
        for c in checks {
            if c.get("segment").and_then(|s| s.as_str()) != Some("all") {
                continue;
            }
            let Some(name) = c.get("guardrail").and_then(|g| g.as_str()) else {
                continue;
            };
            let rate = |arm: &str| c.get(arm)?.get("rate")?.as_f64();
            let observed = match c.get("kind").and_then(|k| k.as_str()) {
                Some("relative") => rate("treatment").zip(rate("control")).map(|(t, c)| t - c),
                _ => rate("treatment"),
            };
            if let Some(v) = observed {
                self.observed.with_label_values(&[rollout, name]).set(v);
            }
            if let Some(l) = c.get("limit").and_then(serde_json::Value::as_f64) {
                self.limit.with_label_values(&[rollout, name]).set(l);
            }
        }
    }

    pub(crate) fn evaluation(&self, seconds: f64, ok: bool) {
        self.evaluation_seconds.observe(seconds);
        if !ok {
            self.evaluation_errors.inc();
        }
    }

    pub(crate) fn assigned(&self, n: usize) {
        self.assignments.inc_by(n as u64);
    }

    pub(crate) fn up(&self, up: bool) {
        self.up.set(if up { 1.0 } else { 0.0 });
    }
}

/// Every value of the `reason` label of `keyshift_rollout_last_decision_info`.
const REASONS: [&str; 12] = [
    "stale_data",
    "no_traffic",
    "insufficient_sample",
    "inconclusive",
    "srm",
    "breach_unconfirmed",
    "guardrail",
    "dwell",
    "manual",
    "starved",
    "operator",
    "none",
];

/// The bounded reason of a decision: a hold reason, `guardrail` for the
/// controller's rollbacks and aborts, `operator` for a person's decisions
/// (their free-text reason stays in the decision log).
fn reason_label(d: &Decision) -> &'static str {
    if d.actor != "controller" {
        return "operator";
    }
    if let Some(h) = d
        .reason
        .as_deref()
        .and_then(|r| HOLDS.iter().find(|h| h.name() == r))
    {
        return h.name();
    }
    match d.action {
        Action::Rollback | Action::Abort => "guardrail",
        _ => "none",
    }
}
