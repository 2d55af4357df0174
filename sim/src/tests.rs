//! The simulator's invariants: valid events, determinism, exposure served
//! exactly as the controller's hash says, incidents doing what they claim.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyshift_rollout::assign;
use keyshift_schemas::{DecodeOptions, decode_event};
use serde_json::Value;

use crate::{Exposure, Scenario, Simulator};

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .expect("start")
        .with_timezone(&Utc)
}

fn small(name: &str) -> Scenario {
    let mut s = Scenario::load(name).expect("scenario");
    s.population.users = 2_000;
    s
}

fn exposure(percent: u32) -> Exposure {
    Exposure {
        rollout_id: "r".into(),
        group_id: "g".into(),
        percent,
    }
}

fn run(s: Scenario, hours: u32, e: Option<&Exposure>) -> Vec<String> {
    let mut sim = Simulator::new(s, start());
    (0..hours).flat_map(|_| sim.next_hour(e).lines).collect()
}

#[test]
fn events_are_valid_schema_v1_and_cover_every_flow() {
    let lines = run(small("healthy"), 48, Some(&exposure(2_500)));
    let now = start() + chrono::Duration::days(3);
    let mut types = BTreeMap::new();
    for line in &lines {
        let e = decode_event(line.as_bytes(), now, &DecodeOptions::default())
            .unwrap_or_else(|e| panic!("{e}: {line}"));
        *types.entry(e.event_type.as_str().to_owned()).or_insert(0) += 1;
    }
    for t in [
        "capability.probed",
        "auth.started",
        "auth.succeeded",
        "auth.failed",
        "auth.fallback",
        "enrollment.offered",
        "enrollment.skipped",
        "enrollment.succeeded",
        "recovery.started",
    ] {
        assert!(types.contains_key(t), "{t} missing: {types:?}");
    }
}

#[test]
fn the_same_seed_gives_the_same_lines_and_another_seed_does_not() {
    let a = run(small("healthy"), 6, Some(&exposure(500)));
    let b = run(small("healthy"), 6, Some(&exposure(500)));
    assert_eq!(a, b);
    let mut other = small("healthy");
    other.seed += 1;
    assert_ne!(a, run(other, 6, Some(&exposure(500))));
}

#[test]
fn users_are_served_the_variant_of_the_controllers_hash() {
    let e = exposure(3_000);
    let lines = run(small("healthy"), 24, Some(&e));
    let mut treated = 0;
    for line in &lines {
        let v: Value = serde_json::from_str(line).expect("json");
        if v["occurred_at"].as_str().expect("at") < "2026-11-01" {
            // Enrolments from before the start: no rollout yet.
            assert!(v.get("rollout").is_none(), "{line}");
            continue;
        }
        let user = v["user_id"].as_str().expect("user");
        let expected = assign::enabled(assign::bucket(&e.group_id, user), e.percent);
        assert_eq!(v["rollout"]["variant"] == "treatment", expected, "{line}");
        assert_eq!(v["rollout"]["percent"], 30.0);
        treated += usize::from(expected);
    }
    assert!(
        treated > 0 && treated < lines.len(),
        "both variants present"
    );
    let history = count(&lines, |v| {
        v["occurred_at"].as_str().is_some_and(|t| t < "2026-11-01")
    });
    assert!(history > 100, "the initial holders' enrolments: {history}");
}

fn count(lines: &[String], f: impl Fn(&Value) -> bool) -> usize {
    lines
        .iter()
        .filter(|l| f(&serde_json::from_str(l).expect("json")))
        .count()
}

#[test]
fn a_browser_regression_hits_exposed_users_of_that_browser_only() {
    let mut s = small("browser-regression");
    s.population.users = 4_000;
    let mut sim = Simulator::new(s, start());
    let e = exposure(5_000);
    let lines: Vec<String> = (0..72)
        .flat_map(|_| sim.next_hour(Some(&e)).lines)
        .collect();
    let rate = |treatment: bool, firefox: bool, after: bool| {
        let sel = |v: &Value| {
            v["data"]["method"] == "passkey"
                && (v["rollout"]["variant"] == "treatment") == treatment
                && (v["client"]["browser"] == "firefox") == firefox
                && (v["occurred_at"].as_str().expect("at") >= "2026-11-03") == after
        };
        let failed = count(&lines, |v| v["event_type"] == "auth.failed" && sel(v));
        let started = count(&lines, |v| v["event_type"] == "auth.started" && sel(v));
        failed as f64 / started.max(1) as f64
    };
    assert!(rate(true, true, true) > 0.3, "{}", rate(true, true, true));
    assert!(rate(true, true, false) < 0.15, "before the start");
    assert!(rate(false, true, true) < 0.15, "control untouched");
    assert!(rate(true, false, true) < 0.15, "other browsers untouched");
}

#[test]
fn a_recovery_burst_adds_its_recoveries_and_an_outage_is_flagged() {
    let s = small("recovery-attack");
    let mut sim = Simulator::new(s, start());
    let hours: Vec<_> = (0..4 * 24).map(|_| sim.next_hour(None)).collect();
    let sms = |h: &crate::Hour| {
        count(&h.lines, |v| {
            v["event_type"] == "recovery.started" && v["data"]["channel"] == "sms"
        })
    };
    let burst: usize = hours[74..80].iter().map(sms).sum();
    let before: usize = hours[50..56].iter().map(sms).sum();
    assert!(burst >= 6 * 150, "{burst}");
    assert!(before < 50, "{before}");
    assert!(hours.iter().all(|h| !h.ingest_down));

    let mut sim = Simulator::new(small("stale-pipeline"), start());
    let down: Vec<u32> = (0..3 * 24)
        .map(|_| sim.next_hour(None))
        .filter(|h| h.ingest_down)
        .map(|h| h.index)
        .collect();
    assert_eq!(down, (50..58).collect::<Vec<_>>());
}
