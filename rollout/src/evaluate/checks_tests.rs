//! Each check on its own: what it decides, and when it lets the next one
//! run.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::config::RolloutConfig;
use crate::decision::RolloutState;
use crate::evaluate::tests::obs;

/// A rollout at `step` of 10 % → 50 % → 100 %, one absolute
/// fallback-rate guardrail at 5 % with `guardrail` merged in, an hour into
/// its step.
struct World {
    cfg: RolloutConfig,
    state: RolloutState,
    now: DateTime<Utc>,
}

fn world(step: Option<usize>, guardrail: Value, rollout: Value) -> World {
    let mut g = json!({"metric": "fallback_rate", "kind": "absolute", "threshold": 0.05,
                       "severity": "hold", "min_events": 100, "consecutive_breaches": 1});
    merge(&mut g, guardrail);
    let mut r = json!({
        "id": "r", "rp_id": "x", "stage": "passkey_default",
        "steps": [{"percent": 10.0}, {"percent": 50.0}, {"percent": 100.0}],
        "guardrails": [g], "srm_min_users": 1_000_000
    });
    merge(&mut r, rollout);
    let cfg: RolloutConfig = serde_json::from_value(r).expect("config");
    let now = Utc::now();
    let mut state = RolloutState::initial(&cfg, now - chrono::Duration::hours(1));
    state.step = step;
    state.percent = cfg.step_percent(step);
    World { cfg, state, now }
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

fn inputs<'a>(w: &'a World, o: &'a Observation) -> Inputs<'a> {
    Inputs {
        cfg: &w.cfg,
        state: &w.state,
        now: w.now,
        watermark: Some(w.now),
        observation: Some(o),
        starved: None,
        alpha: 0.05,
        srm_p_value: 0.001,
    }
}

fn plain(step: usize) -> World {
    world(Some(step), json!({}), json!({}))
}

#[test]
fn check_1_data_starved_or_stale_holds_with_the_counters_kept() {
    let mut w = plain(0);
    w.state.breaches.insert("k@all".to_owned(), 2);
    let o = obs((10, 1000), (10, 1000));
    let mut ev = json!({});
    let starved = Inputs {
        starved: Some("no query slot"),
        ..inputs(&w, &o)
    };
    let hold = data(&starved, &mut ev).expect_err("starved");
    assert_eq!(hold.hold, Some(HoldReason::Starved));
    assert_eq!(hold.breaches, w.state.breaches);
    assert_eq!(hold.evidence["error"], "no query slot");
    let stale = Inputs {
        watermark: Some(w.now - chrono::Duration::hours(3)),
        ..inputs(&w, &o)
    };
    let hold = data(&stale, &mut json!({})).expect_err("stale");
    assert_eq!(hold.hold, Some(HoldReason::StaleData));
    assert_eq!(hold.to_percent, w.state.percent);
    let unobserved = Inputs {
        observation: None,
        ..inputs(&w, &o)
    };
    assert!(data(&unobserved, &mut json!({})).is_err());
    assert!(data(&inputs(&w, &o), &mut json!({})).is_ok());
}

#[test]
fn check_2_no_events_is_no_traffic() {
    let w = plain(0);
    let empty = obs((0, 0), (0, 0));
    let mut ev = json!({});
    let hold = traffic(&inputs(&w, &empty), &empty, &mut ev).expect("decides");
    assert_eq!(hold.hold, Some(HoldReason::NoTraffic));
    assert_eq!(hold.evidence["events"], 0);
    let some = obs((1, 10), (1, 10));
    let mut ev = json!({});
    assert!(traffic(&inputs(&w, &some), &some, &mut ev).is_none());
    assert_eq!(ev["users"]["treatment"], 10);
}

#[test]
fn check_3_a_split_far_from_the_configured_one_holds() {
    let w = world(Some(1), json!({}), json!({"srm_min_users": 100}));
    // At 50 %: 1,500 treatment users against 500 control is no coin toss.
    let skewed = obs((10, 1500), (10, 500));
    let mut ev = json!({});
    let hold = sample_ratio(&inputs(&w, &skewed), &skewed, &mut ev).expect("decides");
    assert_eq!(hold.hold, Some(HoldReason::Srm));
    assert!(hold.evidence["srm"]["p_value"].as_f64().expect("p") < 0.001);
    let even = obs((10, 1010), (10, 990));
    assert!(sample_ratio(&inputs(&w, &even), &even, &mut json!({})).is_none());
    // Too few users, or no split (100 %): not checked.
    let few = obs((10, 60), (10, 20));
    let mut ev = json!({});
    assert!(sample_ratio(&inputs(&w, &few), &few, &mut ev).is_none());
    assert!(ev.get("srm").is_none());
    let full = world(Some(2), json!({}), json!({"srm_min_users": 100}));
    assert!(sample_ratio(&inputs(&full, &skewed), &skewed, &mut json!({})).is_none());
}

/// Check 4 after the guardrails were judged.
fn judge_breaches(w: &World, o: &Observation) -> (Judged, Option<Outcome>) {
    let mut ev = json!({});
    let mut judged = guardrails(&inputs(w, o), o, &mut ev);
    let out = breaches(&inputs(w, o), &mut judged, &mut ev);
    (judged, out)
}

#[test]
fn check_4_confirmed_breaches_act_by_severity() {
    // 30 % fallbacks against a 5 % limit, on plenty of data.
    let bad = obs((3000, 10_000), (0, 0));
    let w = world(Some(1), json!({"severity": "rollback"}), json!({}));
    let out = judge_breaches(&w, &bad).1.expect("decides");
    assert_eq!(
        (out.action, out.phase, out.to_step, out.to_percent),
        (
            Action::Rollback,
            Phase::Paused,
            Some(0),
            w.cfg.step_percent(Some(0))
        )
    );
    assert!(
        out.breaches.is_empty(),
        "a new step starts its counters over"
    );
    assert!(
        out.detail
            .as_deref()
            .is_some_and(|d| d.contains("fallback_rate absolute on all")),
        "{:?}",
        out.detail
    );
    let w = world(Some(1), json!({"severity": "abort"}), json!({}));
    let out = judge_breaches(&w, &bad).1.expect("decides");
    assert_eq!((out.action, out.to_percent), (Action::Abort, 0));
    let w = world(Some(1), json!({"severity": "hold"}), json!({}));
    let out = judge_breaches(&w, &bad).1.expect("decides");
    assert_eq!(out.hold, Some(HoldReason::Guardrail));
    assert_eq!(out.breaches.values().copied().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn check_4_a_breach_must_repeat_to_be_confirmed() {
    let bad = obs((3000, 10_000), (0, 0));
    let mut w = world(
        Some(1),
        json!({"severity": "abort", "consecutive_breaches": 2}),
        json!({}),
    );
    let (judged, out) = judge_breaches(&w, &bad);
    let out = out.expect("decides");
    assert_eq!(out.hold, Some(HoldReason::BreachUnconfirmed));
    let key = judged.checks[0].guardrail.clone() + "@all";
    assert_eq!(out.breaches.get(&key), Some(&1));
    // The second evaluation in a row confirms it.
    w.state.breaches = out.breaches;
    let out = judge_breaches(&w, &bad).1.expect("decides");
    assert_eq!(out.action, Action::Abort);
    // A healthy window: nothing to act on.
    let good = obs((10, 10_000), (0, 0));
    assert!(judge_breaches(&w, &good).1.is_none());
}

#[test]
fn check_5_too_little_or_unclear_data_never_advances() {
    let certain = |o: &Observation| {
        let w = plain(1);
        let mut ev = json!({});
        let mut judged = guardrails(&inputs(&w, o), o, &mut ev);
        certainty(&inputs(&w, o), &mut judged, &mut ev).and_then(|h| h.hold)
    };
    assert_eq!(
        certain(&obs((1, 50), (0, 0))),
        Some(HoldReason::InsufficientSample)
    );
    // 5 % observed against a 5 % limit: the interval straddles it.
    assert_eq!(
        certain(&obs((50, 1000), (0, 0))),
        Some(HoldReason::Inconclusive)
    );
    assert_eq!(certain(&obs((10, 10_000), (0, 0))), None);
}

#[test]
fn check_6_dwell_exposure_then_advance_or_complete() {
    let o = obs((10, 10_000), (10, 10_000));
    let progress_of = |w: &World| progress(&inputs(w, &o), &o, BTreeMap::new(), json!({}));
    let out = progress_of(&world(None, json!({}), json!({})));
    assert_eq!(out.hold, Some(HoldReason::Manual));
    let long_dwell = json!({"steps": [{"percent": 10.0, "min_dwell": "2h"}, {"percent": 100.0}]});
    let out = progress_of(&world(Some(0), json!({}), long_dwell));
    assert_eq!(out.hold, Some(HoldReason::Dwell));
    assert_eq!(out.evidence["min_dwell_s"], 7200);
    let many =
        json!({"steps": [{"percent": 10.0, "min_exposed_users": 20_000}, {"percent": 100.0}]});
    let out = progress_of(&world(Some(0), json!({}), many));
    assert_eq!(out.hold, Some(HoldReason::InsufficientSample));
    let w = plain(0);
    let out = progress_of(&w);
    assert_eq!(
        (out.action, out.phase, out.to_step, out.to_percent),
        (
            Action::Advance,
            Phase::Running,
            Some(1),
            w.cfg.step_percent(Some(1))
        )
    );
    let w = plain(2);
    let out = progress_of(&w);
    assert_eq!(
        (out.action, out.phase, out.to_percent),
        (Action::Complete, Phase::Completed, w.state.percent)
    );
}
