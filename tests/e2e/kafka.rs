//! Kafka ingest against a real Apache Kafka broker (scripts/kafka.sh).
//!
//! The broker address comes from `KEYSHIFT_TEST_KAFKA` (scripts/test.sh
//! starts a broker and sets it). Without it the tests are skipped, loudly,
//! except under CI, where they fail.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyshift_store::query::QueryLimits;
use keyshift_store::{QueryEngine, StoreConfig, Tables};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::common::event;

/// The Kafka tests share one broker and one of them restarts it: run them
/// one at a time.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn brokers() -> Option<String> {
    match std::env::var("KEYSHIFT_TEST_KAFKA") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "KEYSHIFT_TEST_KAFKA is not set: in CI the Kafka tests must run (scripts/test.sh starts the broker)"
            )
        }
        _ => {
            eprintln!(
                "\n*** SKIPPED: Kafka test — KEYSHIFT_TEST_KAFKA is not set. Run scripts/test.sh, or \
                 scripts/kafka.sh start and KEYSHIFT_TEST_KAFKA=127.0.0.1:9092. ***\n"
            );
            None
        }
    }
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
    for r in results {
        r.expect("topic created");
    }
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

/// Produces `n` distinct valid events, plus re-sends of 1% of them (same
/// event_id) and 1% invalid messages, keyed by user. Returns the counts.
async fn produce_mix(p: &FutureProducer, topic: &str, run: &str, n: usize) -> (usize, usize) {
    let mut futures = Vec::with_capacity(n + n / 50);
    let mut invalid = 0;
    for i in 0..n {
        let user = format!("user-{}", i % 5000);
        let e = event(&format!("{run}-{i}"), &user, "login.example.com");
        futures.push(
            p.send_result(FutureRecord::to(topic).key(&user).payload(&e.to_string()))
                .expect("queue"),
        );
        if i % 100 == 50 {
            // A producer retry: the same event again.
            futures.push(
                p.send_result(FutureRecord::to(topic).key(&user).payload(&e.to_string()))
                    .expect("queue"),
            );
        }
        if i % 100 == 75 {
            let bad: Value = if invalid % 2 == 0 {
                let mut b = e.clone();
                b["event_id"] = Value::from(format!("{run}-bad-{i}"));
                b["data"]["credential"]["backup_eligible"] = Value::from(false);
                b
            } else {
                Value::from("not an event")
            };
            invalid += 1;
            let payload = if invalid % 3 == 0 {
                "{truncated".to_owned()
            } else {
                bad.to_string()
            };
            futures.push(
                p.send_result(FutureRecord::to(topic).key(&user).payload(&payload))
                    .expect("queue"),
            );
        }
    }
    for f in futures {
        f.await.expect("delivery").expect("acked");
    }
    (n, invalid)
}

struct Ingest {
    child: Child,
}

impl Ingest {
    fn start(brokers: &str, topic: &str, group: &str, data_dir: &Path) -> Ingest {
        let child = Command::new(env!("CARGO_BIN_EXE_keyshift"))
            .args([
                "ingest",
                "--brokers",
                brokers,
                "--topic",
                topic,
                "--group",
                group,
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("KEYSHIFT__KAFKA__MAX_BATCH_DELAY", "200ms")
            .env("KEYSHIFT__KAFKA__MAX_BATCH_MESSAGES", "5000")
            .env("RUST_LOG", "warn,keyshift=info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn keyshift ingest");
        Ingest { child }
    }

    fn kill(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "ingest exited with {status}");
    }
}

async fn counts(data_dir: &Path) -> (i64, i64, i64) {
    let root = data_dir.join("tables");
    let Ok(tables) = Tables::open(root.to_str().expect("utf8"), &Default::default()).await else {
        return (0, 0, 0);
    };
    let engine =
        QueryEngine::fixed(tables, QueryLimits::from(&StoreConfig::default())).expect("engine");
    let one = |sql: &'static str| {
        let engine = engine.clone();
        async move {
            let out = engine.sql(sql).await.expect("query");
            let rows = keyshift_metrics::batches_to_rows(&out.batches).expect("rows");
            rows[0]
                .as_object()
                .and_then(|o| o.values().next().cloned())
                .and_then(|v| v.as_i64())
                .unwrap_or(0)
        }
    };
    (
        one("SELECT count(*) FROM auth_events").await,
        one("SELECT count(DISTINCT event_id) FROM auth_events").await,
        one("SELECT count(*) FROM rejected_events").await,
    )
}

/// Waits until the tables hold `events` and `rejected` rows (or the deadline).
async fn wait_for(
    data_dir: &Path,
    events: i64,
    rejected: i64,
    within: Duration,
) -> (i64, i64, i64) {
    let start = Instant::now();
    loop {
        let c = counts(data_dir).await;
        if (c.0 >= events && c.2 >= rejected) || start.elapsed() > within {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", chrono::Utc::now().timestamp_micros())
}

/// One test's world: the shared broker (held for the test), a fresh topic
/// with 4 partitions, a consumer group, a data dir and a producer.
struct Scenario {
    brokers: String,
    topic: String,
    group: String,
    dir: tempfile::TempDir,
    producer: FutureProducer,
    _broker: tokio::sync::MutexGuard<'static, ()>,
}

impl Scenario {
    /// `None` when the Kafka tests are skipped (see [`brokers`]).
    async fn new(prefix: &str) -> Option<Scenario> {
        let brokers = brokers()?;
        let broker = BROKER.lock().await;
        let topic = unique(prefix);
        create_topic(&brokers, &topic, 4).await;
        Some(Scenario {
            producer: producer(&brokers),
            group: unique("g"),
            dir: tempfile::tempdir().expect("tempdir"),
            brokers,
            topic,
            _broker: broker,
        })
    }

    /// [`produce_mix`] of `n` events whose ids start with the topic and `run`.
    async fn produce(&self, run: &str, n: usize) -> (usize, usize) {
        produce_mix(
            &self.producer,
            &self.topic,
            &format!("{}{run}", self.topic),
            n,
        )
        .await
    }

    fn ingest(&self) -> Ingest {
        Ingest::start(&self.brokers, &self.topic, &self.group, self.dir.path())
    }

    /// Waits (up to 10 minutes) for the tables to hold that many rows.
    async fn wait_for(&self, events: i64, rejected: i64) -> (i64, i64, i64) {
        wait_for(self.dir.path(), events, rejected, Duration::from_secs(600)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_with_resends_and_invalid_messages() {
    let Some(sc) = Scenario::new("ks-exact").await else {
        return;
    };
    let (valid, invalid) = sc.produce("", 200_000).await;
    let ingest = sc.ingest();
    let c = sc.wait_for(valid as i64, invalid as i64).await;
    // Offsets reach Kafka after the Delta commit: standard tooling
    // (kafka-consumer-groups) sees the group catch up.
    let lag = wait_for_zero_lag(&sc.brokers, &sc.group, Duration::from_secs(60));
    assert_eq!(lag, Some(0), "kafka-consumer-groups should report no lag");
    ingest.stop();
    let c2 = counts(sc.dir.path()).await;
    assert_eq!(c, c2, "nothing arrived after the counts settled");
    assert_eq!(c, (valid as i64, valid as i64, invalid as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_through_five_sigkills() {
    let Some(sc) = Scenario::new("ks-kill").await else {
        return;
    };
    let (valid, invalid) = sc.produce("", 200_000).await;
    // Kill at five points spread over the run: whenever the table has grown
    // past the next threshold, SIGKILL and restart.
    for k in 1..=5 {
        let ingest = sc.ingest();
        sc.wait_for((valid as i64) * k / 7, 0).await;
        ingest.kill();
    }
    let ingest = sc.ingest();
    let c = sc.wait_for(valid as i64, invalid as i64).await;
    ingest.stop();
    assert_eq!(c, (valid as i64, valid as i64, invalid as i64));
}

/// Runs scripts/kafka.sh against the test broker.
fn kafka_sh(brokers: &str, args: &[&str]) -> std::process::Output {
    let port = brokers.rsplit(':').next().unwrap_or("9092");
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh"))
        .args(args)
        .env("KEYSHIFT_KAFKA_PORT", port)
        .output()
        .expect("scripts/kafka.sh")
}

/// Total lag of `group` as `kafka-consumer-groups --describe` prints it,
/// polled until it is 0 or the deadline passes.
fn wait_for_zero_lag(brokers: &str, group: &str, within: Duration) -> Option<i64> {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < within {
        let out = kafka_sh(
            brokers,
            &["consumer-groups", "--describe", "--group", group],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines
            .by_ref()
            .find(|l| l.contains("LAG"))
            .map(|h| h.split_whitespace().collect())
            .unwrap_or_default();
        if let Some(col) = header.iter().position(|h| *h == "LAG") {
            let lags: Vec<Option<i64>> = lines
                .map(|l| l.split_whitespace().nth(col).and_then(|v| v.parse().ok()))
                .collect();
            if !lags.is_empty() && lags.iter().all(Option::is_some) {
                let total = lags.iter().flatten().sum();
                last = Some(total);
                if total == 0 {
                    return last;
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_through_a_rebalance_and_a_killed_member() {
    let Some(sc) = Scenario::new("ks-rebalance").await else {
        return;
    };
    let (valid, invalid) = sc.produce("", 200_000).await;
    let first = sc.ingest();
    sc.wait_for(valid as i64 / 5, 0).await;
    // A second member joins mid-stream: the group rebalances.
    let second = sc.ingest();
    sc.wait_for(valid as i64 * 3 / 5, 0).await;
    // The first dies without leaving the group; its partitions move after
    // the session timeout.
    first.kill();
    let c = sc.wait_for(valid as i64, invalid as i64).await;
    second.stop();
    assert_eq!(c, (valid as i64, valid as i64, invalid as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_resumes_after_a_broker_restart() {
    let Some(mut sc) = Scenario::new("ks-restart").await else {
        return;
    };
    let (first_half, invalid_a) = sc.produce("-a", 100_000).await;
    let ingest = sc.ingest();
    sc.wait_for(first_half as i64 / 3, 0).await;

    let stop = kafka_sh(&sc.brokers, &["stop"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let start = kafka_sh(&sc.brokers, &["start"]);
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );

    // More data after the restart, from a new producer; the same ingest
    // process must pick it up.
    sc.producer = producer(&sc.brokers);
    let (second_half, invalid_b) = sc.produce("-b", 100_000).await;
    let want = (first_half + second_half) as i64;
    let c = sc.wait_for(want, (invalid_a + invalid_b) as i64).await;
    ingest.stop();
    assert_eq!(c, (want, want, (invalid_a + invalid_b) as i64));
}
