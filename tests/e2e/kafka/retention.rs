//! Dead letters and offsets that left the broker.

use std::time::Duration;

use super::*;

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
