//! Kafka ingest against a real Apache Kafka broker (scripts/kafka.sh).
//!
//! The broker address comes from `KEYSHIFT_TEST_KAFKA` (scripts/test.sh
//! starts a broker and sets it). Without it the tests are skipped, loudly,
//! except under CI, where they fail.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyshift_store::query::QueryLimits;
use keyshift_store::{QueryEngine, QueryExecutor, StoreConfig, Tables};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::common::event;

mod collector_mode;
mod controller;
mod errors;
mod exact;
mod object_store;
mod retention;

/// The Kafka tests share one broker and one of them restarts it: run them
/// one at a time.
pub(crate) static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn brokers() -> Option<String> {
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

pub(crate) async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
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

/// A `keyshift ingest` process consuming the scenario's topic.
struct Ingest {
    child: keyshift::child::Child,
}

impl Ingest {
    fn start_with(
        brokers: &str,
        topic: &str,
        group: &str,
        data_dir: &Path,
        listen: &str,
        env: &[(&str, &str)],
    ) -> Ingest {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyshift"));
        command
            .args([
                "ingest",
                "--brokers",
                brokers,
                "--topic",
                topic,
                "--group",
                group,
                "--listen",
                listen,
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("KEYSHIFT__KAFKA__MAX_BATCH_DELAY", "200ms")
            .env("KEYSHIFT__KAFKA__MAX_BATCH_MESSAGES", "5000")
            .env("RUST_LOG", "warn,keyshift=info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        Ingest {
            child: keyshift::child::Child::spawn(command).expect("spawn keyshift ingest"),
        }
    }

    /// SIGKILL: a crash.
    fn kill(self) {
        self.child.kill();
    }

    /// Waits up to `within` for the process to exit by itself.
    fn exit_status(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.child.exit_within(within)
    }

    /// SIGTERM; the process must exit cleanly.
    fn stop(self) {
        self.child.stop().expect("keyshift ingest stops cleanly");
    }
}

async fn counts(data_dir: &Path) -> (i64, i64, i64) {
    let root = data_dir.join("tables");
    counts_at(root.to_str().expect("utf8"), &HashMap::new()).await
}

/// Rows in `auth_events`, distinct event ids in it, rows in
/// `rejected_events`, of the tables at `root`; zeros while there are none.
async fn counts_at(root: &str, options: &HashMap<String, String>) -> (i64, i64, i64) {
    let Ok(tables) = Tables::open(root, options).await else {
        return (0, 0, 0);
    };
    // The count is the test's measurement, not the product's: its threads
    // are not niced and its time limit is long, so that a loaded machine
    // slows it down instead of failing the test.
    let config = StoreConfig {
        query_timeout: Duration::from_secs(300),
        query_nice: 0,
        ..StoreConfig::default()
    };
    let engine = QueryEngine::fixed(
        tables,
        QueryLimits::from(&config),
        QueryExecutor::standalone(&config).expect("query runtime"),
    )
    .expect("engine");
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
    let root = data_dir.join("tables");
    wait_for_at(
        root.to_str().expect("utf8"),
        &HashMap::new(),
        events,
        rejected,
        within,
    )
    .await
}

/// [`wait_for`] on the tables at `root`.
async fn wait_for_at(
    root: &str,
    options: &HashMap<String, String>,
    events: i64,
    rejected: i64,
    within: Duration,
) -> (i64, i64, i64) {
    let start = Instant::now();
    loop {
        let c = counts_at(root, options).await;
        if (c.0 >= events && c.2 >= rejected) || start.elapsed() > within {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", chrono::Utc::now().timestamp_micros())
}

/// One test's world: the shared broker (held for the test), a fresh topic
/// with 4 partitions, a consumer group, a data dir and a producer; the
/// tables under the data dir, or on the S3 server.
struct Scenario {
    brokers: String,
    topic: String,
    group: String,
    dir: tempfile::TempDir,
    producer: FutureProducer,
    s3: Option<crate::s3::S3Root>,
    _broker: tokio::sync::MutexGuard<'static, ()>,
}

impl Scenario {
    /// `None` when the Kafka tests are skipped (see [`brokers`]).
    async fn new(prefix: &str) -> Option<Scenario> {
        Self::with_partitions(prefix, 4).await
    }

    async fn with_partitions(prefix: &str, partitions: i32) -> Option<Scenario> {
        let brokers = brokers()?;
        let broker = BROKER.lock().await;
        let topic = unique(prefix);
        create_topic(&brokers, &topic, partitions).await;
        Some(Scenario {
            producer: producer(&brokers),
            group: unique("g"),
            dir: tempfile::tempdir().expect("tempdir"),
            brokers,
            topic,
            s3: None,
            _broker: broker,
        })
    }

    /// [`Scenario::new`] with the tables on the S3 server; `None` when
    /// either the Kafka or the object-storage tests are skipped.
    async fn on_s3(prefix: &str) -> Option<Scenario> {
        let s3 = crate::s3::s3_root(prefix)?;
        let mut sc = Self::new(prefix).await?;
        sc.s3 = Some(s3);
        Some(sc)
    }

    /// The table root and its storage options.
    fn store(&self) -> (String, HashMap<String, String>) {
        match &self.s3 {
            Some(s3) => (s3.uri.clone(), s3.options()),
            None => (
                self.dir.path().join("tables").display().to_string(),
                HashMap::new(),
            ),
        }
    }

    /// The environment a `keyshift` child needs to reach the tables.
    fn store_env(&self) -> Vec<(&'static str, String)> {
        self.s3.as_ref().map(|s3| s3.env()).unwrap_or_default()
    }

    async fn counts(&self) -> (i64, i64, i64) {
        let (root, options) = self.store();
        counts_at(&root, &options).await
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
        let env = self.store_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Ingest::start_with(
            &self.brokers,
            &self.topic,
            &self.group,
            self.dir.path(),
            "127.0.0.1:0",
            &env,
        )
    }

    /// Waits (up to 10 minutes) for the tables to hold that many rows.
    async fn wait_for(&self, events: i64, rejected: i64) -> (i64, i64, i64) {
        let (root, options) = self.store();
        wait_for_at(&root, &options, events, rejected, Duration::from_secs(600)).await
    }
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

/// A port nobody listens on right now (for a child's API).
fn free_port() -> u16 {
    keyshift::child::free_port().expect("free port")
}

/// One counter's value from a Prometheus text exposition.
async fn metric(url: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Deletes a partition's records below `before` (what retention does).
async fn delete_records(brokers: &str, topic: &str, partition: i32, before: i64) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(before))
        .expect("tpl");
    admin
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .expect("delete records");
}

async fn produce_valid(p: &FutureProducer, topic: &str, run: &str, n: usize) {
    let mut futures = Vec::with_capacity(n);
    for i in 0..n {
        let e = event(&format!("{run}-{i}"), "u", "login.example.com");
        futures.push(
            p.send_result(FutureRecord::<str, str>::to(topic).payload(&e.to_string()))
                .expect("queue"),
        );
    }
    for f in futures {
        f.await.expect("delivery").expect("acked");
    }
}
