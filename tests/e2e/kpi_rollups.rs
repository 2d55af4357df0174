//! The day rollups of the KPI reports (`metrics/src/kpi/rollup.rs`): a
//! ceremony that crosses midnight is one ceremony of the day it started,
//! whatever the range; ranges with hours that are not whole; the rollup
//! task making the days before a report asks for them; and reports from
//! the users' and quantiles' day rollups matching reports grouped from the
//! events.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, sample};
use crate::kpis::{ADMIN, EVENTS, get, secured, store, total};

const RP: &str = "midnight.example";

fn ev(id: &str, etype: &str, at: &str, attempt: &str, data: Value) -> String {
    json!({
        "schema_version": 1,
        "event_id": id,
        "event_type": etype,
        "occurred_at": at,
        "rp_id": RP,
        "user_id": format!("user-{attempt}"),
        "attempt_id": attempt,
        "client": {"os": "iOS", "browser": "Safari", "form_factor": "mobile", "app_type": "web"},
        "data": data
    })
    .to_string()
}

/// Ceremony `x` starts at 23:59:50 on the 2nd and succeeds at 00:00:05 on
/// the 3rd; ceremony `y` starts at 10:15 on the 3rd and fails.
fn events() -> Vec<String> {
    let passkey = json!({"method": "passkey"});
    vec![
        ev(
            "m1",
            "auth.started",
            "2026-11-02T23:59:50Z",
            "x",
            passkey.clone(),
        ),
        ev(
            "m2",
            "auth.succeeded",
            "2026-11-03T00:00:05Z",
            "x",
            json!({"method": "passkey", "duration_ms": 15000}),
        ),
        ev("m3", "auth.started", "2026-11-03T10:15:00Z", "y", passkey),
        ev(
            "m4",
            "auth.failed",
            "2026-11-03T10:15:03Z",
            "y",
            json!({"method": "passkey", "error": {"name": "NotAllowedError"}}),
        ),
    ]
}

/// `[numerator, denominator]` of the passkey sign-in success over the
/// range; `[0, 0]` when no ceremony is in it (no totals row).
fn counted(report: &Value) -> [i64; 2] {
    match report["kpis"][0]["totals"].as_array() {
        Some(rows) if rows.is_empty() => [0, 0],
        _ => total(report, "passkey_signin_success"),
    }
}

/// `(day, numerator, denominator)` of each point of a series.
fn points_by_day(series: &Value) -> Vec<(String, i64, i64)> {
    series
        .as_array()
        .expect("series")
        .iter()
        .map(|p| {
            (
                p["t"].as_str().expect("t")[..10].to_owned(),
                p["numerator"].as_i64().expect("numerator"),
                p["denominator"].as_i64().expect("denominator"),
            )
        })
        .collect()
}

async fn success(server: &Server, from: &str, to: &str) -> Value {
    let (status, report) = get(
        server,
        &format!("/v1/kpis?rp_id={RP}&from={from}&to={to}&kpi=passkey_signin_success"),
        ADMIN,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    report
}

#[tokio::test]
async fn a_ceremony_across_midnight_is_one_of_the_day_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(secured(dir.path())).await;
    store(&server, &events()).await;

    // By day: `x` succeeded on the 2nd (where it started), `y` failed on
    // the 3rd.
    let both = success(&server, "2026-11-02T00:00:00Z", "2026-11-04T00:00:00Z").await;
    assert_eq!(total(&both, "passkey_signin_success"), [1, 2], "{both}");
    let days = points_by_day(&both["kpis"][0]["series"]);
    assert_eq!(
        days,
        [("2026-11-02".into(), 1, 1), ("2026-11-03".into(), 0, 1)],
        "{both}"
    );
    for (from, to, want, why) in [
        (
            "2026-11-03T00:00:00Z",
            "2026-11-04T00:00:00Z",
            [0, 1],
            "`x` started before the range",
        ),
        (
            "2026-11-02T00:00:00Z",
            "2026-11-03T00:00:00Z",
            [1, 1],
            "`x` is judged by its success after the range's end",
        ),
        (
            "2026-11-02T23:30:00Z",
            "2026-11-03T10:30:00Z",
            [1, 2],
            "hours that are not whole, at both ends",
        ),
        (
            "2026-11-02T23:59:55Z",
            "2026-11-03T10:15:01Z",
            [0, 1],
            "inside the first event of `x`, up to just after `y` started",
        ),
        (
            "2026-11-03T10:20:00Z",
            "2026-11-03T10:40:00Z",
            [0, 0],
            "no ceremony started in it",
        ),
    ] {
        let report = success(&server, from, to).await;
        assert_eq!(counted(&report), want, "{why}: {report}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_rollup_task_makes_the_days_before_a_report_asks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = secured(dir.path());
    c.kpi_rollups.enabled = true;
    c.kpi_rollups.interval = Duration::from_secs(1);
    let server = Server::start(c).await;
    store(&server, &events()).await;

    // Two days, each with a ceremony, a counted-events, a users and a
    // quantiles rollup.
    const MADE: f64 = 8.0;
    rollups_made(&server, MADE).await;
    let before = memory_hits(&server).await;
    let report = success(&server, "2026-11-02T00:00:00Z", "2026-11-04T00:00:00Z").await;
    assert_eq!(total(&report, "passkey_signin_success"), [1, 2], "{report}");
    // The report found the two ceremony rollups it reads in the cache.
    assert_eq!(memory_hits(&server).await - before, 2.0);
    let made = sample(&server.scrape().await, "keyshift_kpi_rollups_made_total");
    assert_eq!(made, Some(MADE));
    server.stop().await;
}

/// The golden events, and the same again under a second relying party
/// (other users: a user's key is of one relying party), whose sign-ins
/// took longer.
fn two_parties() -> Vec<String> {
    let mut lines: Vec<String> = EVENTS.lines().map(str::to_owned).collect();
    for line in EVENTS.lines() {
        let mut v: Value = serde_json::from_str(line).expect("golden event");
        v["rp_id"] = json!("second.example");
        // Other durations: quantiles of one relying party differ from
        // those of both.
        if let Some(ms) = v["data"]["duration_ms"].as_i64() {
            v["data"]["duration_ms"] = json!(ms * 3 + 7);
        }
        v["event_id"] = json!(format!("second-{}", v["event_id"].as_str().expect("id")));
        lines.push(v.to_string());
    }
    lines
}

/// Results found in the result cache's memory so far.
async fn memory_hits(server: &Server) -> f64 {
    sample(
        &server.scrape().await,
        "keyshift_query_cache_lookups_total{outcome=\"memory\"}",
    )
    .unwrap_or(0.0)
}

/// Waits until the rollup task has made `want` rollups.
async fn rollups_made(server: &Server, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let made = sample(&server.scrape().await, "keyshift_kpi_rollups_made_total");
        if made == Some(want) {
            return;
        }
        assert!(
            made.unwrap_or(0.0) < want,
            "more rollups than days: {made:?}"
        );
        assert!(Instant::now() < deadline, "rollups never made: {made:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn reports_by_day_from_user_and_quantile_rollups_match_reports_from_the_events() {
    let (a_dir, b_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut c = secured(a_dir.path());
    c.kpi_rollups.enabled = true;
    c.kpi_rollups.interval = Duration::from_secs(1);
    let with = Server::start(c).await;
    let without = Server::start(secured(b_dir.path())).await;
    let lines = two_parties();
    store(&with, &lines).await;
    store(&without, &lines).await;
    // Seven days with events, four rollups each.
    rollups_made(&with, 28.0).await;

    // A KPI of users alone, by day over two whole days, reads the two
    // days' users rollups from the cache (and groups the events by user
    // only for the totals).
    let before = memory_hits(&with).await;
    let q = "rp_id=golden.example&from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z\
             &interval=day&kpi=coverage";
    let (status, got) = get(&with, &format!("/v1/kpis?{q}"), ADMIN).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(memory_hits(&with).await - before, 2.0);
    let (_, want) = get(&without, &format!("/v1/kpis?{q}"), ADMIN).await;
    assert_eq!(got["kpis"], want["kpis"]);
    // So does a quantile's series, from the days' quantile rollups.
    let before = memory_hits(&with).await;
    let q = q.replace("kpi=coverage", "kpi=time_to_sign_in_p95");
    let (status, got) = get(&with, &format!("/v1/kpis?{q}"), ADMIN).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(memory_hits(&with).await - before, 2.0);
    let (_, want) = get(&without, &format!("/v1/kpis?{q}"), ADMIN).await;
    assert_eq!(got["kpis"], want["kpis"]);

    for rp in ["rp_id=golden.example&", ""] {
        for by in [
            "",
            "&by=platform",
            "&by=browser",
            "&by=form_factor",
            "&by=variant",
            "&by=rollout_id",
            "&by=rp_id",
        ] {
            // Whole days (from rollups), and a range whose ends are not
            // (its first and last days from their events).
            for range in [
                "from=2026-10-01T00:00:00Z&to=2026-11-05T00:00:00Z",
                "from=2026-11-02T06:00:00Z&to=2026-11-03T12:00:00Z",
            ] {
                let q = format!("{rp}{range}&interval=day{by}");
                let (status, got) = get(&with, &format!("/v1/kpis?{q}"), ADMIN).await;
                assert_eq!(status, 200, "{got}");
                let (status, want) = get(&without, &format!("/v1/kpis?{q}"), ADMIN).await;
                assert_eq!(status, 200, "{want}");
                assert_eq!(got["kpis"], want["kpis"], "{q}");
                let (status, got) = get(&with, &format!("/v1/funnel?{q}"), ADMIN).await;
                assert_eq!(status, 200, "{got}");
                let (_, want) = get(&without, &format!("/v1/funnel?{q}"), ADMIN).await;
                assert_eq!(got["funnels"], want["funnels"], "{q}");
            }
        }
    }
    // A golden value from the rollups: the users enrolled of those offered
    // on the 2nd and 3rd, as `kpis.rs` checks it without them.
    let exp: Value = serde_json::from_str(crate::kpis::EXPECTED).expect("expected json");
    let q = exp["query"].as_str().expect("query");
    let (_, got) = get(&with, &format!("/v1/kpis?{q}"), ADMIN).await;
    let rate = got["kpis"]
        .as_array()
        .expect("kpis")
        .iter()
        .find(|k| k["kpi"] == "enrollment_rate")
        .expect("enrollment_rate");
    let want = &exp["kpis"]["enrollment_rate"]["series"];
    let mut series = points_by_day(&rate["series"]);
    series.sort();
    let mut expected: Vec<(String, i64, i64)> = want
        .as_array()
        .expect("expected series")
        .iter()
        .map(|p| {
            (
                p[0].as_str().expect("t").to_owned(),
                p[2].as_i64().expect("num"),
                p[3].as_i64().expect("den"),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(series, expected, "{rate}");
    // Late events: a slow sign-in on the 3rd, and a passkey created before
    // the range by a user active on the 2nd (every later day's users rollup
    // reads it in its history, although the 2nd's files did not change).
    // The rollups of the days they change are not read any more, whether
    // or not the task has made them again yet.
    let mut late = crate::common::event("late-1", "late-user", "golden.example");
    late["occurred_at"] = json!("2026-11-03T12:00:00Z");
    late["data"]["duration_ms"] = json!(99_999);
    let mut enrolled = crate::common::event("late-2", "p2-0", "golden.example");
    enrolled["event_type"] = json!("enrollment.succeeded");
    enrolled["occurred_at"] = json!("2026-10-30T12:00:00Z");
    enrolled["data"] = json!({"credential": {"backup_eligible": true, "backup_state": true}});
    let lates = [late.to_string(), enrolled.to_string()];
    let q = "rp_id=golden.example&from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z&interval=day";
    let (_, before) = get(&with, &format!("/v1/kpis?{q}"), ADMIN).await;
    store(&with, &lates).await;
    store(&without, &lates).await;
    let (_, got) = get(&with, &format!("/v1/kpis?{q}"), ADMIN).await;
    let (_, want) = get(&without, &format!("/v1/kpis?{q}"), ADMIN).await;
    assert_eq!(got["kpis"], want["kpis"]);
    assert_ne!(got["kpis"], before["kpis"], "the late events count");

    with.stop().await;
    without.stop().await;
}
