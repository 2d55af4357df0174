//! `judge` end to end on small observations; each check alone is tested
//! in `checks.rs`.

use chrono::Utc;
use serde_json::{Value, json};

use super::*;
use crate::decision::{Action, HoldReason};
use crate::observe::{Cell, Counts, Variant};

pub(super) fn cfg(kind: &str, threshold: f64, percents: &[f64]) -> RolloutConfig {
    let steps: Vec<Value> = percents.iter().map(|p| json!({"percent": p})).collect();
    serde_json::from_value(json!({
        "id": "r", "rp_id": "x", "stage": "passkey_default", "steps": steps,
        "guardrails": [{"metric": "fallback_rate", "kind": kind, "threshold": threshold,
                        "severity": "hold", "min_events": 100, "consecutive_breaches": 1}],
        "srm_min_users": 1_000_000
    }))
    .expect("config")
}

pub(super) fn obs(t: (u64, u64), c: (u64, u64)) -> Observation {
    let cell = |variant, (x, n): (u64, u64)| Cell {
        variant,
        platform: "iOS".into(),
        browser: "Safari".into(),
        counts: Counts {
            events: 2 * n,
            passkey_started: n,
            passkey_fallback: x,
            ..Counts::default()
        },
    };
    Observation {
        cells: vec![cell(Variant::Treatment, t), cell(Variant::Control, c)],
        users: [t.1, c.1],
    }
}

fn run(cfg: &RolloutConfig, step: usize, o: &Observation) -> Outcome {
    let now = Utc::now();
    let mut state = RolloutState::initial(cfg, now - chrono::Duration::hours(1));
    state.step = Some(step);
    state.percent = cfg.steps[step].percent;
    judge(Inputs {
        cfg,
        state: &state,
        now,
        watermark: Some(now),
        observation: Some(o),
        alpha: 0.05,
        srm_p_value: 0.001,
        starved: None,
    })
}

#[test]
fn relative_guardrails_breach_pass_or_wait_for_data() {
    let c = cfg("relative", 0.2, &[10.0, 50.0, 100.0]);
    // 15 % against 10 %: 50 % worse, far beyond 20 %.
    let out = run(&c, 0, &obs((1500, 10_000), (10_000, 100_000)));
    assert_eq!(out.hold, Some(HoldReason::Guardrail), "{}", out.evidence);
    // Equal rates, lots of data: passes (and advances).
    let out = run(&c, 0, &obs((1000, 10_000), (10_000, 100_000)));
    assert_eq!(out.action, Action::Advance, "{}", out.evidence);
    // Equal rates, little data: inconclusive, which never advances.
    let out = run(&c, 0, &obs((20, 200), (200, 2000)));
    assert_eq!(out.hold, Some(HoldReason::Inconclusive), "{}", out.evidence);
    // Below the minimum: insufficient.
    let out = run(&c, 0, &obs((5, 50), (200, 2000)));
    assert_eq!(out.hold, Some(HoldReason::InsufficientSample));
    // At 100 % there is no control: not applicable, the rollout completes.
    let out = run(&c, 2, &obs((1000, 10_000), (0, 0)));
    assert_eq!(out.action, Action::Complete, "{}", out.evidence);
}

#[test]
fn stale_data_is_never_judged() {
    let c = cfg("absolute", 0.01, &[10.0, 100.0]);
    let now = Utc::now();
    let state = RolloutState::initial(&c, now);
    let o = obs((900, 1000), (0, 1000));
    let out = judge(Inputs {
        cfg: &c,
        state: &state,
        now,
        watermark: Some(now - chrono::Duration::hours(2)),
        observation: Some(&o),
        alpha: 0.05,
        srm_p_value: 0.001,
        starved: None,
    });
    assert_eq!(out.hold, Some(HoldReason::StaleData));
}

#[test]
fn a_starved_evaluation_holds_and_keeps_the_breach_counters() {
    let c = cfg("absolute", 0.01, &[10.0, 100.0]);
    let now = Utc::now();
    let mut state = RolloutState::initial(&c, now);
    state.breaches.insert("g@all".to_owned(), 1);
    let out = judge(Inputs {
        cfg: &c,
        state: &state,
        now,
        watermark: Some(now),
        observation: None,
        alpha: 0.05,
        srm_p_value: 0.001,
        starved: Some("query exceeded its time limit of 30s"),
    });
    assert_eq!(out.action, Action::Hold);
    assert_eq!(out.hold, Some(HoldReason::Starved));
    assert_eq!(out.to_percent, state.percent);
    assert_eq!(out.breaches, state.breaches);
    assert_eq!(
        out.evidence["error"],
        "query exceeded its time limit of 30s"
    );
}
