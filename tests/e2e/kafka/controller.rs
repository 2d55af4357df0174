//! The rollout controller and queries beside a consuming process.

use std::time::Duration;

use super::*;

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
