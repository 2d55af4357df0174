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
    let _heavy = crate::common::HEAVY.lock().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_produces_every_event_to_kafka_keyed_by_user() {
    use rdkafka::Message;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let Some(brokers) = crate::kafka::brokers() else {
        return;
    };
    let _one_at_a_time = crate::kafka::BROKER.lock().await;
    let topic = crate::kafka::unique("sim");
    crate::kafka::create_topic(&brokers, &topic, 3).await;
    let args = file_args(&format!("kafka://{brokers}/{topic}"));
    let report = run_simulate(&args, CancellationToken::new())
        .await
        .expect("simulate to kafka");
    assert!(report.events > 100, "{report}");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", crate::kafka::unique("sim-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen < report.events && std::time::Instant::now() < deadline {
        let Some(msg) = consumer.poll(std::time::Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg.expect("message");
        let v: serde_json::Value =
            serde_json::from_slice(msg.payload().expect("payload")).expect("json");
        assert_eq!(
            msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            v["user_id"].as_str().map(str::to_owned),
            "keyed by user"
        );
        seen += 1;
    }
    assert_eq!(seen, report.events, "every simulated event is on the topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_attack_shows_in_the_kpis_and_on_metrics() {
    let _heavy = crate::common::HEAVY.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.kpi_gauges.enabled = false;
    let server = Server::start(c).await;
    let mut args = file_args(&server.base);
    args.scenario = scenario("recovery-attack", Some(2_000), Some(5));
    args.percent = None;
    args.start = Some("2026-11-20T00:00:00Z".to_owned());
    run_simulate(&args, CancellationToken::new())
        .await
        .expect("simulate");
    let kpis: serde_json::Value = server
        .client
        .get(format!("{}/v1/kpis", server.base))
        .query(&[
            ("rp_id", "shop.example"),
            ("from", "2026-11-20T00:00:00Z"),
            ("to", "2026-11-25T00:00:00Z"),
            ("interval", "day"),
            ("kpi", "recovery_per_1k_signins"),
        ])
        .send()
        .await
        .expect("kpis")
        .json()
        .await
        .expect("json");
    // Day 3 (the 23rd) holds the burst: its sms recoveries dwarf the others.
    let sms = |day: &str| {
        kpis["kpis"][0]["series"]
            .as_array()
            .expect("series")
            .iter()
            .find(|p| p["key"] == "sms" && p["t"].as_str().is_some_and(|t| t.starts_with(day)))
            .and_then(|p| p["numerator"].as_f64())
            .unwrap_or(0.0)
    };
    let (burst, before) = (sms("2026-11-23"), sms("2026-11-22"));
    assert!(
        burst >= 900.0 && burst > 10.0 * before.max(1.0),
        "{burst} vs {before}: {kpis}"
    );

    let metrics = server.scrape().await;
    let started: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("keyshift_recoveries_total{")
                && l.contains("channel=\"sms\"")
                && l.contains("stage=\"started\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        started >= 900.0,
        "sms recovery starts on /metrics: {started}"
    );
    server.stop().await;
}
