//! `keyshift demo` and `keyshift simulate`, run as a user would: the demo
//! steers a rollout on the simulated clock and its summary tells the story;
//! the simulator feeds a live server with the controller's assignments and
//! writes byte-identical files for a seed.

use keyshift::demo::{DemoArgs, run_demo};
use keyshift::simulate::{ScenarioArgs, SimulateArgs, run_simulate};
use keyshift_sim::Scenario;
use tokio_util::sync::CancellationToken;

use crate::common::{Server, config};

const SMALL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/demo-small.toml"
);

fn scenario(name: &str, users: Option<u32>, days: Option<u32>) -> ScenarioArgs {
    ScenarioArgs {
        scenario: name.to_owned(),
        seed: None,
        users,
        days,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_rolls_back_a_browser_regression_and_names_the_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("demo");
    let args = DemoArgs {
        scenario: scenario(SMALL, None, None),
        serve: false,
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        data_dir: Some(data_dir.clone()),
    };
    let mut out = Vec::new();
    run_demo(
        keyshift::Config::default(),
        &args,
        &mut out,
        CancellationToken::new(),
    )
    .await
    .expect("demo runs");
    let text = String::from_utf8(out).expect("utf-8");
    let rollback = text
        .lines()
        .find(|l| l.contains("rollback"))
        .unwrap_or_else(|| panic!("no rollback in:\n{text}"));
    assert!(
        rollback.contains("passkey_error_rate") && rollback.contains("browser=firefox"),
        "{rollback}"
    );
    assert!(
        text.contains("evidence: passkey_error_rate on browser=firefox"),
        "{text}"
    );
    assert!(text.contains("paused at"), "{text}");
    for kpi in [
        "coverage",
        "passkey_signin_success",
        "recovery_per_1k_signins",
    ] {
        assert!(text.contains(kpi), "{kpi} missing:\n{text}");
    }
    // The commands it prints work on what it left behind.
    assert!(
        text.contains(&format!("--data-dir {}", data_dir.display())),
        "{text}"
    );
    let mut cfg = keyshift::Config::default();
    cfg.server.data_dir = data_dir.clone();
    let decisions = keyshift::sql_cmd::run_sql(
        &cfg,
        "SELECT count(*) AS n FROM rollout_decisions WHERE action = 'rollback'",
        keyshift::sql_cmd::OutputFormat::Json,
    )
    .await
    .expect("sql");
    let v: serde_json::Value = serde_json::from_str(&decisions).expect("json");
    assert_eq!(v["rows"][0]["n"], 1, "{decisions}");

    // A data dir that is not empty is refused, not mixed into.
    let again = run_demo(
        keyshift::Config::default(),
        &args,
        &mut Vec::new(),
        CancellationToken::new(),
    )
    .await
    .expect_err("not a fresh dir");
    assert!(again.to_string().contains("not empty"), "{again}");
}

fn file_args(to: &str) -> SimulateArgs {
    SimulateArgs {
        scenario: scenario("healthy", Some(400), Some(1)),
        to: to.to_owned(),
        token: None,
        assign_from: None,
        percent: Some(20.0),
        speed: 0.0,
        start: Some("2026-11-01T00:00:00Z".to_owned()),
    }
}

#[tokio::test]
async fn a_seeded_simulation_writes_the_same_file_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let ra = run_simulate(
        &file_args(a.to_str().expect("path")),
        CancellationToken::new(),
    )
    .await
    .expect("simulate");
    run_simulate(
        &file_args(b.to_str().expect("path")),
        CancellationToken::new(),
    )
    .await
    .expect("simulate");
    let (ta, tb) = (
        std::fs::read_to_string(&a).expect("a"),
        std::fs::read_to_string(&b).expect("b"),
    );
    assert_eq!(ta, tb);
    assert_eq!(ta.lines().count() as u64, ra.events);
    assert!(ra.events > 100, "{ra}");
    // The day simulated, and the initial holders' earlier enrolments.
    assert!(
        ta.lines()
            .all(|l| l.contains("\"occurred_at\":\"2026-11-01T")
                || l.contains("\"event_type\":\"enrollment.succeeded\""))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_feeds_a_server_and_serves_the_controllers_assignment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.kpi_gauges.enabled = false;
    c.rollout.rollouts = Scenario::load("healthy").expect("healthy").rollouts;
    let server = Server::start(c).await;
    let mut args = file_args(&server.base);
    args.percent = None;
    args.start = None;
    let report = run_simulate(&args, CancellationToken::new())
        .await
        .expect("simulate");
    let stored = server.scalar("SELECT count(*) FROM auth_events").await;
    assert_eq!(
        stored,
        i64::try_from(report.events).expect("count"),
        "{report}"
    );
    // The rollout starts at its first step (5 %): the events say so, and
    // the treatment is about that share of the users.
    let rows = server
        .sql(
            "SELECT rollout_variant AS v, count(DISTINCT user_key) AS users, min(rollout_percent) AS p \
             FROM auth_events WHERE rollout_variant IS NOT NULL GROUP BY 1 ORDER BY 1",
        )
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["v"], "control");
    assert_eq!(rows[1]["v"], "treatment");
    assert_eq!(rows[1]["p"].as_f64(), Some(5.0), "{rows:?}");
    let (c, t) = (
        rows[0]["users"].as_f64().expect("n"),
        rows[1]["users"].as_f64().expect("n"),
    );
    assert!((0.01..0.12).contains(&(t / (t + c))), "{rows:?}");
    server.stop().await;
}
