//! Rollout metrics. Labels: rollout ids (from the configuration, so
//! bounded), phases, actions and hold reasons (fixed sets).

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};

use crate::decision::{Action, HoldReason, Phase};

#[derive(Debug, Clone)]
pub struct RolloutMetrics {
    percent: GaugeVec,
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
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let percent = GaugeVec::new(
            Opts::new(
                "keyshift_rollout_percent",
                "Current exposure of each rollout, in percent.",
            ),
            &["rollout"],
        )?;
        let phase = IntGaugeVec::new(
            Opts::new(
                "keyshift_rollout_state",
                "1 for the phase each rollout is in (running, paused, completed, aborted).",
            ),
            &["rollout", "state"],
        )?;
        let hold = IntGaugeVec::new(
            Opts::new(
                "keyshift_rollout_hold",
                "1 for the reason each rollout's last evaluation held on (stale_data, no_traffic, srm, …).",
            ),
            &["rollout", "reason"],
        )?;
        let decisions = IntCounterVec::new(
            Opts::new(
                "keyshift_rollout_decisions_total",
                "Decisions recorded, by action.",
            ),
            &["action"],
        )?;
        let evaluation_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "keyshift_rollout_evaluation_seconds",
                "Time to evaluate one rollout (queries included).",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let evaluation_errors = IntCounter::new(
            "keyshift_rollout_evaluation_errors_total",
            "Evaluations that failed (store unavailable); retried next interval.",
        )?;
        let assignments = IntCounter::new(
            "keyshift_rollout_assignments_total",
            "Users assigned through /v1/assign.",
        )?;
        let up = Gauge::new(
            "keyshift_rollout_controller_up",
            "1 while this process is the active rollout controller.",
        )?;
        for c in [
            Box::new(percent.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(phase.clone()),
            Box::new(hold.clone()),
            Box::new(decisions.clone()),
            Box::new(evaluation_seconds.clone()),
            Box::new(evaluation_errors.clone()),
            Box::new(assignments.clone()),
            Box::new(up.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Self {
            percent,
            phase,
            hold,
            decisions,
            evaluation_seconds,
            evaluation_errors,
            assignments,
            up,
        })
    }

    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    pub(crate) fn state(&self, rollout: &str, phase: Phase, percent: u32) {
        self.percent
            .with_label_values(&[rollout])
            .set(f64::from(percent) / 100.0);
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

    pub(crate) fn decision(&self, action: Action) {
        self.decisions.with_label_values(&[action.name()]).inc();
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
