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

mod control;
mod judging;
