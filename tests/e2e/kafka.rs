//! Kafka ingest against a real Apache Kafka broker (scripts/kafka.sh).
//!
//! The broker address comes from `KEYSHIFT_TEST_KAFKA` (scripts/test.sh
//! starts a broker and sets it). Without it the tests are skipped, loudly,
//! except under CI, where they fail.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyshift_store::query::QueryLimits;
use keyshift_store::{QueryEngine, QueryExecutor, StoreConfig, Tables};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::common::event;

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

struct Ingest {
    child: Child,
}

impl Ingest {
    fn start(brokers: &str, topic: &str, group: &str, data_dir: &Path) -> Ingest {
        Self::start_with(brokers, topic, group, data_dir, "127.0.0.1:0", &[])
    }

    fn start_with(
        brokers: &str,
        topic: &str,
        group: &str,
        data_dir: &Path,
        listen: &str,
        env: &[(&str, &str)],
    ) -> Ingest {
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
                listen,
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("KEYSHIFT__KAFKA__MAX_BATCH_DELAY", "200ms")
            .env("KEYSHIFT__KAFKA__MAX_BATCH_MESSAGES", "5000")
            .env("RUST_LOG", "warn,keyshift=info")
            .envs(env.iter().copied())
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

    /// Waits up to `within` for the process to exit by itself.
    fn exit_status(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
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
    let engine = QueryEngine::fixed(
        tables,
        QueryLimits::from(&StoreConfig::default()),
        QueryExecutor::standalone(&StoreConfig::default()).expect("query runtime"),
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
    let start = Instant::now();
    loop {
        let c = counts(data_dir).await;
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

/// A port nobody listens on right now (for a child's API).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One counter's value from a Prometheus text exposition.
async fn metric(url: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_reach_the_dlq_topic_with_their_error() {
    let Some(sc) = Scenario::new("ks-dlq").await else {
        return;
    };
    let dlq = format!("{}.dlq", sc.topic);
    create_topic(&sc.brokers, &dlq, 1).await;
    let (valid, invalid) = sc.produce("", 5_000).await;
    let ingest = Ingest::start_with(
        &sc.brokers,
        &sc.topic,
        &sc.group,
        sc.dir.path(),
        "127.0.0.1:0",
        &[("KEYSHIFT__KAFKA__DLQ_TOPIC", &dlq)],
    );
    let c = sc.wait_for(valid as i64, invalid as i64).await;
    ingest.stop();
    assert_eq!(c, (valid as i64, valid as i64, invalid as i64));

    // Every dead letter, once, with its original bytes and the reason.
    let consumer: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &sc.brokers)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    rdkafka::consumer::Consumer::subscribe(&consumer, &[&dlq]).expect("subscribe");
    let mut seen = std::collections::HashSet::new();
    while seen.len() < invalid {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a dead letter within 30 s")
            .expect("receive");
        use rdkafka::message::{Headers, Message};
        let headers = m.headers().expect("headers");
        let header = |key: &str| {
            headers
                .iter()
                .find(|h| h.key == key)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| panic!("header {key}"))
        };
        assert!(!header("keyshift-error").is_empty());
        assert_eq!(header("keyshift-source-topic"), sc.topic);
        let key = format!(
            "{}/{}",
            header("keyshift-source-partition"),
            header("keyshift-source-offset")
        );
        let payload = String::from_utf8_lossy(m.payload().expect("payload")).into_owned();
        assert!(
            payload.contains("truncated")
                || payload.contains("not an event")
                || payload.contains("backup_eligible"),
            "{payload}"
        );
        assert!(seen.insert(key), "a dead letter was sent twice");
    }
    // …and nothing else on the topic: each dead letter was sent once.
    let (_, high) =
        rdkafka::consumer::Consumer::fetch_watermarks(&consumer, &dlq, 0, Duration::from_secs(10))
            .expect("watermarks");
    assert_eq!(high, invalid as i64);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_out_of_range_is_loud_and_follows_the_policy() {
    let Some(sc) = Scenario::with_partitions("ks-oor", 1).await else {
        return;
    };
    produce_valid(&sc.producer, &sc.topic, &format!("{}a", sc.topic), 100).await;
    let ingest = sc.ingest();
    sc.wait_for(100, 0).await;
    ingest.stop();
    // While keyshift is down, 100 more arrive and retention takes the first
    // half of them (offsets 100..149) before they were stored.
    produce_valid(&sc.producer, &sc.topic, &format!("{}b", sc.topic), 100).await;
    delete_records(&sc.brokers, &sc.topic, 0, 150).await;

    // Policy "stop": the process exits non-zero and stores nothing more.
    let mut stopping = Ingest::start_with(
        &sc.brokers,
        &sc.topic,
        &sc.group,
        sc.dir.path(),
        "127.0.0.1:0",
        &[("KEYSHIFT__KAFKA__OFFSET_OUT_OF_RANGE", "stop")],
    );
    let status = stopping
        .exit_status(Duration::from_secs(60))
        .expect("ingest stops by itself under policy stop");
    assert!(!status.success(), "policy stop must exit non-zero");
    assert_eq!(counts(sc.dir.path()).await.0, 100);

    // Policy "earliest" (the default): resume at the first retained message,
    // count the gap in a metric.
    let port = free_port();
    let ingest = Ingest::start_with(
        &sc.brokers,
        &sc.topic,
        &sc.group,
        sc.dir.path(),
        &format!("127.0.0.1:{port}"),
        &[],
    );
    let c = sc.wait_for(150, 0).await;
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let gaps = metric(&metrics, "keyshift_kafka_offset_out_of_range_total").await;
    // The Kafka metrics follow docs/metrics.md too.
    let text = reqwest::get(&metrics)
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(text.contains("keyshift_kafka_rebalances_total{kind=\"assign\"}"));
    crate::prometheus::assert_conforms(&text, &["login.example.com"]);
    ingest.stop();
    assert_eq!(c, (150, 150, 0));
    assert_eq!(gaps, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mode_collector_feeds_ingest_with_the_same_verdicts() {
    let Some(sc) = Scenario::new("ks-collector").await else {
        return;
    };
    let cdir = tempfile::tempdir().expect("tempdir");
    let mut cfg = crate::common::config(cdir.path());
    cfg.kafka.brokers = Some(sc.brokers.clone());
    cfg.kafka.topic = sc.topic.clone();
    cfg.auth.admin_tokens = vec!["admin-token-0123456789".to_owned()];
    cfg.auth.rp_tokens = vec![keyshift_http::RpToken {
        token: "rp-token-0123456789abc".to_owned(),
        rp_id: "login.example.com".to_owned(),
    }];
    let collector = keyshift::start_collector(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .expect("collector starts");
    let url = format!("http://{}/v1/events", collector.addr);
    let client = reqwest::Client::new();
    let post = |token: &'static str, lines: Vec<String>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/x-ndjson")
                .body(lines.join("\n"))
                .send()
                .await
                .expect("post");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        }
    };
    let run = &sc.topic;
    // The RP token: 500 of its own events, 2 re-sends, 3 invalid, 4 for
    // another rp_id (refused by scope).
    let mut lines: Vec<String> = (0..500)
        .map(|i| {
            event(
                &format!("{run}-rp-{i}"),
                &format!("u{i}"),
                "login.example.com",
            )
            .to_string()
        })
        .collect();
    lines.push(lines[0].clone());
    lines.push(lines[1].clone());
    lines.push("{not json".to_owned());
    lines.push(r#"{"schema_version":1}"#.to_owned());
    let mut future = event(&format!("{run}-future"), "u", "login.example.com");
    future["occurred_at"] = Value::from("2999-01-01T00:00:00Z");
    lines.push(future.to_string());
    for i in 0..4 {
        lines.push(event(&format!("{run}-other-{i}"), "u", "other.example.com").to_string());
    }
    let (status, body) = post("rp-token-0123456789abc", lines).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 502, "{body}");
    assert_eq!(body["forwarded"], 509, "{body}");
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(7), "{body}");
    // The admin token may write any rp_id.
    let admin_lines: Vec<String> = (0..300)
        .map(|i| {
            event(
                &format!("{run}-adm-{i}"),
                &format!("u{i}"),
                "other.example.com",
            )
            .to_string()
        })
        .collect();
    let (status, body) = post("admin-token-0123456789", admin_lines).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 300, "{body}");
    // No token: 401, nothing produced.
    let resp = client.post(&url).body("{}").send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 401);
    let text = reqwest::get(format!("http://{}/metrics", collector.addr))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(text.contains("keyshift_kafka_produce_seconds_count"));
    crate::prometheus::assert_conforms(&text, &["login.example.com", "other.example.com"]);
    collector.stop().await.expect("collector stops cleanly");

    // Ingest stores what the embedded collector would have: 800 distinct
    // events; the 7 refusals, scope ones included, in rejected_events.
    let ingest = sc.ingest();
    let c = sc.wait_for(800, 7).await;
    ingest.stop();
    assert_eq!(c, (800, 800, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mode_collector_answers_503_when_the_broker_does_not_ack() {
    // No broker needed: nothing listens on this port.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = crate::common::config(dir.path());
    cfg.kafka.brokers = Some(format!("127.0.0.1:{}", free_port()));
    cfg.kafka.produce_timeout = Duration::from_secs(2);
    let collector = keyshift::start_collector(cfg, tokio_util::sync::CancellationToken::new())
        .await
        .expect("collector starts");
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/events", collector.addr))
        .json(&event("e-1", "u", "login.example.com"))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("retry with the same event ids")),
        "{body}"
    );
    collector.stop().await.expect("collector stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_go_to_kafka_and_a_second_controller_fences_the_first() {
    let Some(sc) = Scenario::new("ks-fence").await else {
        return;
    };
    let decisions_topic = format!("{}.decisions", sc.topic);
    create_topic(&sc.brokers, &decisions_topic, 1).await;
    let txn_id = unique("keyshift-rollout-test");
    let admin = "admin-token-0123456789";
    let cfg = |dir: &Path, group: &str| {
        let mut c = crate::common::config(dir);
        c.auth.admin_tokens = vec![admin.to_owned()];
        c.kafka.brokers = Some(sc.brokers.clone());
        c.kafka.topic = sc.topic.clone();
        c.kafka.group_id = group.to_owned();
        c.rollout.decisions_topic = decisions_topic.clone();
        c.rollout.transactional_id = txn_id.clone();
        c.rollout.rollouts = vec![
            serde_json::from_value(serde_json::json!({
                "id": "pk", "rp_id": "login.example.com", "stage": "passkey_default",
                "steps": [{"percent": 5}, {"percent": 100}], "evaluation_interval": "1h"
            }))
            .expect("rollout"),
        ];
        c
    };
    let (d1, d2) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let first = crate::common::Server::start(cfg(d1.path(), &unique("g1"))).await;
    // A second controller claims the same transactional id.
    let second = crate::common::Server::start(cfg(d2.path(), &unique("g2"))).await;
    let pause = |s: &crate::common::Server| {
        s.post("/v1/rollouts/pk/pause")
            .json(&serde_json::json!({"reason": "checking"}))
            .send()
    };
    // The first controller's next decision (this pause, or its own first
    // evaluation if that comes first) fails: it refuses to decide…
    if let Ok(resp) = pause(&first).await {
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(
            status, 500,
            "the fenced controller refuses to decide: {body}"
        );
        assert!(body["error"].to_string().contains("fenced"), "{body}");
    }
    // …and stops its process with an error.
    let outcome = tokio::time::timeout(Duration::from_secs(30), first.running.wait())
        .await
        .expect("the fenced process stops by itself");
    let err = outcome.expect_err("a fenced controller is a failure");
    assert!(format!("{err:#}").contains("fenced"), "{err:#}");

    let resp = pause(&second).await.expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    second.stop().await;

    // The topic holds the committed decisions: two starts and the pause.
    let consumer: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &sc.brokers)
        .set("group.id", unique("decisions-reader"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    rdkafka::consumer::Consumer::subscribe(&consumer, &[&decisions_topic]).expect("subscribe");
    let mut actions = Vec::new();
    while !actions.iter().any(|a| a == "pause") {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a decision within 30 s")
            .expect("receive");
        use rdkafka::message::Message;
        assert_eq!(m.key(), Some(&b"pk"[..]));
        let d: Value = serde_json::from_slice(m.payload().expect("payload")).expect("json");
        actions.push(d["action"].as_str().unwrap_or_default().to_owned());
    }
    // Holds (stale data: nothing consumed yet) may come between.
    actions.retain(|a| a != "hold");
    assert_eq!(actions, vec!["start", "start", "pause"]);
}

/// A runaway query on the ingest process's API does not stop it consuming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_keeps_consuming_while_a_runaway_query_runs() {
    let Some(sc) = Scenario::new("ks-query").await else {
        return;
    };
    let listen = format!("127.0.0.1:{}", free_port());
    let ingest = Ingest::start_with(
        &sc.brokers,
        &sc.topic,
        &sc.group,
        sc.dir.path(),
        &listen,
        &[("KEYSHIFT__STORE__QUERY_TIMEOUT", "10m")],
    );
    let base = format!("http://{listen}");
    let metrics = format!("{base}/metrics");
    let started = Instant::now();
    while metric(&metrics, "keyshift_query_running{lane=\"adhoc\"}")
        .await
        .is_none()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ingest did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let query = tokio::spawn({
        let url = format!("{base}/v1/sql");
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&serde_json::json!({ "sql": crate::isolation::CROSS_JOIN }))
                .send()
                .await
        }
    });
    while metric(&metrics, "keyshift_query_running{lane=\"adhoc\"}").await != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "query did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    produce_valid(&sc.producer, &sc.topic, &sc.topic, 20_000).await;
    let accepted = "keyshift_ingest_events_total{outcome=\"accepted\",source=\"kafka\"}";
    let produced = Instant::now();
    while metric(&metrics, accepted).await != Some(20_000.0) {
        assert!(
            produced.elapsed() < Duration::from_secs(120),
            "consumed {:?} of 20000 while the query ran",
            metric(&metrics, accepted).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Everything was consumed and committed while the query was still running.
    assert_eq!(
        metric(&metrics, "keyshift_query_running{lane=\"adhoc\"}").await,
        Some(1.0)
    );
    ingest.stop();
    let _ = query.await;
    assert_eq!(counts(sc.dir.path()).await.0, 20_000);
}
