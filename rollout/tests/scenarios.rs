//! Scripted rollout scenarios: synthetic sign-ins written through the real
//! ingest pipeline into real Delta tables, a controller evaluated at chosen
//! instants (the clock is a parameter, never `sleep`), and a watermark the
//! test moves by hand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use keyshift_http::Principal;
use keyshift_ingest::metrics::IngestMetrics;
use keyshift_ingest::pipeline::Input;
use keyshift_ingest::pseudonym::Pseudonymizer;
use keyshift_ingest::{IngestConfig, Pipeline};
use keyshift_rollout::config::RolloutSettings;
use keyshift_rollout::controller::{Controller, Operation};
use keyshift_rollout::decision::{Action, Decision, Phase};
use keyshift_rollout::metrics::RolloutMetrics;
use keyshift_rollout::{RolloutConfig, RolloutError};
use keyshift_store::metrics::StoreMetrics;
use keyshift_store::query::QueryLimits;
use keyshift_store::{
    Lane, QueryEngine, QueryExecutor, Source, StoreConfig, Tables, Writer, WriterHandle,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const RP: &str = "login.example.com";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0)
        .single()
        .expect("time")
}

fn settings(toml_rollout: Value) -> RolloutSettings {
    let mut s = RolloutSettings::default();
    s.rollouts
        .push(serde_json::from_value::<RolloutConfig>(toml_rollout).expect("rollout config"));
    let errors = s.validate();
    assert!(errors.is_empty(), "{errors:?}");
    s
}

/// Steps 10 → 25 → 50 → 100 %, one hour each, passkey errors above 10 %
/// roll back (whole population and per browser).
fn standard(id: &str) -> RolloutSettings {
    settings(json!({
        "id": id,
        "rp_id": RP,
        "stage": "passkey_default",
        "steps": [
            {"percent": 10, "min_dwell": "1h", "min_exposed_users": 50},
            {"percent": 25, "min_dwell": "1h", "min_exposed_users": 50},
            {"percent": 50, "min_dwell": "1h", "min_exposed_users": 50},
            {"percent": 100, "min_dwell": "1h"}
        ],
        "guardrails": [{
            "metric": "passkey_error_rate", "kind": "absolute", "threshold": 0.10,
            "severity": "rollback", "min_events": 100, "consecutive_breaches": 2,
            "breakdown": "browser"
        }],
        "evaluation_interval": "30m",
        "freshness": "15m",
        "srm_min_users": 200
    }))
}

struct World {
    dir: tempfile::TempDir,
    writer: WriterHandle,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<keyshift_store::Result<()>>,
    engine: QueryEngine,
    pipeline: Pipeline,
    watermark: Arc<Mutex<Option<DateTime<Utc>>>>,
}

impl World {
    async fn new() -> World {
        Self::open(tempfile::tempdir().expect("tempdir")).await
    }

    async fn open(dir: tempfile::TempDir) -> World {
        let root = dir.path().join("tables");
        Self::open_at(&root, dir, Arc::new(Mutex::new(None))).await
    }

    /// A world writing the tables under `root` (`dir` is kept alive with it).
    async fn open_at(
        root: &std::path::Path,
        dir: tempfile::TempDir,
        watermark: Arc<Mutex<Option<DateTime<Utc>>>>,
    ) -> World {
        let tables = Tables::open_or_create(root.to_str().expect("utf8"), &Default::default())
            .await
            .expect("tables");
        let stop = CancellationToken::new();
        let (writer, task) = Writer::spawn(
            tables,
            StoreConfig::default(),
            StoreMetrics::unregistered(),
            stop.clone(),
        )
        .expect("writer");
        // A short wait for a query slot: the starvation test holds the
        // control slot and must not wait the default 5 s.
        let store = StoreConfig {
            query_queue_timeout: std::time::Duration::from_millis(300),
            ..StoreConfig::default()
        };
        let engine = QueryEngine::live(
            writer.published(),
            QueryLimits::from(&store),
            QueryExecutor::standalone(&store).expect("query runtime"),
        )
        .expect("engine");
        let pipeline = Pipeline::with_parts(
            IngestConfig::default(),
            Pseudonymizer::new(&[7u8; 32]),
            Arc::new(keyshift_ingest::dedup::DedupIndex::new()),
            writer.clone(),
            IngestMetrics::unregistered(),
        );
        World {
            dir,
            writer,
            stop,
            task,
            engine,
            pipeline,
            watermark,
        }
    }

    /// Stops the writer (as a killed process would stop writing) and opens
    /// the same data dir again.
    async fn restart(self) -> World {
        self.stop.cancel();
        self.task.await.expect("join").expect("writer");
        Self::open(self.dir).await
    }

    fn set_watermark(&self, at: DateTime<Utc>) {
        *self.watermark.lock().expect("lock") = Some(at);
    }

    async fn controller(
        &self,
        settings: RolloutSettings,
        now: DateTime<Utc>,
    ) -> Result<Controller, RolloutError> {
        let w = self.watermark.clone();
        Controller::start(
            settings,
            self.writer.clone(),
            self.engine.clone(),
            Arc::new(move || *w.lock().expect("lock")),
            RolloutMetrics::unregistered(),
            now,
        )
        .await
    }

    /// `users` sign in between `from` and `to`, each as the controller
    /// assigns them. Treatment users sign in with a passkey and fail with
    /// `error_rate(browser)`; control users use their password. One user in
    /// five is on Safari (iOS), the rest on Chrome (Windows). With `skew`,
    /// a quarter of the control users report the treatment (a broken
    /// client: sample-ratio mismatch).
    #[allow(clippy::too_many_arguments)] // a test helper; the call sites read well
    async fn traffic(
        &self,
        c: &Controller,
        rollout: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        users: u32,
        error_rate: impl Fn(&str) -> f64,
        skew: bool,
    ) {
        let span = (to - from).num_milliseconds();
        let mut inputs = Vec::new();
        for i in 0..users {
            let user = format!("user-{i}");
            let a = c.assign(rollout, &user).expect("assign");
            let mut variant = a.variant;
            if skew && variant == "control" && i % 4 == 0 {
                variant = "treatment";
            }
            let (browser, os) = if i % 5 == 0 {
                ("Safari", "iOS")
            } else {
                ("Chrome", "Windows")
            };
            let at = from + Duration::milliseconds(span * i64::from(i) / i64::from(users));
            let base = |n: u32, event_type: &str, data: Value| {
                json!({
                    "schema_version": 1,
                    "event_id": format!("{rollout}-{}-{i}-{n}", from.timestamp()),
                    "event_type": event_type,
                    "occurred_at": (at + Duration::milliseconds(i64::from(n))).to_rfc3339(),
                    "rp_id": RP,
                    "user_id": user,
                    "client": {"os": os, "browser": browser, "form_factor": "desktop", "app_type": "web"},
                    "rollout": {"rollout_id": rollout, "variant": variant, "percent": a.percent},
                    "data": data,
                })
            };
            if variant == "treatment" {
                inputs.push(base(0, "auth.started", json!({"method": "passkey"})));
                // Deterministic "random" draw per user and window.
                let draw =
                    ((u64::from(i) * 7919 + from.timestamp() as u64 / 60) % 1000) as f64 / 1000.0;
                if draw < error_rate(browser) {
                    inputs.push(base(
                        1,
                        "auth.failed",
                        json!({"method": "passkey", "error": {"name": "NotAllowedError"}}),
                    ));
                } else {
                    inputs.push(base(
                        1,
                        "auth.succeeded",
                        json!({"method": "passkey", "credential": {"backup_eligible": true, "backup_state": true}}),
                    ));
                }
            } else {
                inputs.push(base(0, "auth.started", json!({"method": "password"})));
                inputs.push(base(1, "auth.succeeded", json!({"method": "password"})));
            }
        }
        // The pipeline checks `occurred_at` against the real clock only for
        // the future; these are in the past.
        let prepared = self.pipeline.prepare(
            &Principal::Admin,
            inputs.iter().map(Input::from).collect(),
            &Source::Http,
            Utc::now(),
        );
        let summary = self
            .pipeline
            .commit(prepared, "http")
            .await
            .expect("commit");
        assert!(summary.rejected.is_empty(), "{:?}", summary.rejected);
    }
}

/// Evaluates and expects a recorded decision.
async fn recorded(c: &Controller, id: &str, at: DateTime<Utc>) -> Decision {
    c.evaluate(id, at)
        .await
        .expect("evaluate")
        .expect("a recorded decision")
}

fn healthy(_: &str) -> f64 {
    0.02
}

fn actions(ds: &[Decision]) -> Vec<(Action, Option<String>, u32)> {
    ds.iter()
        .map(|d| (d.action, d.reason.clone(), d.to_percent))
        .collect()
}

/// Runs hourly traffic and evaluations every 30 minutes for `hours`,
/// returning every recorded decision.
async fn run_hours(
    w: &World,
    c: &Controller,
    id: &str,
    start: DateTime<Utc>,
    hours: i64,
    users: u32,
    error_rate: &dyn Fn(DateTime<Utc>, &str) -> f64,
) -> Vec<Decision> {
    let mut out = Vec::new();
    for h in 0..hours * 2 {
        let from = start + Duration::minutes(30 * h);
        let to = from + Duration::minutes(30);
        w.traffic(c, id, from, to, users, |b| error_rate(from, b), false)
            .await;
        w.set_watermark(to);
        if let Some(d) = c.evaluate(id, to).await.expect("evaluate") {
            out.push(d);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_rollout_goes_through_every_step_and_completes() {
    let w = World::new().await;
    let c = w
        .controller(standard("healthy"), t0())
        .await
        .expect("start");
    let ds = run_hours(&w, &c, "healthy", t0(), 8, 1000, &|_, _| 0.02).await;
    let steps: Vec<u32> = ds
        .iter()
        .filter(|d| d.action == Action::Advance)
        .map(|d| d.to_percent)
        .collect();
    assert_eq!(steps, vec![2500, 5000, 10_000], "{:#?}", actions(&ds));
    assert_eq!(ds.last().map(|d| d.action), Some(Action::Complete));
    assert!(ds.iter().all(|d| d.action != Action::Rollback));
    let snap = c.snapshot("healthy").expect("snapshot");
    assert_eq!(snap.state.phase, Phase::Completed);
    assert_eq!(snap.percent, 100.0);
    // Every decision is in the table, in order, starting with `start`.
    let log = c.decisions("healthy").await.expect("log");
    assert_eq!(log.first().map(|d| d.action), Some(Action::Start));
    assert_eq!(
        log.iter().map(|d| d.seq).collect::<Vec<_>>(),
        (1..=log.len() as i64).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_spike_on_one_browser_rolls_back_within_two_evaluations() {
    let w = World::new().await;
    let id = "spike";
    let c = w.controller(standard(id), t0()).await.expect("start");
    // Healthy until the 25 % step, then Safari's passkey sign-ins fail 40 %
    // of the time (Chrome stays at 2 %; overall stays under 10 %).
    let mut t = t0();
    let mut at_25 = None;
    let mut evaluations_at_25 = 0;
    let mut rollback = None;
    for _ in 0..16 {
        let from = t;
        let to = t + Duration::minutes(30);
        let spike = at_25.is_some();
        w.traffic(
            &c,
            id,
            from,
            to,
            3000,
            |b| if spike && b == "Safari" { 0.40 } else { 0.02 },
            false,
        )
        .await;
        w.set_watermark(to);
        let d = c.evaluate(id, to).await.expect("evaluate");
        if at_25.is_some() {
            evaluations_at_25 += 1;
        }
        if let Some(d) = d {
            if d.action == Action::Advance && d.to_percent == 2500 {
                at_25 = Some(d.seq);
            }
            if d.action == Action::Rollback {
                rollback = Some(d);
                break;
            }
        }
        t = to;
    }
    let d = rollback.expect("rolled back");
    assert!(
        evaluations_at_25 <= 2,
        "took {evaluations_at_25} evaluations"
    );
    assert_eq!((d.from_percent, d.to_percent), (2500, 1000));
    assert_eq!(d.phase, Phase::Paused);
    let trigger = &d.evidence["trigger"];
    assert_eq!(trigger["metric"], "passkey_error_rate");
    assert_eq!(trigger["segment"], "browser=Safari");
    assert_eq!(trigger["limit"], 0.10);
    let interval = trigger["interval"].as_array().expect("interval");
    assert!(interval[0].as_f64().expect("lo") > 0.10, "{trigger}");
    assert!(trigger["treatment"]["n"].as_u64().expect("n") >= 100);
    let reason = d.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("browser=Safari") && reason.contains("passkey_error_rate"),
        "{reason}"
    );
    // The whole population did not breach: only the breakdown caught it.
    let all = d.evidence["guardrails"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["segment"] == "all")
        .cloned()
        .expect("all");
    assert_ne!(all["verdict"], "breach", "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_evaluation_is_recorded_as_starved_never_as_a_pass() {
    let w = World::new().await;
    let id = "starved";
    let c = w.controller(standard(id), t0()).await.expect("start");
    let at = t0() + Duration::hours(1);
    w.traffic(&c, id, t0(), at, 1000, healthy, false).await;
    w.set_watermark(at);
    // Something else holds the control lane's one slot.
    let release = Arc::new(tokio::sync::Notify::new());
    let occupant = tokio::spawn({
        let (engine, release) = (w.engine.clone(), release.clone());
        async move {
            engine
                .run(Lane::Control, move |_ctx| async move {
                    release.notified().await;
                    Ok(())
                })
                .await
        }
    });
    while w.engine.executor().handle().metrics().num_alive_tasks() == 0 {
        tokio::task::yield_now().await;
    }
    let d = recorded(&c, id, at).await;
    assert_eq!(
        (d.action, d.reason.as_deref()),
        (Action::Hold, Some("starved"))
    );
    assert_eq!(d.to_percent, 1000);
    assert!(
        d.evidence["error"]
            .as_str()
            .unwrap_or("")
            .contains("no control query slot"),
        "{}",
        d.evidence
    );
    // Starved again: the same hold is not recorded twice.
    assert!(
        c.evaluate(id, at + Duration::minutes(5))
            .await
            .expect("evaluate")
            .is_none()
    );
    release.notify_one();
    occupant.await.expect("join").expect("occupant");
    // Once the store answers, the evaluation judges the data again.
    let later = at + Duration::hours(1);
    w.traffic(&c, id, at, later, 1000, healthy, false).await;
    w.set_watermark(later);
    let d = recorded(&c, id, later).await;
    assert_ne!(d.reason.as_deref(), Some("starved"), "{}", d.evidence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traffic_and_stale_data_hold_without_moving() {
    let w = World::new().await;
    let id = "quiet";
    let c = w.controller(standard(id), t0()).await.expect("start");
    // Fresh watermark, no events.
    let at = t0() + Duration::hours(2);
    w.set_watermark(at);
    let d = recorded(&c, id, at).await;
    assert_eq!(
        (d.action, d.reason.as_deref()),
        (Action::Hold, Some("no_traffic"))
    );
    assert_eq!(d.to_percent, 1000);
    // Traffic arrives but ingest stalls: the watermark stays behind.
    w.traffic(&c, id, at, at + Duration::hours(1), 1000, healthy, false)
        .await;
    let later = at + Duration::hours(3);
    let d = recorded(&c, id, later).await;
    assert_eq!(
        (d.action, d.reason.as_deref()),
        (Action::Hold, Some("stale_data"))
    );
    assert_eq!(d.to_percent, 1000);
    assert_eq!(d.evidence["watermark"], json!(at));
    // Repeating the same hold is not recorded again.
    assert!(
        c.evaluate(id, later + Duration::minutes(30))
            .await
            .expect("evaluate")
            .is_none()
    );
    assert_eq!(
        c.snapshot(id)
            .and_then(|s| s.last_evaluation)
            .and_then(|d| d.reason)
            .as_deref(),
        Some("stale_data")
    );
    // Never advanced nor rolled back.
    let log = c.decisions(id).await.expect("log");
    assert!(
        log.iter()
            .all(|d| matches!(d.action, Action::Start | Action::Hold))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_noisy_evaluation_does_not_roll_back() {
    let w = World::new().await;
    let id = "noisy";
    let c = w.controller(standard(id), t0()).await.expect("start");
    // One bad half hour (30 % errors everywhere), then a lot of healthy
    // traffic in the same step.
    let t1 = t0() + Duration::minutes(30);
    w.traffic(&c, id, t0(), t1, 2000, |_| 0.30, false).await;
    w.set_watermark(t1);
    let d = recorded(&c, id, t1).await;
    assert_eq!(
        d.reason.as_deref(),
        Some("breach_unconfirmed"),
        "{}",
        d.evidence
    );
    assert_eq!(d.breaches.values().max(), Some(&1));
    let t2 = t1 + Duration::minutes(30);
    w.traffic(&c, id, t1, t2, 20_000, |_| 0.01, false).await;
    w.set_watermark(t2);
    let d = recorded(&c, id, t2).await;
    assert_ne!(d.action, Action::Rollback, "{}", d.evidence);
    assert!(
        d.breaches.is_empty(),
        "the counter starts over: {:?}",
        d.breaches
    );
    let log = c.decisions(id).await.expect("log");
    assert!(log.iter().all(|d| d.action != Action::Rollback));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_ratio_mismatch_holds_srm() {
    let w = World::new().await;
    let id = "srm";
    let c = w.controller(standard(id), t0()).await.expect("start");
    let t1 = t0() + Duration::hours(1);
    w.traffic(&c, id, t0(), t1, 2000, healthy, true).await;
    w.set_watermark(t1);
    let d = recorded(&c, id, t1).await;
    assert_eq!((d.action, d.reason.as_deref()), (Action::Hold, Some("srm")));
    let srm = &d.evidence["srm"];
    assert_eq!(srm["expected_share"], 0.1);
    assert!(
        srm["observed_share"].as_f64().expect("share") > 0.25,
        "{srm}"
    );
    assert!(srm["p_value"].as_f64().expect("p") < 0.001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_resumes_and_a_second_one_is_fenced() {
    let w = World::new().await;
    let id = "restart";
    let c = w.controller(standard(id), t0()).await.expect("start");
    let ds = run_hours(&w, &c, id, t0(), 3, 1000, &|_, _| 0.02).await;
    assert!(ds.iter().any(|d| d.action == Action::Advance));
    let before = c.snapshot(id).expect("snapshot");
    let history = c.decisions(id).await.expect("log");
    drop(c);

    // "Killed": the writer stops, the process starts again on the same dir.
    let watermark = *w.watermark.lock().expect("lock");
    let w = w.restart().await;
    *w.watermark.lock().expect("lock") = watermark;
    let now = t0() + Duration::hours(3);
    let c = w.controller(standard(id), now).await.expect("restart");
    let after = c.snapshot(id).expect("snapshot");
    assert_eq!(
        after.state, before.state,
        "same step, same window, same counters"
    );
    assert_eq!(c.decisions(id).await.expect("log"), history, "same history");

    // A second controller (another process, say) on the same tables: it
    // folded the same log, then the first one decides; the second one's
    // next decision is refused and it stops.
    let other = World::open_shared(&w).await;
    let second = other
        .controller(standard(id), now)
        .await
        .expect("second starts");
    c.operate(id, Operation::Pause, "maintenance window", "admin", now)
        .await
        .expect("first decides");
    let err = second
        .operate(id, Operation::Pause, "me too", "admin", now)
        .await
        .expect_err("fenced");
    assert!(matches!(err, RolloutError::Fenced { .. }), "{err}");
    // The log holds the first controller's decision only.
    let log = c.decisions(id).await.expect("log");
    assert_eq!(
        log.last().and_then(|d| d.reason.clone()).as_deref(),
        Some("maintenance window")
    );
    assert_eq!(log.len(), history.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_same_events_and_clock_gives_the_same_decisions() {
    // Two independent worlds fed the same traffic at the same instants.
    let mut logs = Vec::new();
    for _ in 0..2 {
        let w = World::new().await;
        let c = w.controller(standard("replay"), t0()).await.expect("start");
        run_hours(&w, &c, "replay", t0(), 3, 800, &|_, b| {
            if b == "Safari" { 0.05 } else { 0.02 }
        })
        .await;
        logs.push(c.decisions("replay").await.expect("log"));
    }
    let strip = |ds: &[Decision]| -> Vec<(i64, Action, Option<String>, u32, String)> {
        ds.iter()
            .map(|d| {
                (
                    d.seq,
                    d.action,
                    d.reason.clone(),
                    d.to_percent,
                    d.evidence.to_string(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&logs[0]), strip(&logs[1]));
    assert!(logs[0].len() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_operations_need_a_reason_and_a_valid_transition() {
    let w = World::new().await;
    let id = "manual";
    let c = w.controller(standard(id), t0()).await.expect("start");
    let now = t0() + Duration::minutes(5);
    assert!(matches!(
        c.operate(id, Operation::Pause, " ", "admin", now).await,
        Err(RolloutError::Invalid { .. })
    ));
    let d = c
        .operate(id, Operation::Promote, "confident", "admin", now)
        .await
        .expect("promote");
    assert_eq!((d.action, d.to_percent), (Action::Promote, 2500));
    let d = c
        .operate(id, Operation::Rollback, "support tickets", "admin", now)
        .await
        .expect("rollback");
    assert_eq!(
        (d.action, d.to_percent, d.phase),
        (Action::Rollback, 1000, Phase::Paused)
    );
    assert!(matches!(
        c.operate(id, Operation::Pause, "again", "admin", now).await,
        Err(RolloutError::Invalid { .. })
    ));
    let d = c
        .operate(id, Operation::Abort, "incident 42", "admin", now)
        .await
        .expect("abort");
    assert_eq!((d.to_percent, d.phase), (0, Phase::Aborted));
    assert!(
        !c.assign(id, "user-1").expect("assign").enabled,
        "nobody is exposed at 0%"
    );
    let d = c
        .operate(id, Operation::Resume, "fixed", "admin", now)
        .await
        .expect("resume");
    assert_eq!(d.phase, Phase::Running);
    // Resumed at 0 %: the next evaluation re-enters the first step.
    w.set_watermark(now);
    let d = recorded(&c, id, now).await;
    assert_eq!((d.action, d.to_percent), (Action::Advance, 1000));
    let by_actor: BTreeMap<String, usize> =
        c.decisions(id)
            .await
            .expect("log")
            .iter()
            .fold(BTreeMap::new(), |mut m, d| {
                *m.entry(d.actor.clone()).or_default() += 1;
                m
            });
    assert_eq!(by_actor.get("admin"), Some(&4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_configuration_is_recorded_not_applied_silently() {
    let w = World::new().await;
    let id = "changing";
    let c = w.controller(standard(id), t0()).await.expect("start");
    drop(c);
    let mut changed = standard(id);
    changed.rollouts[0].steps[0].min_exposed_users = 10;
    changed.rollouts[0].group_id = Some("another-salt".to_owned());
    let c = w
        .controller(changed.clone(), t0() + Duration::hours(1))
        .await
        .expect("restart");
    let log = c.decisions(id).await.expect("log");
    let last = log.last().expect("decision");
    assert_eq!(last.action, Action::ConfigChanged);
    assert_eq!(last.config_hash, changed.rollouts[0].hash());
    // The salt does not change under running users.
    assert_eq!(last.group_id, id);
    assert!(
        last.evidence["notes"].to_string().contains("group_id"),
        "{}",
        last.evidence
    );
}

impl World {
    /// A second writer on the same tables (another process, as far as the
    /// table is concerned).
    async fn open_shared(w: &World) -> World {
        let root = w.dir.path().join("tables");
        let unused = tempfile::tempdir().expect("tempdir");
        Self::open_at(&root, unused, w.watermark.clone()).await
    }
}
